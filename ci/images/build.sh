#!/usr/bin/env bash
# Builds, with no container registry, the images the chart runs: a Debian
# base from mmdebstrap (docker import), then Python, the app (app/Dockerfile),
# PostgreSQL, Redis, Kafka and Prometheus on top of it, each with the same
# interface as the upstream image the chart uses by default; and
# prometheus-adapter (ci/monitoring/), Traefik (ci/ingress/), VictoriaLogs and vlagent
# (ci/logging/) and Jaeger (ci/tracing/) on an empty base.
# See ci/images/README.md. Only package registries are used: Debian's archive
# (the machine's own apt sources, read at run time), PyPI (host-side
# `pip download`), Maven Central (Kafka's jars, via ci/install-services.sh),
# the Go module proxy (prometheus-adapter, Traefik, VictoriaLogs, vlagent, Jaeger, via
# ci/cluster/build-addons.sh).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
PROG="images"
ALL_IMAGES=(debian python app postgres redis kafka prometheus prometheus-adapter traefik victoria-logs vlagent jaeger)

usage() {
  cat <<EOF
Usage: ci/images/build.sh [options]

Builds the offline images (tags from ci/versions.sh, app tag = the chart's
appVersion) with the local Docker engine, in this order:
  debian      saga-stack.local/debian:<suite> for bookworm and trixie
              (mmdebstrap minbase rootfs, cached as a tarball, docker import)
  python      saga-stack.local/python:\$PYTHON_IMAGE_TAG      (bookworm python3 + venv)
  app         saga-stack/saga-service:<appVersion>           (app/Dockerfile on the python image)
  postgres    saga-stack.local/postgres:\$POSTGRES_IMAGE_TAG  (Debian postgresql-\$POSTGRES_MAJOR)
  redis       saga-stack.local/redis:\$REDIS_IMAGE_TAG        (Debian redis-server/-sentinel/-tools)
  kafka       saga-stack.local/kafka:\$KAFKA_VERSION          (Debian Java 17 + Kafka jars from Maven Central)
  prometheus  saga-stack.local/prometheus:\$PROMETHEUS_IMAGE_TAG (Debian prometheus)
  prometheus-adapter
              saga-stack.local/prometheus-adapter:\$PROMETHEUS_ADAPTER_VERSION
              (FROM scratch; the binary from ci/cluster/build-addons.sh, built
              there from the Go module proxy when missing: a few minutes once)
  traefik     saga-stack.local/traefik:\$TRAEFIK_VERSION (FROM scratch, the same way)
  victoria-logs, vlagent
              saga-stack.local/victoria-logs:\$VICTORIALOGS_VERSION and
              saga-stack.local/vlagent:\$VICTORIALOGS_VERSION (FROM scratch, the same way)
  jaeger      saga-stack.local/jaeger:\$JAEGER_VERSION (FROM scratch, the same way)
An image whose tag already exists is skipped (unless --force); a missing
image that another one is built FROM is built first.

Options:
  --only NAME[,NAME]  build only these images (repeatable); names as above
  --force             rebuild even if the tag exists (the cached rootfs and
                      wheelhouse are reused; --force-rootfs redoes those)
  --force-rootfs      also re-create the cached Debian rootfs tarballs and wheelhouse
  --save              after building, docker save each selected image to
                      <cache>/images/<name>-<tag>.tar (skipped when up to date)
  --save-only         only save (no build); fails if an image is missing
  --list              print the image references (one per line; with --only, of
                      those images) and exit
  -h, --help          show this help

Environment:
  SAGA_STACK_CACHE   cache root (default \$HOME/.cache/saga-stack); rootfs
                     tarballs, wheelhouse, logs and saved images go to <cache>/images
  DOCKER             docker client to use (default: docker)
Logs of each build: <cache>/images/logs/<name>.log; summary (tag, size,
build seconds): <cache>/images/built.tsv.
EOF
}

# shellcheck source=ci/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

