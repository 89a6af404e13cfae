#!/bin/bash
# The app's Kafka access, run by the kafka-access hook Job in the Kafka image as the
# brokers' admin user: the app's SCRAM user (its password set again, so a changed Secret
# takes effect) and the ACLs that let it use its own topics and consumer group, nothing else.
# Every step is an upsert, so the Job can run on every install and upgrade.
# Environment: BOOTSTRAP, ADMIN_CONFIG (client properties of the admin user), APP_USER,
# APP_PASSWORD, TOPICS (comma-separated), GROUP, WAIT_SECONDS.
set -euo pipefail

log() { printf '[kafka-access %s] %s\n' "$(date -u +%T)" "$*"; }
admin() { "$@" --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG"; }
# The tools log to stdout: shown only when one fails.
quietly() {
  local out
  out=$("$@" 2>&1) || { printf '%s\n' "$out" | tail -n 20; return 1; }
}
# kafka-acls.sh's class, called directly: not every Kafka image ships the script.
acls() { admin kafka-run-class.sh org.apache.kafka.tools.AclCommand "$@"; }

export KAFKA_HEAP_OPTS=-Xmx128m
deadline=$((SECONDS + WAIT_SECONDS))
until admin kafka-broker-api-versions.sh >/dev/null 2>&1; do
  if ((SECONDS >= deadline)); then
    log "no broker answered the admin user at $BOOTSTRAP within ${WAIT_SECONDS}s:"
    admin kafka-broker-api-versions.sh 2>&1 | tail -n 5 || true
    exit 1
  fi
  log "waiting for a broker at $BOOTSTRAP"
  sleep 3
done

log "SCRAM-SHA-512 credentials of user $APP_USER"
quietly admin kafka-configs.sh --alter --entity-type users --entity-name "$APP_USER" \
  --add-config "SCRAM-SHA-512=[password=$APP_PASSWORD]"

topic_args=()
IFS=, read -r -a names <<<"$TOPICS"
for topic in "${names[@]}"; do topic_args+=(--topic "$topic"); done
log "ACLs of User:$APP_USER: topics ${TOPICS} (read, write, create, describe, alter), group $GROUP (read)"
quietly acls --add --allow-principal "User:$APP_USER" "${topic_args[@]}" \
  --operation Read --operation Write --operation Create --operation Describe --operation Alter
quietly acls --add --allow-principal "User:$APP_USER" --group "$GROUP" --operation Read
log "done"
