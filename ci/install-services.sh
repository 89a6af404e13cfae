#!/usr/bin/env bash
# Installs what the integration tests need to run real backing services as
# local processes (see tests/integration/services/), and the browser of the
# console's e2e test:
#   - Debian packages: postgresql, redis-server, redis-sentinel, redis-tools,
#     a Java 17+ runtime and maven; chromium (driven headless by Playwright,
#     which never downloads a browser of its own) and a font for its pages;
#   - Apache Kafka's broker jars (+ runtime dependencies, Log4j 2 binding),
#     fetched by Maven from its configured repository into a cache outside
#     the repository: ${SAGA_STACK_CACHE:-$HOME/.cache/saga-stack}/kafka-$KAFKA_VERSION/libs
# Idempotent: a second run only checks and exits within seconds.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
PROG="install-services"

usage() {
  cat <<EOF
Usage: ci/install-services.sh [options]

Installs PostgreSQL, Redis (+ Sentinel, tools), a Java runtime, Maven and
Chromium (+ a font) from Debian packages, and fetches Apache Kafka's jars with Maven into
\${SAGA_STACK_CACHE:-\$HOME/.cache/saga-stack}/kafka-<KAFKA_VERSION>/libs
(versions from ci/versions.sh). Safe to run again: what is present is skipped.

Options:
  --no-apt        do not install Debian packages (only check that they exist)
  --no-kafka      do not fetch the Kafka jars
  --force-kafka   fetch the Kafka jars again even if the cache looks complete
  --print-libs    print the Kafka libs directory and exit
  -h, --help      show this help

Environment:
  SAGA_STACK_CACHE   cache root (default \$HOME/.cache/saga-stack); the Maven
                     local repository used for the download is <cache>/m2
  KAFKA_VERSION, SCALA_BINARY_VERSION
                     override ci/versions.sh (for trying another release)
EOF
}

# shellcheck source=ci/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DO_APT=1
DO_KAFKA=1
FORCE_KAFKA=0
PRINT_LIBS=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-apt) DO_APT=0 ;;
    --no-kafka) DO_KAFKA=0 ;;
    --force-kafka) FORCE_KAFKA=1 ;;
    --print-libs) PRINT_LIBS=1 ;;
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

# --- versions --------------------------------------------------------------
[[ -f "$REPO_ROOT/ci/versions.sh" ]] || die "missing $REPO_ROOT/ci/versions.sh"
_env_kafka_version="${KAFKA_VERSION:-}"
_env_scala_version="${SCALA_BINARY_VERSION:-}"
# shellcheck source=ci/versions.sh
source "$REPO_ROOT/ci/versions.sh"
KAFKA_VERSION="${_env_kafka_version:-$KAFKA_VERSION}"
SCALA_BINARY_VERSION="${_env_scala_version:-$SCALA_BINARY_VERSION}"
[[ -n "${KAFKA_VERSION:-}" ]] || die "KAFKA_VERSION is not set in ci/versions.sh"
[[ -n "${SCALA_BINARY_VERSION:-}" ]] || die "SCALA_BINARY_VERSION is not set in ci/versions.sh"

CACHE_ROOT="${SAGA_STACK_CACHE:-${HOME:-/root}/.cache/saga-stack}"
KAFKA_HOME_DIR="$CACHE_ROOT/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME_DIR/libs"
if [[ $PRINT_LIBS -eq 1 ]]; then
  echo "$KAFKA_LIBS"
  exit 0
fi

START_SECONDS=$SECONDS

# --- Debian packages ---------------------------------------------------------
pkg_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

java_major() {
  # prints the major version of `java` on PATH, or nothing
  local line
  command -v java >/dev/null 2>&1 || return 0
  line="$(java -version 2>&1 | head -n1)"
  line="${line#*\"}"
  line="${line%%\"*}"
  line="${line#1.}"
  echo "${line%%[.+-]*}"
}

