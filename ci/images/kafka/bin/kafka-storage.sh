#!/bin/bash
# kafka-storage.sh {format|info|random-uuid|...} [args...]
export KAFKA_LOG4J_OPTS="${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=${KAFKA_HOME:-/opt/kafka}/config/tools-log4j2.properties}"
exec "$(dirname "$0")/kafka-run-class.sh" kafka.tools.StorageTool "$@"
