#!/bin/bash
# kafka-metadata-quorum.sh: runs org.apache.kafka.tools.MetadataQuorumCommand (Kafka's own tool class) with the tools' logging.
export KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx256M}"
export KAFKA_LOG4J_OPTS="${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=${KAFKA_HOME:-/opt/kafka}/config/tools-log4j2.properties}"
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.MetadataQuorumCommand "$@"
