#!/usr/bin/env bash
# Smoke tests of the offline images (ci/images/build.sh) with plain `docker run`
# on a throwaway user-defined bridge network that this script creates and
# removes. Every container runs with the chart's security settings (its uid,
# all capabilities dropped, no privilege escalation, read-only root where the
# chart has it). Traffic goes only to the containers started here.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
PROG="images-smoke"
ALL_TESTS=(values app postgres redis kafka prometheus stack)

usage() {
  cat <<EOF
Usage: ci/images/smoke.sh [--only NAME[,NAME]] [--keep]

Runs each built image the way the chart does and checks its interface:
  values      helm template with values/offline-images.yaml passes the schema
              and names only images that build.sh makes
  app         saga-service --help, uid 10001, --read-only with a /tmp tmpfs,
              no package manager or pip in the image
  postgres    initdb from POSTGRES_* env, init scripts (.sql and .sh) run once,
              password (scram-sha-256) login from another container, wrong
              password refused, pg_isready, restart keeps data; patroni and
              pg_rewind/pg_basebackup for architecture=replication
  redis       the chart's sh -c 'exec redis-server ... --requirepass', PING with
              the password from another container, NOAUTH without it
  kafka       KRaft combined mode with the chart's environment, restart keeps
              the formatted storage; a topic is created and a message produced
              and consumed (aiokafka from the repository's .venv)
  prometheus  scrapes itself from a config file given as an argument
  stack       the app against the postgres, redis and kafka images: migrate,
              create-topics, serve; /healthz/ready is 200 and an order's saga
              completes
Options:
  --only NAME[,NAME]  run only these tests (${ALL_TESTS[*]})
  --keep              leave the containers and network for inspection
Exit status: 0 if every selected test passed.
EOF
}

# shellcheck source=ci/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

ONLY=()
KEEP=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --only)
      [[ $# -ge 2 ]] || die "--only needs a name"
      IFS=',' read -r -a _n <<<"$2"
      ONLY+=("${_n[@]}")
      shift
      ;;
    --keep) KEEP=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      die "unknown option: $1"
      ;;
  esac
  shift
done
SELECTED=("${ALL_TESTS[@]}")
[[ ${#ONLY[@]} -gt 0 ]] && SELECTED=("${ONLY[@]}")

DOCKER="${DOCKER:-docker}"
"$DOCKER" info >/dev/null 2>&1 || die "the Docker engine does not answer"
declare -A REF
while read -r r; do
  case "$r" in
    */saga-service:*) REF[app]="$r" ;;
    */postgres:*) REF[postgres]="$r" ;;
    */redis:*) REF[redis]="$r" ;;
    */kafka:*) REF[kafka]="$r" ;;
    */prometheus:*) REF[prometheus]="$r" ;;
  esac
done < <("$SCRIPT_DIR/build.sh" --list)

RUN_ID="saga-img-smoke-$$"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/$RUN_ID.XXXXXX")"
NET=""
cleanup() {
  if [[ $KEEP -eq 1 ]]; then
    log "kept: containers $RUN_ID-*, network ${NET:-none}, files $WORK"
    return
  fi
  local t
  for t in "${ALL_TESTS[@]}" stack-pg stack-redis stack-kafka stack-app; do
    "$DOCKER" rm -f -v "$RUN_ID-$t" >/dev/null 2>&1 || true
  done
  if [[ -n $NET ]]; then "$DOCKER" network rm "$NET" >/dev/null 2>&1 || true; fi
  # Data directories were written by the containers' uids.
  rm -rf "$WORK"
}
trap cleanup EXIT

# Fixed addresses need a network with a user-configured subnet: let Docker
# pick a free one, then create the network again with that subnet stated.
"$DOCKER" network create "$RUN_ID" >/dev/null
NET="$RUN_ID"
SUBNET="$("$DOCKER" network inspect -f '{{(index .IPAM.Config 0).Subnet}}' "$NET")"
"$DOCKER" network rm "$NET" >/dev/null
"$DOCKER" network create --subnet "$SUBNET" "$RUN_ID" >/dev/null
PREFIX="${SUBNET%.*}"
ip_of() { echo "$PREFIX.$1"; }