APT_UPDATED=0
apt_install() {
  local -a missing=("$@")
  [[ ${#missing[@]} -gt 0 ]] || return 0
  if [[ $DO_APT -eq 0 ]]; then
    die "missing Debian package(s): ${missing[*]} (rerun without --no-apt)"
  fi
  # sudo resets the environment: pass apt's settings through env(1)
  local -a apt=(env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
    apt-get -o DPkg::Lock::Timeout=300)
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: ${missing[*]}"
    apt=(sudo "${apt[@]}")
  fi
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install ${missing[*]} by hand"
  if [[ $APT_UPDATED -eq 0 ]]; then
    log "apt-get update (once) ..."
    "${apt[@]}" update -q >&2 || die "apt-get update failed"
    APT_UPDATED=1
  fi
  # The tests start their own servers on free ports; keep the packages'
  # init scripts from starting system-wide ones on 5432/6379/26379 (only
  # when no policy is in place already, and removed again afterwards).
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [[ ! -e $policy && $(id -u) -eq 0 ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    created_policy=1
  fi
  log "apt-get install ${missing[*]} ..."
  local rc=0
  "${apt[@]}" install -y -q --no-install-recommends "${missing[@]}" >&2 || rc=$?
  if [[ $created_policy -eq 1 ]]; then rm -f "$policy"; fi
  [[ $rc -eq 0 ]] || die "apt-get install ${missing[*]} failed (exit $rc)"
}

log "checking Debian packages ..."
missing=()
for pkg in postgresql redis-server redis-sentinel redis-tools maven chromium fonts-dejavu-core; do
  if pkg_installed "$pkg"; then
    log "  $pkg: present"
  else
    log "  $pkg: missing"
    missing+=("$pkg")
  fi
done
jmajor="$(java_major)"
if pkg_installed openjdk-17-jre-headless || pkg_installed default-jre-headless; then
  log "  java runtime: present (java ${jmajor:-?})"
elif [[ -n "$jmajor" && "$jmajor" -ge 17 ]]; then
  log "  java runtime: java $jmajor on PATH (not from Debian; fine)"
else
  log "  java runtime: missing (need Java 17+)"
  missing+=(default-jre-headless)
fi
apt_install "${missing[@]}"

# sanity checks of what the tests call
for prog in redis-server redis-sentinel redis-cli java mvn chromium; do
  command -v "$prog" >/dev/null 2>&1 || die "'$prog' not on PATH after installing"
done
pg_bin=""
for d in /usr/lib/postgresql/*/bin; do
  [[ -x "$d/postgres" && -x "$d/initdb" ]] && pg_bin="$d"
done
[[ -n "$pg_bin" ]] || command -v initdb >/dev/null 2>&1 || die "PostgreSQL server binaries (initdb, postgres) not found"
jmajor="$(java_major)"
[[ -n "$jmajor" && "$jmajor" -ge 17 ]] || die "Kafka $KAFKA_VERSION needs Java 17+, found '${jmajor:-none}' (set PATH or install openjdk-17-jre-headless)"
if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
  die "OS user 'postgres' missing (PostgreSQL refuses to run as root; the postgresql package creates it)"
fi
log "PostgreSQL: ${pg_bin:-$(dirname "$(command -v initdb)")}; $(redis-server --version | cut -d' ' -f1-3); java $jmajor"

# --- Kafka jars ----------------------------------------------------------------
kafka_complete() {
  local marker="$KAFKA_HOME_DIR/.complete"
  [[ -f "$marker" ]] || return 1
  [[ "$(cat "$marker")" == "$(kafka_stamp)" ]] || return 1
  compgen -G "$KAFKA_LIBS/kafka_${SCALA_BINARY_VERSION}-${KAFKA_VERSION}.jar" >/dev/null
}

kafka_stamp() {
  # what the cache was built from: versions + the pom's content
  printf 'kafka=%s scala=%s pom=%s\n' "$KAFKA_VERSION" "$SCALA_BINARY_VERSION" \
    "$(sha256sum "$SCRIPT_DIR/kafka/pom.xml" | cut -d' ' -f1)"
}

verify_kafka_libs() {
  # the classpath really runs: the storage tool prints a fresh cluster id
  local dir="$1" out
  out="$(java -Xmx128m -XX:TieredStopAtLevel=1 -cp "$dir/*" kafka.tools.StorageTool random-uuid 2>&1)" ||
    die "Kafka jars in $dir do not run kafka.tools.StorageTool: $out"
  [[ "$(printf '%s\n' "$out" | tail -n1)" =~ ^[A-Za-z0-9_-]{22}$ ]] ||
    die "unexpected output of kafka.tools.StorageTool random-uuid: $out"
  # kafka.Kafka without arguments prints its usage (and exits non-zero)
  out="$(java -Xmx64m -XX:TieredStopAtLevel=1 -cp "$dir/*" kafka.Kafka 2>&1 || true)"
  [[ "$out" == *"kafka.Kafka server.properties"* ]] ||
    die "kafka.Kafka (broker main class) does not run from $dir: $(printf '%s\n' "$out" | head -n5)"
}

if [[ $DO_KAFKA -eq 1 ]]; then
  mkdir -p "$CACHE_ROOT"
  # one installer at a time per cache (parallel CI jobs, two shells)
  exec 9>"$CACHE_ROOT/.install-services.lock"
  if ! flock -w 600 9; then die "timed out waiting for the lock $CACHE_ROOT/.install-services.lock"; fi
  if [[ $FORCE_KAFKA -eq 0 ]] && kafka_complete; then
    log "Kafka $KAFKA_VERSION (Scala $SCALA_BINARY_VERSION) jars present in $KAFKA_LIBS: skipping"
  else
    log "fetching Kafka $KAFKA_VERSION (Scala $SCALA_BINARY_VERSION) jars with Maven into $KAFKA_LIBS ..."
    tmp_libs="$KAFKA_HOME_DIR/libs.tmp.$$"
    rm -rf "$tmp_libs"
    mkdir -p "$tmp_libs"
    trap 'rm -rf "$tmp_libs"' EXIT
    mvn_log="$KAFKA_HOME_DIR/mvn.log"
    if ! mvn -B --no-transfer-progress \
      -f "$SCRIPT_DIR/kafka/pom.xml" \
      -Dmaven.repo.local="$CACHE_ROOT/m2" \
      -Dkafka.version="$KAFKA_VERSION" \
      -Dscala.binary.version="$SCALA_BINARY_VERSION" \
      -DoutputDirectory="$tmp_libs" \
      dependency:copy-dependencies >"$mvn_log" 2>&1; then
      tail -n 40 "$mvn_log" >&2
      rm -rf "$tmp_libs"
      die "Maven could not fetch Kafka $KAFKA_VERSION (full log: $mvn_log)"
    fi
    njars=$(find "$tmp_libs" -name '*.jar' | wc -l)
    log "  $njars jars ($(du -sh "$tmp_libs" | cut -f1)); verifying the classpath ..."
    verify_kafka_libs "$tmp_libs"
    rm -rf "$KAFKA_LIBS"
    mv "$tmp_libs" "$KAFKA_LIBS"
    trap - EXIT
    kafka_stamp >"$KAFKA_HOME_DIR/.complete"
    log "  Kafka jars ready"
  fi
  flock -u 9
fi

log "done in $((SECONDS - START_SECONDS))s. Kafka libs: $KAFKA_LIBS"
