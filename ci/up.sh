#!/usr/bin/env bash
# `make up`: from nothing to the whole stack running on a local multi-node
# cluster, and how to reach it. Idempotent: a running cluster and release are
# reused (the release is upgraded to the working tree's chart).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.sh
source "$repo/ci/versions.sh"
# shellcheck source=lib.sh
source "$repo/ci/lib.sh"

usage() {
  cat <<EOF
Usage: ci/up.sh [--mode auto|offline|online] [--no-install] [--no-monitoring]
                [--no-ingress] [--no-logging] [--no-tracing] [--release NAME]
                [--namespace NS]

Brings up a 1 control-plane + 3 worker Kubernetes cluster (creating it when
none is running), then (offline) the monitoring stack, then the ingress
controller, the central logs and the trace store, then installs the chart with
values/local.yaml and waits until every workload is Ready. The app is then at
http://saga.localhost:8080/ (HTTPS: 8443), every pod's logs at
http://logs.saga.localhost:8080/select/vmui/, each saga's trace at
http://traces.saga.localhost:8080/api/traces/<trace id>.

  --mode offline   build every binary and image here from package registries
                   (Debian, Go module proxy, PyPI, Maven Central): ci/cluster/, ci/images/
  --mode online    stock kind and upstream images (needs a container registry)
  --mode auto      online when 'kind' is installed and a registry answers, else offline (default)
  --no-install     cluster, images and monitoring only, no release (the e2e tier installs its own)
  --no-monitoring  offline: skip Prometheus + prometheus-adapter (ci/monitoring/up.sh),
                   which serve the backlog metric the chart's HPA scales on
  --no-ingress     skip Traefik, the Ingress and Gateway API controller that serves
                   the release on 127.0.0.1 (ci/ingress/up.sh)
  --no-logging     skip the central logs: VictoriaLogs and its node agent vlagent
                   (ci/logging/up.sh)
  --no-tracing     skip the trace store: Jaeger, which the local profile's app sends
                   its spans to (ci/tracing/up.sh)
  --release NAME   Helm release name (default saga)
  --namespace NS   namespace of the release (default saga)

Environment: SAGA_STACK_MODE (same as --mode), SAGA_STACK_CACHE (caches,
default ~/.cache/saga-stack). The cluster's kubeconfig is merged into
~/.kube/config (context saga-stack) so kubectl and helm find it by default.
Tear down: make down.
EOF
}

mode=${SAGA_STACK_MODE:-auto} no_install=0 monitoring=1 ingress=1 logging=1 tracing=1 release=saga namespace=saga
while [[ $# -gt 0 ]]; do
  case "$1" in
    --mode) mode=${2:?--mode needs a value}; shift ;;
    --no-install) no_install=1 ;;
    --no-monitoring) monitoring=0 ;;
    --no-ingress) ingress=0 ;;
    --no-logging) logging=0 ;;
    --no-tracing) tracing=0 ;;
    --release) release=${2:?--release needs a value}; shift ;;
    --namespace) namespace=${2:?--namespace needs a value}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; echo "up: unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

t0=$(date +%s)
STEP_T0=$t0

registry_answers() {
  # pulling kind's node image is the question that matters for the online path
  command -v kind >/dev/null && command -v docker >/dev/null \
    && timeout 120 docker pull --quiet "kindest/node:${KIND_NODE_TAG}" >/dev/null 2>&1
}

case "$mode" in
  auto) if registry_answers; then mode=online; else mode=offline; fi ;;
  online|offline) ;;
  *) die "--mode must be auto, offline or online, not '$mode'" ;;
esac
step "mode: $mode"

step "project tools (helm, Python venv)"
"$repo/ci/bootstrap.sh" --helm --python >/dev/null
export PATH="$repo/.tools/bin:$PATH"

kube_dir="$HOME/.kube"
mkdir -p "$kube_dir"

