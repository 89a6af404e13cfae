#!/usr/bin/env bash
# The cluster's central logs: vlagent on every node ships every container's log lines to
# VictoriaLogs, where they are queried by any field (saga id, order id, trace id, pod).
# Idempotent; a second run takes seconds.
set -euo pipefail
# shellcheck source=ci/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"
PROG=logging

LOGGING_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NS=saga-logging
STORE_REF="saga-stack.local/victoria-logs:${VICTORIALOGS_VERSION}"
AGENT_REF="saga-stack.local/vlagent:${VICTORIALOGS_VERSION}"
# the upstream images of the same release, for a cluster that pulls from a registry
UPSTREAM_STORE_REF="victoriametrics/victoria-logs:${VICTORIALOGS_VERSION}"
UPSTREAM_AGENT_REF="victoriametrics/vlagent:${VICTORIALOGS_VERSION}"
UI_URL="http://logs.saga.localhost:${INGRESS_HTTP_PORT}"

usage() {
  cat <<USAGE
Usage: ci/logging/up.sh [--kubeconfig FILE] [--upstream-images] [--no-images] [--timeout SECONDS]

Brings up, in namespace ${NS}:
  VictoriaLogs ${VICTORIALOGS_VERSION}  ${STORE_REF}: the log store (2 days, 768 MiB),
                        svc/victoria-logs.${NS}:9428, web UI and query API through the ingress
  vlagent (DaemonSet)   ${AGENT_REF}: on every worker node, tails every
                        container's log file and ships the lines with the pod's metadata
Both binaries come from one Go module (ci/cluster/build-addons.sh, a minute or two the
first time), each on an empty base (ci/images/build.sh), imported into the worker nodes.

  --kubeconfig FILE   default: \$KUBECONFIG, else ${CLUSTER_STATE}/kubeconfig
  --upstream-images   run ${UPSTREAM_STORE_REF} and ${UPSTREAM_AGENT_REF}
                      (a cluster that pulls images) instead of building ours (implies --no-images)
  --no-images         do not build or load the images (they are already in the nodes)
  --timeout SECONDS   for each wait (default 300)

Query (the app's JSON fields are fields here):
  curl -s ${UI_URL}/select/logsql/query --data-urlencode 'query=saga_id:="<id>"'
Web UI: ${UI_URL}/select/vmui/   See ci/logging/README.md.
Remove it: kubectl delete -f ci/logging/manifests/
USAGE
}

kubeconfig="${KUBECONFIG:-${CLUSTER_STATE}/kubeconfig}"
images=1 timeout=300 upstream=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --kubeconfig) kubeconfig="${2:?--kubeconfig needs a file}"; shift ;;
    --upstream-images) upstream=1; images=0 ;;
    --no-images) images=0 ;;
    --timeout) timeout="${2:?--timeout needs seconds}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done
addon_kubectl "$kubeconfig"
t0=$SECONDS

for ref in "$STORE_REF" "$AGENT_REF"; do
  grep -qF "image: ${ref}" "${LOGGING_DIR}"/manifests/*.yaml ||
    die "ci/logging/manifests/ do not use ${ref} (ci/versions.sh): update the image tags there"
done
IMAGE_SUBST=""
[[ $upstream == 1 ]] && IMAGE_SUBST="s|image: ${STORE_REF}|image: ${UPSTREAM_STORE_REF}|;s|image: ${AGENT_REF}|image: ${UPSTREAM_AGENT_REF}|"

[[ $images == 1 ]] && addon_images victoria-logs vlagent

# The store first: the agents start shipping as soon as they run.
log "kubectl apply -f ci/logging/manifests/ (namespace ${NS}; waits up to ${timeout}s each)"
apply_manifests "$NS" "$timeout" "${LOGGING_DIR}"/manifests/*.yaml
"${K[@]}" -n "$NS" rollout status ds/vlagent --timeout="${timeout}s" >/dev/null ||
  { "${K[@]}" -n "$NS" get pods -o wide >&2; die "ds/vlagent in ${NS} is not Ready on every node"; }
log "  ds/vlagent Ready on $("${K[@]}" -n "$NS" get ds vlagent -o jsonpath='{.status.numberReady}') nodes"
log "ready in $((SECONDS - t0))s: svc/victoria-logs.${NS}:9428; web UI ${UI_URL}/select/vmui/"
