#!/bin/bash
# kafka-run-class.sh CLASS [args...]: runs a class from /opt/kafka/libs with the
# JVM options of the KAFKA_*_OPTS variables (defaults as in Kafka's own scripts).
set -euo pipefail
[[ $# -ge 1 ]] || { echo "usage: kafka-run-class.sh CLASS [args...]" >&2; exit 2; }
KAFKA_HOME="${KAFKA_HOME:-/opt/kafka}"
: "${KAFKA_HEAP_OPTS:=-Xmx256M}"
: "${KAFKA_JVM_PERFORMANCE_OPTS:=-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true}"
: "${KAFKA_LOG4J_OPTS:=-Dlog4j2.configurationFile=$KAFKA_HOME/config/log4j2.properties}"
# shellcheck disable=SC2086
exec java $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS ${KAFKA_JMX_OPTS:-} $KAFKA_LOG4J_OPTS ${KAFKA_OPTS:-} \
  -cp "$KAFKA_HOME/libs/*${CLASSPATH:+:$CLASSPATH}" "$@"
