#!/usr/bin/env bash
# Remove the offline cluster's node containers and network; optionally stop our dockerd.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# ci/down.sh, which runs this, is already "down"
PROG=cluster-down
usage() {
  cat <<USAGE
Usage: $(basename "$0") [--stop-engine]

Deletes every container labelled saga-stack.cluster=\${CLUSTER_NAME:-saga-stack}
(with its /var volume) and the cluster network. Caches and images stay.
--stop-engine  also stop the dockerd that dockerd.sh started (by its PID file).
USAGE
}
stop=0
for a in "$@"; do case "$a" in -h|--help) usage; exit 0 ;; --stop-engine) stop=1 ;; *) die "unknown arg $a" ;; esac; done
if "${CLUSTER_DIR}/dockerd.sh" status >/dev/null 2>&1; then
  "${CLUSTER_DIR}/node.sh" delete-all
else
  log "engine not running: no nodes to delete"
fi
rm -f "${CLUSTER_STATE}"/kubeconfig*
[[ $stop == 0 ]] || "${CLUSTER_DIR}/dockerd.sh" stop
