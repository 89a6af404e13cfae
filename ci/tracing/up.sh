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
  Jaeger ${JAEGER_VERSION} (all in one)  ${JAEGER_REF} (upstream, with the web UI:
                      ${UPSTREAM_JAEGER_REF}): OTLP in on svc/jaeger.${NS}:4318 (HTTP)
                      and :4317 (gRPC), the newest 5,000 traces in memory, the query
                      API on :16686 and through the ingress
The binary comes from the Go module proxy (ci/cluster/build-addons.sh, about 5 minutes the
first time), on an empty base (ci/images/build.sh), imported into the worker nodes. It has
no web UI (its assets are not in the Go module).

${ADDON_OPTIONS_HELP}

One trace: curl -s ${URL}/api/traces/<trace id>   See ci/tracing/README.md.
Remove it: kubectl delete -f ci/tracing/manifests/
USAGE
}

addon_args "$@"
t0=$SECONDS
addon_image_refs "$TRACING_DIR" "${JAEGER_REF}=${UPSTREAM_JAEGER_REF}"

[[ $ADDON_IMAGES == 1 ]] && addon_images jaeger

log "kubectl apply -f ci/tracing/manifests/ (namespace ${NS}; waits up to ${ADDON_TIMEOUT}s)"
addon_headless "$NS" jaeger
apply_manifests "$NS" "$ADDON_TIMEOUT" "${TRACING_DIR}"/manifests/*.yaml
log "ready in $((SECONDS - t0))s: OTLP at http://jaeger.${NS}.svc:4318, queries at ${URL}/api/traces/<trace id>"
