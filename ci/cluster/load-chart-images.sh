#!/usr/bin/env bash
# Imports the chart's offline images (saved by ci/images/build.sh --save) into
# every node of the cluster, so pods start with no registry at all.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [IMAGE_TAR...]

Imports the app, PostgreSQL, Redis and Kafka image tars from
\${SAGA_STACK_CACHE}/images/ (or the given tars) into the containerd of every
node of the kind cluster ${CLUSTER_NAME}. Images a node already has (same image
ID) are skipped, so a second run takes seconds. Build the tars first:
ci/images/build.sh --save.
USAGE
}
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
need docker; docker_env

tars=("$@")
if [[ ${#tars[@]} -eq 0 ]]; then
  for name in saga-service postgres redis kafka; do
    found=("${SAGA_STACK_CACHE}/images/${name}-"*.tar)
    [[ -s "${found[0]}" ]] || die "no saved image for $name in ${SAGA_STACK_CACHE}/images: run ci/images/build.sh --save"
    tars+=("${found[@]}")
  done
fi
mapfile -t nodes < <(cluster_nodes)
[[ ${#nodes[@]} -gt 0 ]] || die "no cluster nodes: run ci/cluster/up.sh first"
for node in "${nodes[@]}"; do
  log "images -> $node"
  "${CLUSTER_DIR}/load-images.sh" --refresh "$node" "${tars[@]}"
done