if [[ "$mode" == offline ]]; then
  cluster_kubeconfig="${CLUSTER_STATE:-/var/tmp/saga-stack-cluster}/kubeconfig"
  kubectl_built="${SAGA_STACK_CACHE:-$HOME/.cache/saga-stack}/k8s-build/$K8S_VERSION/bin/kubectl"
  step "cluster (offline build; the first run compiles Kubernetes: expect 20-40 minutes)"
  "$repo/ci/cluster/up.sh"
  # the kubectl built with the cluster, where the project's tools live
  ln -sf "$kubectl_built" "$repo/.tools/bin/kubectl"
  step "app and data-layer images (offline build)"
  "$repo/ci/images/build.sh" --save
  step "loading images into the nodes"
  "$repo/ci/cluster/load-chart-images.sh"
  if [[ $monitoring == 1 ]]; then
    # before the release: its HPA finds the external backlog metric from the start
    step "monitoring: Prometheus + prometheus-adapter (external metrics API for the HPA)"
    "$repo/ci/monitoring/up.sh" --kubeconfig "$cluster_kubeconfig"
  fi
  if [[ $ingress == 1 ]]; then
    step "ingress: Traefik (Ingress and Gateway API) on 127.0.0.1"
    "$repo/ci/ingress/up.sh" --kubeconfig "$cluster_kubeconfig"
  fi
  if [[ $logging == 1 ]]; then
    step "logs: VictoriaLogs + vlagent on every worker"
    "$repo/ci/logging/up.sh" --kubeconfig "$cluster_kubeconfig"
  fi
  if [[ $tracing == 1 ]]; then
    step "traces: Jaeger (OTLP in, query API)"
    "$repo/ci/tracing/up.sh" --kubeconfig "$cluster_kubeconfig"
  fi
  values=(-f "$repo/values/local.yaml" -f "$repo/values/offline-images.yaml")
else
  command -v kind >/dev/null || die "online mode needs kind on PATH"
  if ! kind get clusters 2>/dev/null | grep -qx saga-stack; then
    step "cluster (kind ${KIND_NODE_TAG})"
    kind create cluster --name saga-stack --image "kindest/node:${KIND_NODE_TAG}" \
      --config <("$repo/ci/cluster/kind-config.sh") --wait 5m
  fi
  cluster_kubeconfig=$(mktemp)
  kind get kubeconfig --name saga-stack >"$cluster_kubeconfig"
  app_image="saga-stack/saga-service:$(awk '/^appVersion:/ {gsub(/"/, "", $2); print $2}' "$repo/charts/saga-stack/Chart.yaml")"
  step "app image $app_image (docker build on the upstream Python base)"
  "$repo/ci/console-assets.sh" "$repo/app/src/saga_console/static/vendor"
  docker build -f "$repo/app/Dockerfile" -t "$app_image" "$repo"
  kind load docker-image --name saga-stack "$app_image"
  values=(-f "$repo/values/local.yaml")
  command -v kubectl >/dev/null || die "online mode needs kubectl on PATH"
  [[ $monitoring == 1 ]] && step "monitoring: not installed online; for the backlog metric see ci/monitoring/README.md"
  if [[ $ingress == 1 ]]; then
    step "ingress: Traefik (Ingress and Gateway API) on 127.0.0.1, upstream image"
    "$repo/ci/ingress/up.sh" --kubeconfig "$cluster_kubeconfig" --upstream-images
  fi
  if [[ $logging == 1 ]]; then
    step "logs: VictoriaLogs + vlagent, upstream images"
    "$repo/ci/logging/up.sh" --kubeconfig "$cluster_kubeconfig" --upstream-images
  fi
  if [[ $tracing == 1 ]]; then
    step "traces: Jaeger, upstream image"
    "$repo/ci/tracing/up.sh" --kubeconfig "$cluster_kubeconfig" --upstream-images
  fi
fi

step "kubeconfig -> $kube_dir/config (context saga-stack)"
"$repo/ci/cluster/merge-kubeconfig.sh" "$cluster_kubeconfig" "$kube_dir/config" saga-stack

if [[ $no_install == 1 ]]; then
  step "cluster and images ready (--no-install)"
  exit 0
fi

step "installing the chart: helm upgrade --install $release charts/saga-stack -n $namespace ${values[*]/#$repo\//}"
helm upgrade --install "$release" "$repo/charts/saga-stack" -n "$namespace" --create-namespace \
  "${values[@]}" --wait --wait-for-jobs --timeout 15m

step "ready in $(( $(date +%s) - t0 )) s"
kubectl -n "$namespace" get pods -o wide
helm get notes "$release" -n "$namespace"
cat <<EOF

kubeconfig: $kube_dir/config (context saga-stack; kubectl and helm use it by default)
EOF
