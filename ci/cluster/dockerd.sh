#!/usr/bin/env bash
# Start / stop / check a Docker engine (Debian's docker.io) run by hand, without systemd.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") start|stop|status|env [--install]

  start     start dockerd in the background (no-op if ours already runs);
            log: ${CLUSTER_STATE}/dockerd.log, pid: ${CLUSTER_STATE}/dockerd.pid
  stop      stop the dockerd that 'start' started (by its recorded PID only)
  status    exit 0 if the engine answers
  env       print 'export DOCKER_API_VERSION=...' for the running engine
  --install apt-get install docker.io first if dockerd is missing
USAGE
}

cmd="${1:-}"; shift || true
install=0
for a in "$@"; do case "$a" in --install) install=1 ;; -h|--help) usage; exit 0 ;; *) die "unknown arg $a" ;; esac; done
mkdir -p "${CLUSTER_STATE}"
PIDF="${CLUSTER_STATE}/dockerd.pid"

engine_api() {
  curl -fsS --max-time 3 --unix-socket /var/run/docker.sock http://localhost/version 2>/dev/null \
    | python3 -c 'import json,sys;print(json.load(sys.stdin)["ApiVersion"])' 2>/dev/null
}

case "$cmd" in
  -h|--help|"") usage; [[ -n "$cmd" ]] ;;
  start)
    if ! command -v dockerd >/dev/null; then
      [[ $install == 1 ]] || die "dockerd not installed (rerun with --install, or: apt-get install -y docker.io)"
      log "installing docker.io from Debian"
      # what mmdebstrap and the node scripts need come along with the engine
      export DEBIAN_FRONTEND=noninteractive
      apt-get install -y -q docker.io mmdebstrap >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -q docker.io mmdebstrap >/dev/null; } \
        || die "could not install Debian's docker.io"
    fi
    if engine_api >/dev/null; then log "engine already answers (API $(engine_api))"; exit 0; fi
    log "starting dockerd (log ${CLUSTER_STATE}/dockerd.log)"
    # setsid: own session so the caller's job control does not reach it
    setsid /usr/sbin/dockerd --log-level=warn >>"${CLUSTER_STATE}/dockerd.log" 2>&1 < /dev/null &
    echo $! > "${PIDF}"
    for _ in $(seq 1 60); do
      engine_api >/dev/null && { log "dockerd pid $(cat "${PIDF}"), API $(engine_api)"; exit 0; }
      kill -0 "$(cat "${PIDF}")" 2>/dev/null || die "dockerd exited; see ${CLUSTER_STATE}/dockerd.log"
      sleep 1
    done
    die "dockerd did not answer within 60s; see ${CLUSTER_STATE}/dockerd.log"
    ;;
  stop)
    [[ -f "${PIDF}" ]] || { log "no pid file: nothing of ours to stop"; exit 0; }
    pid="$(cat "${PIDF}")"
    if kill -0 "$pid" 2>/dev/null; then
      log "stopping dockerd pid ${pid}"
      kill -TERM "$pid"
      for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -0 "$pid" 2>/dev/null && die "dockerd ${pid} still running after 30s"
    fi
    rm -f "${PIDF}"; log "dockerd stopped"
    ;;
  status) v="$(engine_api)" || die "engine does not answer"; log "engine API ${v}" ;;
  env) v="$(engine_api)" || die "engine does not answer"; echo "export DOCKER_API_VERSION=${v}" ;;
  *) usage; exit 2 ;;
esac
