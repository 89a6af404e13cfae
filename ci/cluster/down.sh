#!/usr/bin/env bash
# Remove the offline cluster (kind delete cluster); optionally stop our dockerd.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# ci/down.sh, which runs this, is already "down"
PROG=cluster-down
usage() {
  cat <<USAGE
Usage: $(basename "$0") [--stop-engine]

Deletes the kind cluster ${CLUSTER_NAME}: its node containers and their /var
volumes. Caches and images stay.
--stop-engine  also stop the dockerd that dockerd.sh started (by its PID file).
USAGE
}
stop=0
for a in "$@"; do case "$a" in -h|--help) usage; exit 0 ;; --stop-engine) stop=1 ;; *) die "unknown arg $a" ;; esac; done
if ! "${CLUSTER_DIR}/dockerd.sh" status >/dev/null 2>&1; then
  log "engine not running: no nodes to delete"
elif docker_env && [[ -n "$(cluster_nodes)" ]]; then
  "$(kind_bin)" delete cluster --name "${CLUSTER_NAME}" --kubeconfig "${CLUSTER_STATE}/kubeconfig"
fi
rm -f "${CLUSTER_STATE}"/kubeconfig*
[[ $stop == 0 ]] || "${CLUSTER_DIR}/dockerd.sh" stop