ONLY=()
FORCE=0
FORCE_ROOTFS=0
SAVE=0
SAVE_ONLY=0
LIST=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --only)
      [[ $# -ge 2 ]] || die "--only needs a name"
      IFS=',' read -r -a _names <<<"$2"
      ONLY+=("${_names[@]}")
      shift
      ;;
    --only=*)
      IFS=',' read -r -a _names <<<"${1#--only=}"
      ONLY+=("${_names[@]}")
      ;;
    --force) FORCE=1 ;;
    --force-rootfs) FORCE=1 FORCE_ROOTFS=1 ;;
    --save) SAVE=1 ;;
    --save-only) SAVE=1 SAVE_ONLY=1 ;;
    --list) LIST=1 ;;
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

for n in "${ONLY[@]}"; do
  [[ " ${ALL_IMAGES[*]} " == *" $n "* ]] || die "unknown image name '$n' (known: ${ALL_IMAGES[*]})"
done

# --- versions --------------------------------------------------------------
# shellcheck source=ci/versions.sh
source "$REPO_ROOT/ci/versions.sh"
for v in DEBIAN_SUITE DEBIAN_NEXT_SUITE PYTHON_IMAGE_TAG POSTGRES_MAJOR POSTGRES_IMAGE_TAG \
  POSTGRES_SUITE REDIS_IMAGE_TAG REDIS_SUITE KAFKA_VERSION KAFKA_JAVA_MAJOR PROMETHEUS_IMAGE_TAG \
  PROMETHEUS_SUITE PROMETHEUS_ADAPTER_VERSION TRAEFIK_VERSION VICTORIALOGS_VERSION JAEGER_VERSION; do
  [[ -n "${!v:-}" ]] || die "$v is not set in ci/versions.sh"
done
APP_VERSION="$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' \
  "$REPO_ROOT/charts/saga-stack/Chart.yaml")"
[[ -n "$APP_VERSION" ]] || die "no appVersion in charts/saga-stack/Chart.yaml"

REG="saga-stack.local"
declare -A REF=(
  [debian]="$REG/debian:$DEBIAN_SUITE"
  [debian-next]="$REG/debian:$DEBIAN_NEXT_SUITE"
  [python]="$REG/python:$PYTHON_IMAGE_TAG"
  [app]="saga-stack/saga-service:$APP_VERSION"
  [postgres]="$REG/postgres:$POSTGRES_IMAGE_TAG"
  [redis]="$REG/redis:$REDIS_IMAGE_TAG"
  [kafka]="$REG/kafka:$KAFKA_VERSION"
  [prometheus]="$REG/prometheus:$PROMETHEUS_IMAGE_TAG"
  [prometheus-adapter]="$REG/prometheus-adapter:$PROMETHEUS_ADAPTER_VERSION"
  [traefik]="$REG/traefik:$TRAEFIK_VERSION"
  [victoria-logs]="$REG/victoria-logs:$VICTORIALOGS_VERSION"
  [vlagent]="$REG/vlagent:$VICTORIALOGS_VERSION"
  [jaeger]="$REG/jaeger:$JAEGER_VERSION"
)
suite_ref() { echo "$REG/debian:$1"; }

