#!/usr/bin/env bash
# The cluster's trace store: Jaeger, receiving the spans the app exports over OTLP and
# answering queries by trace id. Idempotent; a second run takes seconds.
set -euo pipefail
# shellcheck source=ci/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"
PROG=tracing

TRACING_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NS=saga-tracing
JAEGER_REF="saga-stack.local/jaeger:${JAEGER_VERSION}"
UPSTREAM_JAEGER_REF="jaegertracing/jaeger:${JAEGER_UPSTREAM_TAG}"
URL="http://traces.saga.localhost:${INGRESS_HTTP_PORT}"

usage() {
  cat <<USAGE
Usage: ci/tracing/up.sh [--kubeconfig FILE] [--upstream-images] [--no-images] [--timeout SECONDS]

Brings up, in namespace ${NS}:
  Jaeger ${JAEGER_VERSION} (all in one)  ${JAEGER_REF}: OTLP in on
                      svc/jaeger.${NS}:4318 (HTTP) and :4317 (gRPC), the newest 20,000
                      traces in memory, the query API on :16686 and through the ingress
The binary comes from the Go module proxy (ci/cluster/build-addons.sh, about 5 minutes the
first time), on an empty base (ci/images/build.sh), imported into the worker nodes. It has
no web UI (its assets are not in the Go module); the upstream image has one.

  --kubeconfig FILE   default: \$KUBECONFIG, else ${CLUSTER_STATE}/kubeconfig
  --upstream-images   run ${UPSTREAM_JAEGER_REF} (a cluster that pulls images), with the UI,
                      instead of building ours (implies --no-images)
  --no-images         do not build or load the image (it is already in the nodes)
  --timeout SECONDS   for each wait (default 300)

One trace: curl -s ${URL}/api/traces/<trace id>   See ci/tracing/README.md.
Remove it: kubectl delete -f ci/tracing/manifests/
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

grep -qF "image: ${JAEGER_REF}" "${TRACING_DIR}/manifests/10-jaeger.yaml" ||
  die "ci/tracing/manifests/10-jaeger.yaml does not use ${JAEGER_REF} (ci/versions.sh): update its image"
IMAGE_SUBST=""
[[ $upstream == 1 ]] && IMAGE_SUBST="s|image: ${JAEGER_REF}|image: ${UPSTREAM_JAEGER_REF}|"

[[ $images == 1 ]] && addon_images jaeger

log "kubectl apply -f ci/tracing/manifests/ (namespace ${NS}; waits up to ${timeout}s)"
apply_manifests "$NS" "$timeout" "${TRACING_DIR}"/manifests/*.yaml
log "ready in $((SECONDS - t0))s: OTLP at http://jaeger.${NS}.svc:4318, queries at ${URL}/api/traces/<trace id>"
