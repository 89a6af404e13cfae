#!/bin/bash
# kafka-server-start.sh server.properties [--override k=v ...]
[[ $# -ge 1 ]] || { echo "usage: kafka-server-start.sh server.properties [--override property=value]*" >&2; exit 2; }
export KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G}"
exec "$(dirname "$0")/kafka-run-class.sh" kafka.Kafka "$@"