if [[ $LIST -eq 1 ]]; then
  if [[ ${#ONLY[@]} -gt 0 ]]; then listed=("${ONLY[@]}"); else listed=(debian debian-next "${ALL_IMAGES[@]:1}"); fi
  for k in "${listed[@]}"; do echo "${REF[$k]}"; done
  exit 0
fi

DOCKER="${DOCKER:-docker}"
CACHE_ROOT="${SAGA_STACK_CACHE:-${HOME:-/root}/.cache/saga-stack}"
IMG_CACHE="$CACHE_ROOT/images"
LOG_DIR="$IMG_CACHE/logs"
SUMMARY="$IMG_CACHE/built.tsv"
mkdir -p "$IMG_CACHE" "$LOG_DIR"
export DOCKER_BUILDKIT=0 # the classic builder resolves FROM against local images only

command -v "$DOCKER" >/dev/null || die "no '$DOCKER' client on PATH (apt-get install docker.io)"
"$DOCKER" info >/dev/null 2>&1 || die "the Docker engine does not answer ('$DOCKER info' failed); start dockerd first"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/saga-images.XXXXXX")"
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- helpers ---------------------------------------------------------------
ensure_command() { # ensure_command CMD DEBIAN_PACKAGE: install the package when CMD is missing
  command -v "$1" >/dev/null && return 0
  [[ $(id -u) == 0 ]] || die "$1 is missing; install the Debian package $2"
  log "installing the Debian package $2 (for $1)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2"; } \
    >>"$LOG_DIR/apt.log" 2>&1; then
    tail -n 20 "$LOG_DIR/apt.log" >&2
    die "could not install $2 (log: $LOG_DIR/apt.log)"
  fi
}

image_exists() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

# run_logged NAME CMD...: runs CMD with output to the image's log; on failure
# shows the log's tail and exits.
run_logged() {
  local name="$1"
  shift
  local logf="$LOG_DIR/$name.log"
  printf '\n+ %s\n' "$*" >>"$logf"
  if ! "$@" >>"$logf" 2>&1; then
    tail -n 30 "$logf" >&2
    die "$name: command failed: $* (full log: $logf)"
  fi
}

record() { # record NAME REF SECONDS
  local size
  size="$("$DOCKER" image inspect -f '{{.Size}}' "$2")"
  touch "$SUMMARY"
  grep -v -F "	$2	" "$SUMMARY" >"$SUMMARY.tmp" || true
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$size" "$3" "$(date -u +%FT%TZ)" >>"$SUMMARY.tmp"
  mv "$SUMMARY.tmp" "$SUMMARY"
  log "$1: built ${2} ($((size / 1000000)) MB) in ${3}s"
}

# --- debian base (mmdebstrap + docker import) ------------------------------
build_debian_suite() {
  local suite="$1" ref
  ref="$(suite_ref "$suite")"
  if image_exists "$ref" && [[ $FORCE -eq 0 ]]; then
    log "debian: $ref exists, skipped"
    return 0
  fi
  ensure_command mmdebstrap mmdebstrap
  debian_mirrors
  local tarball="$IMG_CACHE/rootfs-$suite-minbase.tar" start=$SECONDS
  if [[ ! -s "$tarball" || $FORCE_ROOTFS -eq 1 ]]; then
    local src=("deb $DEB_URI $suite main" "deb $DEB_URI $suite-updates main")
    [[ -n "$SEC_URI" ]] && src+=("deb $SEC_URI $suite-security main")
    log "debian: mmdebstrap $suite (minbase) from the machine's apt mirror ..."
    local args=(--suite "$suite") s
    for s in "${src[@]}"; do args+=(--source "$s"); done
    [[ -d /usr/share/mmdebstrap/hooks/merged-usr ]] && args+=(--opt --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr)
    # shellcheck disable=SC2016 # "$1" in the hook is the chroot, expanded by mmdebstrap's shell
    args+=(--opt '--aptopt=Acquire::Retries "3"'
      --opt '--aptopt=APT::Install-Recommends "false"'
      --opt '--dpkgopt=path-include=/usr/share/doc/*/copyright'
      --opt '--dpkgopt=path-include=/usr/share/locale/locale.alias'
      --opt '--customize-hook=rm -f "$1/etc/hostname" "$1/etc/resolv.conf"; : >"$1/etc/machine-id"')
    # Into .part, not the cached name: the tarball is complete only with the
    # two files appended below.
    debian_rootfs_tar "${args[@]}" minbase "$tarball.part" "$LOG_DIR/debian-$suite.log"
    # No init in a container: package scripts must not try to start services.
    # (Added after mmdebstrap, whose cleanup removes its own policy-rc.d.)
    mkdir -p "$WORK/extra/usr/sbin"
    printf '#!/bin/sh\n# Containers have no init to start services.\nexit 101\n' >"$WORK/extra/usr/sbin/policy-rc.d"
    chmod 0755 "$WORK/extra/usr/sbin/policy-rc.d"
    # Image layers keep no downloaded .debs nor apt's binary caches.
    mkdir -p "$WORK/extra/etc/apt/apt.conf.d"
    printf '%s\n' '// saga-stack images: keep no package files or binary caches in layers.' \
      'Binary::apt::APT::Keep-Downloaded-Packages "false";' \
      'Dir::Cache::pkgcache "";' 'Dir::Cache::srcpkgcache "";' >"$WORK/extra/etc/apt/apt.conf.d/90container-clean"
    run_logged "debian-$suite" tar -C "$WORK/extra" --owner=0 --group=0 --numeric-owner -rf "$tarball.part" \
      ./usr/sbin/policy-rc.d ./etc/apt/apt.conf.d/90container-clean
    mv "$tarball.part" "$tarball"
  else
    log "debian: reusing cached rootfs $tarball"
  fi
  log "debian: docker import -> $ref"
  run_logged "debian-$suite" "$DOCKER" import \
    -c 'CMD ["bash"]' \
    -c "LABEL org.opencontainers.image.title=debian org.opencontainers.image.version=$suite io.saga-stack.rootfs=mmdebstrap-minbase" \
    -m "mmdebstrap --variant=minbase $suite" "$tarball" "$ref"
  record "debian" "$ref" $((SECONDS - start))
}

# --- docker build wrapper ----------------------------------------------------
# docker_build NAME REF CONTEXT [docker build args...]
docker_build() {
  local name="$1" ref="$2" ctx="$3"
  shift 3
  local start=$SECONDS
  log "$name: docker build -> $ref (log: $LOG_DIR/$name.log)"
  : >"$LOG_DIR/$name.log"
  local force_args=()
  [[ $FORCE -eq 1 ]] && force_args=(--no-cache)
  run_logged "$name" "$DOCKER" build "${force_args[@]}" --rm --force-rm -t "$ref" "$@" "$ctx"
  record "$name" "$ref" $((SECONDS - start))
}

need_image() { # need_image NAME: make sure the image NAME exists (builds it when missing)
  local name="$1"
  if ! image_exists "${REF[$name]}"; then
    log "$name: ${REF[$name]} is missing and needed as a base; building it first"
    "build_${name//-/_}"
  fi
}

build_debian() {
  build_debian_suite "$DEBIAN_SUITE"
  build_debian_suite "$DEBIAN_NEXT_SUITE"
}

build_python() {
  need_suite "$DEBIAN_SUITE"
  docker_build python "${REF[python]}" "$SCRIPT_DIR/python" \
    --build-arg "BASE_IMAGE=$(suite_ref "$DEBIAN_SUITE")"
}

need_suite() {
  local ref
  ref="$(suite_ref "$1")"
  image_exists "$ref" || build_debian_suite "$1"
}

# --- the app: app/Dockerfile with a host-prepared package index --------------
# pip inside `docker build` cannot use PyPI here (the machine's TLS interception
# CA is not in the image's trust store), so the locked wheels are fetched on the
# host with `pip download`, served as a PEP 503 index on 127.0.0.1 for the
# duration of the build (docker build --network host) and passed as the build
# arg PIP_INDEX_URL. A normal build (no build arg) uses PyPI as usual.
prepare_wheelhouse() {
  local lock="$REPO_ROOT/requirements/app.lock"
  [[ -f "$lock" ]] || die "missing $lock"
  local key
  key="$( (cat "$lock"; grep -A3 '^\[build-system\]' "$REPO_ROOT/app/pyproject.toml") | sha256sum | cut -c1-12)"
  WHEELHOUSE="$IMG_CACHE/wheelhouse-$key"
  if [[ -f "$WHEELHOUSE/.complete" && $FORCE_ROOTFS -eq 0 ]]; then
    log "app: reusing wheelhouse $WHEELHOUSE"
    return 0
  fi
  local py
  py="$(command -v python3.11 || command -v python3)"
  "$py" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null ||
    die "a host python3.11 is needed to download cp311 wheels"
  log "app: pip download of the locked requirements + build backend into $WHEELHOUSE"
  rm -rf "$WHEELHOUSE"
  mkdir -p "$WHEELHOUSE/files"
  : >"$LOG_DIR/wheelhouse.log"
  local backend
  backend="$(sed -n '/^\[build-system\]/,/^\[/ s/^requires[[:space:]]*=[[:space:]]*\[\(.*\)\]/\1/p' "$REPO_ROOT/app/pyproject.toml" | tr -d '"' | tr ',' ' ')"
  # Wheels for the image (CPython 3.11, glibc 2.36 of bookworm, this machine's arch).
  local arch platforms=() v
  arch="$(uname -m)"
  for v in $(seq 17 36); do platforms+=(--platform "manylinux_2_${v}_$arch"); done
  platforms+=(--platform "manylinux2014_$arch")
  run_logged wheelhouse "$py" -m pip download --no-deps --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none "${platforms[@]}" \
    -r "$lock" -d "$WHEELHOUSE/files"
  # shellcheck disable=SC2086
  run_logged wheelhouse "$py" -m pip download --only-binary=:all: -d "$WHEELHOUSE/files" $backend wheel
  run_logged wheelhouse "$py" - "$WHEELHOUSE" <<'PY'
import html, os, re, sys
root = sys.argv[1]
files = sorted(os.listdir(os.path.join(root, "files")))
projects = {}
for f in files:
    name = f.split("-")[0]
    projects.setdefault(re.sub(r"[-_.]+", "-", name).lower(), []).append(f)
os.makedirs(os.path.join(root, "simple"), exist_ok=True)
for proj, fs in projects.items():
    d = os.path.join(root, "simple", proj)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "index.html"), "w") as out:
        out.write("<!DOCTYPE html><html><body>\n")
        for f in fs:
            out.write(f'<a href="../../files/{html.escape(f)}">{html.escape(f)}</a><br>\n')
        out.write("</body></html>\n")
with open(os.path.join(root, "simple", "index.html"), "w") as out:
    out.write("<!DOCTYPE html><html><body>\n")
    for proj in sorted(projects):
        out.write(f'<a href="{proj}/">{proj}</a><br>\n')
    out.write("</body></html>\n")
print(f"{len(files)} files, {len(projects)} projects")
PY
  touch "$WHEELHOUSE/.complete"
  # Wheelhouses of older locks are not needed any more.
  find "$IMG_CACHE" -maxdepth 1 -name 'wheelhouse-*' ! -path "$WHEELHOUSE" -exec rm -rf {} +
}

