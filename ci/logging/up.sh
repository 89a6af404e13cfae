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
  VictoriaLogs ${VICTORIALOGS_VERSION}  ${STORE_REF} (upstream: ${UPSTREAM_STORE_REF}):
                        the log store (2 days, 768 MiB), svc/victoria-logs.${NS}:9428,
                        web UI and query API through the ingress
  vlagent (DaemonSet)   ${AGENT_REF} (upstream: ${UPSTREAM_AGENT_REF}): on every
                        worker node, tails every container's log file and ships the
                        lines with the pod's metadata
Both binaries come from one Go module (ci/cluster/build-addons.sh, a minute or two the
first time), each on an empty base (ci/images/build.sh), imported into the worker nodes.

${ADDON_OPTIONS_HELP}

Query (the app's JSON fields are fields here):
  curl -s ${UI_URL}/select/logsql/query --data-urlencode 'query=saga_id:="<id>"'
Web UI: ${UI_URL}/select/vmui/   See ci/logging/README.md.
Remove it: kubectl delete -f ci/logging/manifests/
USAGE
}

addon_args "$@"
t0=$SECONDS
addon_image_refs "$LOGGING_DIR" "${STORE_REF}=${UPSTREAM_STORE_REF}" "${AGENT_REF}=${UPSTREAM_AGENT_REF}"

[[ $ADDON_IMAGES == 1 ]] && addon_images victoria-logs vlagent

# The store first: the agents start shipping as soon as they run.
log "kubectl apply -f ci/logging/manifests/ (namespace ${NS}; waits up to ${ADDON_TIMEOUT}s each)"
addon_headless "$NS" victoria-logs
apply_manifests "$NS" "$ADDON_TIMEOUT" "${LOGGING_DIR}"/manifests/*.yaml
if [[ $ADDON_WAS_CLUSTER_IP == 1 ]]; then
  log "  ds/vlagent restarted: its connections to the old ClusterIP stay open otherwise"
  "${K[@]}" -n "$NS" rollout restart ds/vlagent >/dev/null || die "restarting ds/vlagent failed"
fi
"${K[@]}" -n "$NS" rollout status ds/vlagent --timeout="${ADDON_TIMEOUT}s" >/dev/null ||
  { "${K[@]}" -n "$NS" get pods -o wide >&2; die "ds/vlagent in ${NS} is not Ready on every node"; }
log "  ds/vlagent Ready on $("${K[@]}" -n "$NS" get ds vlagent -o jsonpath='{.status.numberReady}') nodes"
log "ready in $((SECONDS - t0))s: svc/victoria-logs.${NS}:9428; web UI ${UI_URL}/select/vmui/"