# Chart-like hardening shared by every container.
HARDEN=(--cap-drop ALL --security-opt no-new-privileges)

start() { # start NAME [docker run args...]: a detached container on $NET
  local name="$RUN_ID-$1"
  shift
  "$DOCKER" run -d --name "$name" --network "$NET" "$@" >/dev/null
  echo "$name"
}

oneshot() { # oneshot [docker run args...]: a throwaway container on $NET
  "$DOCKER" run --rm --network "$NET" "${HARDEN[@]}" "$@"
}

wait_for() { # wait_for SECONDS DESCRIPTION CMD...
  local limit="$1" what="$2" i
  shift 2
  for ((i = 0; i < limit; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  return 1
}

PASSED=()
FAILED=()
check() { # check DESCRIPTION CMD...
  local what="$1"
  shift
  if "$@"; then
    log "  ok: $what"
  else
    log "  FAIL: $what"
    echo "$what" >>"$WORK/failures"
    return 1
  fi
}

test_values() { # values/offline-images.yaml names exactly the images build.sh makes
  local helm="$REPO_ROOT/.tools/bin/helm"
  [[ -x $helm ]] || helm="$(command -v helm || true)"
  if [[ -z $helm ]]; then
    log "  FAIL: no helm (.tools/bin/helm or on PATH) to render the chart"
    return 1
  fi
  "$helm" template s "$REPO_ROOT/charts/saga-stack" -f "$REPO_ROOT/values/local.yaml" \
    -f "$REPO_ROOT/values/offline-images.yaml" >"$WORK/render.yaml" || return 1
  log "  ok: helm template with values/local.yaml + values/offline-images.yaml (strict schema)"
  local img
  while read -r img; do
    check "rendered image $img is built by ci/images/build.sh" \
      grep -qxF "$img" <("$SCRIPT_DIR/build.sh" --list)
  done < <(sed -n 's/^ *image: "\(.*\)"$/\1/p' "$WORK/render.yaml" | sort -u)
}

test_app() {
  local ref="${REF[app]}"
  check "--help under --read-only --tmpfs /tmp" \
    "$DOCKER" run --rm "${HARDEN[@]}" --read-only --tmpfs /tmp "$ref" --help >"$WORK/app-help.txt"
  grep -q 'saga-service' "$WORK/app-help.txt" || return 1
  local uid
  uid="$("$DOCKER" run --rm "${HARDEN[@]}" --read-only --tmpfs /tmp --entrypoint python3 "$ref" \
    -c 'import os; print(os.getuid())')"
  check "runs as uid 10001 (got $uid)" test "$uid" = 10001
  check "user in the image config is 10001" test "$("$DOCKER" image inspect -f '{{.Config.User}}' "$ref")" = "10001:10001"
  check "saga-service --version" "$DOCKER" run --rm "${HARDEN[@]}" --read-only --tmpfs /tmp "$ref" --version
  # The runtime root filesystem is the virtualenv's closure only (app/image/runtime-rootfs.sh).
  check "no package manager, no pip in the image" "$DOCKER" run --rm "${HARDEN[@]}" --read-only \
    --tmpfs /tmp --entrypoint python3 "$ref" -c \
    'import importlib.util, shutil, sys; sys.exit(any(shutil.which(t) for t in ("apt-get", "dpkg", "perl")) or importlib.util.find_spec("pip") is not None)'
}

test_postgres() {
  local ref="${REF[postgres]}" ip name
  ip="$(ip_of 20)"
  mkdir -p "$WORK/pg-data" "$WORK/pg-init"
  chown 999:999 "$WORK/pg-data"
  cat >"$WORK/pg-init/01-schema.sql" <<'SQL'
CREATE TABLE init_marker (id int PRIMARY KEY, note text);
INSERT INTO init_marker VALUES (1, 'from 01-schema.sql');
SQL
  # Not executable (like a ConfigMap file): sourced by the entrypoint.
  cat >"$WORK/pg-init/02-more.sh" <<'SH'
psql -v ON_ERROR_STOP=1 -c "INSERT INTO init_marker VALUES (2, 'from 02-more.sh as ' || current_user || ' in ' || current_database())"
SH
  chmod 0644 "$WORK/pg-init/"*
  # shellcheck disable=SC2054 # commas belong to the tmpfs options
  local args=("${HARDEN[@]}" --user 999:999 --read-only --tmpfs /var/run/postgresql:uid=999,gid=999 --tmpfs /tmp
    -v "$WORK/pg-data:/var/lib/postgresql/data" -v "$WORK/pg-init:/docker-entrypoint-initdb.d:ro"
    -e POSTGRES_USER=saga -e POSTGRES_DB=saga -e POSTGRES_PASSWORD=smoke-pass -e PGDATA=/var/lib/postgresql/data/pgdata
    --ip "$ip" "$ref")
  name="$(start postgres "${args[@]}")" || return 1
  if ! wait_for 60 "postgres ready" "$DOCKER" exec "$name" pg_isready -h 127.0.0.1 -U saga -d saga; then
    "$DOCKER" logs "$name" 2>&1 | tail -30 >&2
    return 1
  fi
  log "  ok: pg_isready -h 127.0.0.1 (the chart's probe)"
  local out
  out="$(oneshot -e PGPASSWORD=smoke-pass --entrypoint psql "$ref" -h "$ip" -U saga -d saga -tA \
    -c 'SELECT string_agg(note, $$|$$ ORDER BY id) FROM init_marker')"
  check "password login from another container; init scripts ran: '$out'" \
    test "$out" = "from 01-schema.sql|from 02-more.sh as saga in saga"
  check "wrong password refused" bash -c "! $DOCKER run --rm --network $NET -e PGPASSWORD=wrong --entrypoint psql $ref -h $ip -U saga -d saga -c 'SELECT 1' >/dev/null 2>&1"
  out="$(oneshot -e PGPASSWORD=smoke-pass --entrypoint psql "$ref" -h "$ip" -U saga -d saga -tA \
    -c "SELECT substr(rolpassword, 1, 13) FROM pg_authid WHERE rolname = 'saga'" -c 'SHOW server_version')"
  check "password stored as SCRAM; server: $(echo "$out" | tail -n 1)" grep -q '^SCRAM-SHA-256' <<<"$out"
  out="$("$DOCKER" exec "$name" sh -c 'ps -o uid= -p 1 2>/dev/null || stat -c %u /proc/1')"
  check "server runs as uid 999" test "$(echo "$out" | tr -d ' ')" = 999
  "$DOCKER" restart -t 20 "$name" >/dev/null
  wait_for 60 "postgres ready again" "$DOCKER" exec "$name" pg_isready -h 127.0.0.1 -U saga -d saga || return 1
  out="$(oneshot -e PGPASSWORD=smoke-pass --entrypoint psql "$ref" -h "$ip" -U saga -d saga -tA -c 'SELECT count(*) FROM init_marker')"
  check "restart keeps the data and does not rerun init scripts (rows: $out)" test "$out" = 2
  check "log says initialisation was skipped" bash -c "$DOCKER logs $name 2>&1 | grep -q 'skipping initialisation'"
  # architecture=replication runs `patroni CONFIG`, with the server binaries where the chart says.
  out="$(oneshot --entrypoint patroni "$ref" --version)"
  check "patroni runs as the chart's command: '$out'" grep -q '^patroni [0-9]' <<<"$out"
  check "pg_rewind and pg_basebackup in /usr/lib/postgresql/17/bin (replication.binDir)" \
    "$DOCKER" run --rm --entrypoint test "$ref" -x /usr/lib/postgresql/17/bin/pg_rewind -a -x /usr/lib/postgresql/17/bin/pg_basebackup
}

test_redis() {
  local ref="${REF[redis]}" ip name
  ip="$(ip_of 30)"
  mkdir -p "$WORK/redis-conf"
  printf 'bind * -::*\nport 6379\ndir /data\nprotected-mode no\nsave ""\nappendonly no\n' >"$WORK/redis-conf/redis.conf"
  chmod 0644 "$WORK/redis-conf/redis.conf"
  # shellcheck disable=SC2016 # expanded by the container's shell, as in the chart
  name="$(start redis "${HARDEN[@]}" --user 999:999 --read-only --tmpfs /data:uid=999,gid=999 --tmpfs /tmp \
    -v "$WORK/redis-conf:/etc/redis:ro" -e REDISCLI_AUTH=smoke-redis --ip "$ip" \
    "$ref" sh -c 'exec redis-server /etc/redis/redis.conf --requirepass "$REDISCLI_AUTH"')" || return 1
  if ! wait_for 30 "redis ping" "$DOCKER" exec "$name" redis-cli -p 6379 ping; then
    "$DOCKER" logs "$name" 2>&1 | tail -20 >&2
    return 1
  fi
  check "the chart's probe (redis-cli ping, password from REDISCLI_AUTH): $("$DOCKER" exec "$name" redis-cli -p 6379 ping)" true
  local out
  out="$(oneshot -e REDISCLI_AUTH=smoke-redis "$ref" redis-cli -h "$ip" -p 6379 ping)"
  check "PING with the password from another container: $out" test "$out" = PONG
  out="$(oneshot "$ref" redis-cli -h "$ip" -p 6379 ping 2>&1 || true)"
  check "refused without the password: $out" grep -q NOAUTH <<<"$out"
  out="$(oneshot -e REDISCLI_AUTH=smoke-redis "$ref" redis-cli -h "$ip" set k v)"
  check "SET works (data dir writable): $out" test "$out" = OK
  check "redis-sentinel on PATH: $(oneshot --user 999:999 "$ref" redis-sentinel --version | cut -c1-40)" oneshot --user 999:999 "$ref" redis-sentinel --version
  # the chart's scripts bound each redis-cli call with coreutils' timeout
  out="$(oneshot -e REDISCLI_AUTH=smoke-redis "$ref" timeout 2 redis-cli -h "$ip" get k)"
  check "timeout 2 redis-cli GET: $out" test "$out" = v
  out="$("$DOCKER" exec "$name" sh -c 'stat -c %u /proc/1')"
  check "server runs as uid 999" test "$out" = 999
}

test_kafka() {
  local ref="${REF[kafka]}" ip name
  ip="$(ip_of 40)"
  mkdir -p "$WORK/kafka-data"
  chown 1000:1000 "$WORK/kafka-data"
  # The chart's environment (charts/saga-stack/charts/kafka/templates/statefulset.yaml),
  # with this container's address instead of the pod's DNS name.
  name="$(start kafka "${HARDEN[@]}" --user 1000:1000 --read-only --tmpfs /tmp \
    -v "$WORK/kafka-data:/var/lib/kafka/data" --ip "$ip" \
    -e POD_NAME=kafka-0 -e KAFKA_NODE_ID=0 -e CLUSTER_ID=c2FnYS1zdGFjay1zbW9rZQ \
    -e KAFKA_PROCESS_ROLES=broker,controller \
    -e "KAFKA_LISTENERS=PLAINTEXT://:9092,CONTROLLER://:9093" \
    -e "KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://$ip:9092" \
    -e KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT \
    -e KAFKA_CONTROLLER_LISTENER_NAMES=CONTROLLER -e KAFKA_INTER_BROKER_LISTENER_NAME=PLAINTEXT \
    -e "KAFKA_CONTROLLER_QUORUM_VOTERS=0@$ip:9093" -e KAFKA_LOG_DIRS=/var/lib/kafka/data \
    -e KAFKA_AUTO_CREATE_TOPICS_ENABLE=true -e KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR=1 \
    -e KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR=1 -e KAFKA_TRANSACTION_STATE_LOG_MIN_ISR=1 \
    -e KAFKA_DEFAULT_REPLICATION_FACTOR=1 -e "KAFKA_HEAP_OPTS=-Xms192m -Xmx384m" \
    -e KAFKA_SERVICE_HOST=10.0.0.1 -e KAFKA_PORT=tcp://10.0.0.1:9092 \
    "$ref")" || return 1
  if ! wait_for 90 "kafka started" bash -c "$DOCKER logs $name 2>&1 | grep -q 'Kafka Server started'"; then
    "$DOCKER" logs "$name" 2>&1 | tail -40 >&2
    return 1
  fi
  log "  ok: broker started (KRaft combined mode)"
  check "service-link variables were not taken as settings" \
    bash -c "! $DOCKER logs $name 2>&1 | grep -qE '^ +(service\\.host|port)='"
  check "storage formatted with CLUSTER_ID" \
    grep -q 'cluster.id=c2FnYS1zdGFjay1zbW9rZQ' "$WORK/kafka-data/meta.properties"
  local py="$REPO_ROOT/.venv/bin/python"
  if [[ ! -x $py ]] || ! "$py" -c 'import aiokafka' 2>/dev/null; then
    log "  FAIL: no $py with aiokafka for the produce/consume check"
    return 1
  fi
  check "topic created, message produced and consumed" timeout 120 "$py" - "$ip:9092" <<'PY'
import asyncio, sys, uuid
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

async def main(bootstrap: str) -> None:
    topic, payload = "smoke.images", uuid.uuid4().hex.encode()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, payload, key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="smoke",
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        async with asyncio.timeout(60):
            async for msg in consumer:
                if msg.value == payload:
                    print(f"    consumed {payload.decode()} from {msg.topic}[{msg.partition}]@{msg.offset}")
                    return
    finally:
        await consumer.stop()

asyncio.run(main(sys.argv[1]))
PY
  # The image's own tools, in a throwaway container, as an operator would use them.
  local tools=(-e "KAFKA_HEAP_OPTS=-Xmx128m" "$ref")
  check "kafka-topics.sh --create (image's tools)" \
    oneshot "${tools[@]}" kafka-topics.sh --bootstrap-server "$ip:9092" --create --topic smoke.tools \
    --partitions 1 --replication-factor 1
  check "kafka-console-producer.sh" bash -c "echo hello-from-tools | $DOCKER run --rm -i --network $NET ${HARDEN[*]} ${tools[*]} \
    kafka-console-producer.sh --bootstrap-server $ip:9092 --topic smoke.tools"
  out="$(oneshot "${tools[@]}" kafka-console-consumer.sh --bootstrap-server "$ip:9092" --topic smoke.tools \
    --from-beginning --max-messages 1 --timeout-ms 60000 2>/dev/null || true)"
  check "kafka-console-consumer.sh read: $out" test "$out" = hello-from-tools
  "$DOCKER" restart -t 30 "$name" >/dev/null
  if ! wait_for 90 "kafka restarted" bash -c "[ \$($DOCKER logs $name 2>&1 | grep -c 'Kafka Server started') -ge 2 ]"; then
    "$DOCKER" logs "$name" 2>&1 | tail -30 >&2
    return 1
  fi
  check "restart keeps the formatted storage" bash -c "$DOCKER logs $name 2>&1 | grep -q 'storage already formatted'"
  out="$("$DOCKER" exec "$name" sh -c 'stat -c %u /proc/1')"
  check "broker runs as uid 1000" test "$out" = 1000
}

test_prometheus() {
  local ref="${REF[prometheus]}" ip name
  ip="$(ip_of 50)"
  mkdir -p "$WORK/prom"
  printf 'global:\n  scrape_interval: 2s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ["127.0.0.1:9090"]\n' \
    >"$WORK/prom/smoke.yml"
  chmod 0644 "$WORK/prom/smoke.yml"
  name="$(start prometheus "${HARDEN[@]}" --read-only --tmpfs /prometheus:uid=65534,gid=65534 --ip "$ip" \
    -v "$WORK/prom:/etc/smoke:ro" "$ref" --config.file=/etc/smoke/smoke.yml --storage.tsdb.path=/prometheus)" || return 1
  local py
  py="$(command -v python3)"
  if ! wait_for 60 "prometheus ready" "$py" -c "import urllib.request; urllib.request.urlopen('http://$ip:9090/-/ready', timeout=2)"; then
    "$DOCKER" logs "$name" 2>&1 | tail -20 >&2
    return 1
  fi
  log "  ok: /-/ready"
  check "scrapes itself (up == 1)" wait_for 30 "up" "$py" -c "
import json, urllib.request
r = json.load(urllib.request.urlopen('http://$ip:9090/api/v1/query?query=up', timeout=2))
assert r['data']['result'] and r['data']['result'][0]['value'][1] == '1'"
  out="$("$DOCKER" exec "$name" sh -c 'stat -c %u /proc/1' 2>/dev/null || "$DOCKER" inspect -f '{{.Config.User}}' "$name")"
  check "runs as nobody (uid 65534): $out" bash -c "[[ '$out' == 65534* ]]"
}

quiet() { # quiet CMD...: output to the run's log, shown only on failure
  "$@" >"$WORK/quiet.log" 2>&1 || { tail -n 20 "$WORK/quiet.log" >&2; return 1; }
}

test_stack() {
  local p r k a
  p="$(ip_of 60)" r="$(ip_of 61)" k="$(ip_of 62)" a="$(ip_of 63)"
  # shellcheck disable=SC2054 # commas belong to the tmpfs options
  start stack-pg "${HARDEN[@]}" --user 999:999 --read-only --tmpfs /var/run/postgresql:uid=999,gid=999 --tmpfs /tmp \
    --tmpfs /var/lib/postgresql/data:uid=999,gid=999 --ip "$p" -e POSTGRES_USER=saga -e POSTGRES_DB=saga \
    -e POSTGRES_PASSWORD=stack-pg -e PGDATA=/var/lib/postgresql/data/pgdata "${REF[postgres]}" >/dev/null || return 1
  # shellcheck disable=SC2016,SC2054
  start stack-redis "${HARDEN[@]}" --user 999:999 --read-only --tmpfs /data:uid=999,gid=999 --tmpfs /tmp --ip "$r" \
    -e REDISCLI_AUTH=stack-redis "${REF[redis]}" sh -c 'exec redis-server --requirepass "$REDISCLI_AUTH"' >/dev/null || return 1
  # shellcheck disable=SC2054
  start stack-kafka "${HARDEN[@]}" --read-only --tmpfs /tmp --tmpfs /var/lib/kafka/data:uid=1000,gid=1000 --ip "$k" \
    -e KAFKA_NODE_ID=0 -e CLUSTER_ID=c2FnYS1zdGFjay1zbW9rZQ -e KAFKA_PROCESS_ROLES=broker,controller \
    -e "KAFKA_LISTENERS=PLAINTEXT://:9092,CONTROLLER://:9093" -e "KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://$k:9092" \
    -e KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT \
    -e KAFKA_CONTROLLER_LISTENER_NAMES=CONTROLLER -e KAFKA_INTER_BROKER_LISTENER_NAME=PLAINTEXT \
    -e "KAFKA_CONTROLLER_QUORUM_VOTERS=0@$k:9093" -e KAFKA_LOG_DIRS=/var/lib/kafka/data \
    -e KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR=1 -e KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR=1 \
    -e KAFKA_TRANSACTION_STATE_LOG_MIN_ISR=1 -e "KAFKA_HEAP_OPTS=-Xms192m -Xmx384m" "${REF[kafka]}" >/dev/null || return 1
  wait_for 60 "postgres" "$DOCKER" exec "$RUN_ID-stack-pg" pg_isready -h 127.0.0.1 -U saga -d saga || return 1
  wait_for 90 "kafka" bash -c "$DOCKER logs $RUN_ID-stack-kafka 2>&1 | grep -q 'Kafka Server started'" || return 1
  local env=(-e "DATABASE_HOST=$p" -e DATABASE_PASSWORD=stack-pg -e "REDIS_HOST=$r" -e REDIS_PASSWORD=stack-redis
    -e "KAFKA_BOOTSTRAP_SERVERS=$k:9092" -e KAFKA_TOPIC_PARTITIONS=3)
  check "saga-service migrate" quiet oneshot --read-only --tmpfs /tmp "${env[@]}" "${REF[app]}" migrate
  check "saga-service create-topics" quiet oneshot --read-only --tmpfs /tmp "${env[@]}" "${REF[app]}" create-topics
  start stack-app "${HARDEN[@]}" --read-only --tmpfs /tmp --ip "$a" "${env[@]}" "${REF[app]}" >/dev/null || return 1
  local py
  py="$(command -v python3)"
  if ! wait_for 60 "app ready" "$py" -c "import urllib.request; urllib.request.urlopen('http://$a:8080/healthz/ready', timeout=2)"; then
    "$DOCKER" logs "$RUN_ID-stack-app" 2>&1 | tail -20 >&2
    log "  FAIL: /healthz/ready never answered 200"
    return 1
  fi
  log "  ok: /healthz/ready 200 (postgres, redis, kafka answer)"
  check "an order's saga completes" timeout 90 "$py" - "http://$a:8080" <<'PY'
import json, sys, time, urllib.request
base = sys.argv[1]
def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)
call("PUT", "/stock/smoke-sku", {"quantity": 5})
order = call("POST", "/orders", {"customer_id": "smoke", "items": [{"sku": "smoke-sku", "quantity": 2, "unit_price_cents": 100}]})
for _ in range(60):
    saga = call("GET", f"/sagas/{order['saga_id']}")
    if saga["state"] in ("COMPLETED", "COMPENSATED"):
        break
    time.sleep(1)
status = call("GET", f"/orders/{order['order_id']}")["status"]
print(f"    saga {saga['state']}, order {status}")
assert saga["state"] == "COMPLETED" and status == "CONFIRMED", (saga, status)
PY
}

for t in "${SELECTED[@]}"; do
  [[ " ${ALL_TESTS[*]} " == *" $t "* ]] || die "unknown test '$t' (known: ${ALL_TESTS[*]})"
  if [[ $t != values && $t != stack ]] && ! "$DOCKER" image inspect "${REF[$t]}" >/dev/null 2>&1; then
    log "$t: ${REF[$t]} is not built (ci/images/build.sh --only $t)"
    FAILED+=("$t")
    continue
  fi
  log "$t: ${REF[$t]:-$t}"
  start_s=$SECONDS
  : >"$WORK/failures"
  rc=0
  "test_$t" || rc=$?
  if [[ $rc -eq 0 && ! -s $WORK/failures ]]; then
    PASSED+=("$t")
    log "$t: passed in $((SECONDS - start_s))s"
  else
    FAILED+=("$t")
    log "$t: FAILED"
  fi
done

echo "${#PASSED[@]} passed, ${#FAILED[@]} failed"
[[ ${#FAILED[@]} -eq 0 ]]
