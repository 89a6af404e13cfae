#!/usr/bin/env bash
# The offline cluster's monitoring stack: Prometheus scraping the chart's app pods and
# prometheus-adapter serving external.metrics.k8s.io, so the chart's HPA can scale on
# the Kafka consumer backlog. Idempotent; a second run takes seconds.
set -euo pipefail
# shellcheck source=ci/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"
PROG=monitoring

MON_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NS=saga-monitoring
APISERVICE=v1beta1.external.metrics.k8s.io
PROM_REF="saga-stack.local/prometheus:${PROMETHEUS_IMAGE_TAG}"
ADAPTER_REF="saga-stack.local/prometheus-adapter:${PROMETHEUS_ADAPTER_VERSION}"

usage() {
  cat <<USAGE
Usage: ci/monitoring/up.sh [--kubeconfig FILE] [--no-images] [--timeout SECONDS]

Brings up, in namespace ${NS} of the offline cluster (ci/cluster/):
  Prometheus          ${PROM_REF}
                      scrapes every release's app pods (port http, /metrics, every 5s)
  prometheus-adapter  ${ADAPTER_REF}
                      external.metrics.k8s.io: saga_consumer_backlog_messages per namespace
Steps, each skipped when already done:
  1. images: ci/images/build.sh --only prometheus,prometheus-adapter --save (the
     adapter binary comes from the Go module proxy via ci/cluster/build-addons.sh,
     a few minutes the first time), then imported into the worker nodes
  2. kubectl apply -f ci/monitoring/manifests/ (a changed ConfigMap rolls its pods)
  3. waits for Prometheus and the adapter to be Ready and for the APIService
     ${APISERVICE} to be Available

${ADDON_OPTIONS_HELP}
                      (--upstream-images is not offered here: online, see
                      ci/monitoring/README.md)

Check it: ci/monitoring/smoke.sh. Remove it: kubectl delete -f ci/monitoring/manifests/
USAGE
}

addon_args "$@"
[[ $ADDON_UPSTREAM == 0 ]] || die "--upstream-images: not offered for the monitoring stack (online, see ci/monitoring/README.md)"
t0=$SECONDS
addon_image_refs "$MON_DIR" "${PROM_REF}=" "${ADAPTER_REF}="

[[ $ADDON_IMAGES == 1 ]] && addon_images prometheus prometheus-adapter

# One file at a time, each Deployment Ready before the next file: the adapter starts
# when Prometheus already answers (see the headless Service in 10-prometheus.yaml).
log "kubectl apply -f ci/monitoring/manifests/ (namespace ${NS}; waits up to ${ADDON_TIMEOUT}s per Deployment)"
apply_manifests "$NS" "$ADDON_TIMEOUT" "${MON_DIR}"/manifests/*.yaml
"${K[@]}" wait --for=condition=Available "apiservice/${APISERVICE}" --timeout="${ADDON_TIMEOUT}s" >/dev/null ||
  { "${K[@]}" get apiservice "${APISERVICE}" -o yaml >&2; die "APIService ${APISERVICE} is not Available"; }
"${K[@]}" get --raw "/apis/external.metrics.k8s.io/v1beta1" >/dev/null ||
  die "the external metrics API does not answer"
log "ready in $((SECONDS - t0))s: Prometheus (svc/prometheus.${NS}:9090) and ${APISERVICE} Available"
log "  value: kubectl get --raw /apis/external.metrics.k8s.io/v1beta1/namespaces/<ns>/saga_consumer_backlog_messages"