start_index_server() {
  local py port
  py="$(command -v python3)"
  port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  "$py" -m http.server --bind 127.0.0.1 --directory "$WHEELHOUSE" "$port" >>"$LOG_DIR/app.log" 2>&1 &
  SERVER_PID=$!
  local _
  for _ in $(seq 1 50); do
    if "$py" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/simple/', timeout=1)" 2>/dev/null; then
      INDEX_URL="http://127.0.0.1:$port/simple/"
      return 0
    fi
    sleep 0.2
  done
  die "app: the local package index on 127.0.0.1:$port did not start"
}

stop_index_server() {
  if [[ -n "$SERVER_PID" ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}

# The app's tag is the chart's appVersion, which does not change with every
# edit: the image carries a hash of its sources, and a stale one is rebuilt.
app_source_hash() {
  (cd "$REPO_ROOT" && find app/src app/image app/pyproject.toml app/Dockerfile requirements/app.lock \
    app/console-ui/package-lock.json -type f ! -path 'app/src/saga_console/static/vendor/*' \
    ! -name '*.pyc' ! -path '*__pycache__*' ! -path '*.egg-info*' -print0 | sort -z | xargs -0 sha256sum) |
    sha256sum | cut -c1-16
}

up_to_date() { # up_to_date NAME: the image exists (and, for the app, matches its sources)
  image_exists "${REF[$1]}" || return 1
  [[ $1 != app ]] && return 0
  [[ "$("$DOCKER" image inspect -f '{{index .Config.Labels "io.saga-stack.source"}}' "${REF[app]}")" == "$(app_source_hash)" ]]
}

build_app() {
  need_image python
  prepare_wheelhouse
  # A small build context with exactly what app/Dockerfile copies (the classic
  # builder ignores app/Dockerfile.dockerignore and would send the whole tree).
  local ctx="$WORK/app-context"
  rm -rf "$ctx"
  mkdir -p "$ctx/requirements" "$ctx/app"
  cp "$REPO_ROOT/requirements/app.lock" "$ctx/requirements/"
  cp "$REPO_ROOT/app/pyproject.toml" "$REPO_ROOT/app/Dockerfile" "$ctx/app/"
  (cd "$REPO_ROOT/app" && tar --exclude='__pycache__' --exclude='*.pyc' --exclude='*.egg-info' -cf - src image) |
    tar -xf - -C "$ctx/app"
  # The console's browser libraries (npm, locked), installed into the package before pip.
  run_logged app "$REPO_ROOT/ci/console-assets.sh" "$ctx/app/src/saga_console/static/vendor"
  start_index_server
  docker_build app "${REF[app]}" "$ctx" -f "$ctx/app/Dockerfile" --network host \
    --build-arg "BASE_IMAGE=${REF[python]}" --build-arg "PIP_INDEX_URL=$INDEX_URL" \
    --label "io.saga-stack.source=$(app_source_hash)"
  stop_index_server
}

build_postgres() {
  need_suite "$POSTGRES_SUITE"
  docker_build postgres "${REF[postgres]}" "$SCRIPT_DIR/postgres" \
    --build-arg "BASE_IMAGE=$(suite_ref "$POSTGRES_SUITE")" --build-arg "PG_MAJOR=$POSTGRES_MAJOR"
}

build_redis() {
  need_suite "$REDIS_SUITE"
  docker_build redis "${REF[redis]}" "$SCRIPT_DIR/redis" \
    --build-arg "BASE_IMAGE=$(suite_ref "$REDIS_SUITE")"
}

build_kafka() {
  need_suite "$DEBIAN_SUITE"
  local libs="$CACHE_ROOT/kafka-$KAFKA_VERSION/libs"
  if ! ls "$libs"/kafka_*-"$KAFKA_VERSION".jar >/dev/null 2>&1; then
    log "kafka: no jar cache at $libs; running ci/install-services.sh to fetch it (Maven)"
    SAGA_STACK_CACHE="$CACHE_ROOT" bash "$REPO_ROOT/ci/install-services.sh" ||
      die "kafka: ci/install-services.sh failed to provide $libs"
  fi
  local ctx="$WORK/kafka-context"
  rm -rf "$ctx"
  mkdir -p "$ctx"
  cp -a "$SCRIPT_DIR/kafka/." "$ctx/"
  mkdir -p "$ctx/libs"
  cp "$libs"/*.jar "$ctx/libs/"
  # The command-line tools (kafka-topics.sh, console producer/consumer, ...):
  # kafka-tools and the few jars it adds to the broker's, fetched by Maven.
  local tools="$IMG_CACHE/kafka-tools-$KAFKA_VERSION"
  if [[ ! -f "$tools/.complete" || $FORCE_ROOTFS -eq 1 ]]; then
    ensure_command mvn maven
    log "kafka: fetching kafka-tools $KAFKA_VERSION with Maven into $tools"
    rm -rf "$tools"
    mkdir -p "$tools/libs"
    run_logged kafka mvn -B --no-transfer-progress -f "$SCRIPT_DIR/kafka-tools/pom.xml" \
      -Dmaven.repo.local="$CACHE_ROOT/m2" -Dkafka.version="$KAFKA_VERSION" \
      -DoutputDirectory="$tools/libs" dependency:copy-dependencies
    touch "$tools/.complete"
  fi
  local jar base added=0
  for jar in "$tools/libs"/*.jar; do
    base="$(basename "$jar" | sed 's/-[0-9][0-9.]*[^-]*\.jar$//')"
    # Only artifacts the broker does not already have (no second version on the classpath).
    if ! ls "$ctx/libs/$base"-[0-9]*.jar >/dev/null 2>&1; then
      cp "$jar" "$ctx/libs/"
      added=$((added + 1))
    fi
  done
  log "kafka: $(find "$libs" -name '*.jar' | wc -l) broker jars + $added tools jars"
  docker_build kafka "${REF[kafka]}" "$ctx" \
    --build-arg "BASE_IMAGE=$(suite_ref "$DEBIAN_SUITE")" \
    --build-arg "JAVA_MAJOR=$KAFKA_JAVA_MAJOR" --build-arg "KAFKA_VERSION=$KAFKA_VERSION"
}

build_prometheus() {
  need_suite "$PROMETHEUS_SUITE"
  docker_build prometheus "${REF[prometheus]}" "$SCRIPT_DIR/prometheus" \
    --build-arg "BASE_IMAGE=$(suite_ref "$PROMETHEUS_SUITE")"
}

# A Go binary from ci/cluster/build-addons.sh (Go module proxy, niced, cached under
# <cache>/addons/) on an empty base: go_binary_image NAME RECIPE FILE VERSION, where the
# binary is copied into the build context as FILE (what the Dockerfile COPYs).
go_binary_image() {
  local name="$1" recipe="$2" file="$3" version="$4" bin
  bin="$(SAGA_STACK_CACHE="$CACHE_ROOT" "$REPO_ROOT/ci/cluster/build-addons.sh" --path "$recipe")"
  if [[ ! -x "$bin" ]]; then
    log "$name: building the binary from the Go module proxy (ci/cluster/build-addons.sh; minutes, once)"
    SAGA_STACK_CACHE="$CACHE_ROOT" "$REPO_ROOT/ci/cluster/build-addons.sh" "$recipe" >>"$LOG_DIR/$name-go.log" 2>&1 ||
      { tail -n 30 "$LOG_DIR/$name-go.log" >&2; die "$name: go build failed (log: $LOG_DIR/$name-go.log)"; }
  fi
  local ctx="$WORK/$name-context"
  rm -rf "$ctx"
  mkdir -p "$ctx"
  cp "$SCRIPT_DIR/$name/Dockerfile" "$ctx/"
  cp "$bin" "$ctx/$file"
  docker_build "$name" "${REF[$name]}" "$ctx" --build-arg "VERSION=$version"
}

build_prometheus_adapter() { go_binary_image prometheus-adapter prometheus-adapter adapter "$PROMETHEUS_ADAPTER_VERSION"; }
build_traefik() { go_binary_image traefik traefik traefik "$TRAEFIK_VERSION"; }
build_victoria_logs() { go_binary_image victoria-logs victoria-logs victoria-logs-prod "$VICTORIALOGS_VERSION"; }
build_vlagent() { go_binary_image vlagent vlagent vlagent-prod "$VICTORIALOGS_VERSION"; }
build_jaeger() { go_binary_image jaeger jaeger jaeger-linux "$JAEGER_VERSION"; }

save_image() { # save_image NAME
  local ref="$1" file id
  image_exists "$ref" || die "save: $ref does not exist; build it first"
  file="$IMG_CACHE/$(echo "${ref##*/}" | tr ':' '-').tar"
  id="$("$DOCKER" image inspect -f '{{.Id}}' "$ref")"
  if [[ -s "$file" && -f "$file.id" && "$(cat "$file.id")" == "$id" ]]; then
    log "save: $file is up to date"
    return 0
  fi
  log "save: docker save $ref -> $file"
  "$DOCKER" save -o "$file.part" "$ref" || die "save: docker save $ref failed"
  mv "$file.part" "$file"
  echo "$id" >"$file.id"
}

# --- main ------------------------------------------------------------------
SELECTED=("${ALL_IMAGES[@]}")
[[ ${#ONLY[@]} -gt 0 ]] && SELECTED=("${ONLY[@]}")

if [[ $SAVE_ONLY -eq 0 ]]; then
  log "building: ${SELECTED[*]} (cache: $IMG_CACHE)"
  for name in "${SELECTED[@]}"; do
    if [[ $name == debian ]]; then
      build_debian
      continue
    fi
    if up_to_date "$name" && [[ $FORCE -eq 0 ]]; then
      log "$name: ${REF[$name]} is up to date, skipped (--force rebuilds)"
      continue
    fi
    "build_${name//-/_}"
  done
fi

if [[ $SAVE -eq 1 ]]; then
  for name in "${SELECTED[@]}"; do
    if [[ $name == debian ]]; then
      save_image "${REF[debian]}"
      save_image "${REF[debian-next]}"
    else
      save_image "${REF[$name]}"
    fi
  done
fi

log "images:"
for name in "${SELECTED[@]}"; do
  refs=("${REF[$name]}")
  [[ $name == debian ]] && refs+=("${REF[debian-next]}")
  for r in "${refs[@]}"; do
    if image_exists "$r"; then
      printf '  %-48s %6s MB\n' "$r" "$(($("$DOCKER" image inspect -f '{{.Size}}' "$r") / 1000000))" >&2
    else
      printf '  %-48s (missing)\n' "$r" >&2
    fi
  done
done
