#!/usr/bin/env bash
# The offline cluster: from nothing to 1 control-plane + N workers, every piece built here
# from package registries and cached (ci/up.sh calls it; docs/offline-cluster.md).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# ci/up.sh, which runs this, is already "up"
PROG=cluster-up
: "${WORKERS:=3}"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--workers N]

Steps (each one idempotent and cached; see the scripts it calls):
  dockerd.sh start --install     Docker engine from Debian, started by hand
  build-k8s.sh                   k8s ${K8S_VERSION} + etcd + CoreDNS + pause from the Go module proxy
  build-addons.sh                kind ${KIND_VERSION}, metrics-server, local-path-provisioner, kube-router
  build-node-image.sh --rootfs-only   the node's Debian root filesystem
  build-images.sh                kubeadm's and the add-ons' images, FROM scratch
  build-node-image.sh            node image ${NODE_IMAGE_TAG}, those images baked in
  kind create cluster            cluster ${CLUSTER_NAME} on that image (kind-config.sh --offline);
                                 through privileged-shim/ when the engine refuses --privileged
  simple-cni.sh                  bridge CNI + static routes
  cni/kube-router.yaml           kube-router: routes between nodes (BGP) + NetworkPolicy (iptables+ipset)
  addons/{metrics-server,local-path}.yaml   metrics-server, local-path-provisioner (default StorageClass)
then waits for all nodes Ready and kube-system pods Running. A cluster ${CLUSTER_NAME}
whose API server answers is kept; one that does not (its engine restarted) is recreated.
Kubeconfig: ${CLUSTER_STATE}/kubeconfig (also printed). Tear down: down.sh
USAGE
}
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    *) die "unknown arg $1" ;;
  esac
done
here="${CLUSTER_DIR}"
T0=$(date +%s)

step "engine";       "$here/dockerd.sh" start --install
docker_env
step "binaries";     timed build-k8s-all "$here/build-k8s.sh"
timed build-addons "$here/build-addons.sh" kind metrics-server local-path-provisioner kube-router
step "rootfs";       timed rootfs "$here/build-node-image.sh" --rootfs-only
step "k8s images";   timed k8s-images "$here/build-images.sh"
step "node image";   timed node-image "$here/build-node-image.sh"

KC="${CLUSTER_STATE}/kubeconfig"
KUBECTL="${SAGA_STACK_CACHE}/k8s-build/${K8S_VERSION}/bin/kubectl"
KIND="$(kind_bin)"
kind_path="$PATH"
# kind runs nodes (and `docker exec`s into them) with --privileged; an engine whose VM
# lacks CAP_SYS_RESOURCE refuses that, and the shim puts the flags measured to work there
# in its place.
if ! docker run --rm --privileged --entrypoint true "${NODE_IMAGE_TAG}" >/dev/null 2>&1; then
  log "the engine refuses --privileged: kind runs through ${here}/privileged-shim/docker"
  kind_path="${here}/privileged-shim:$PATH"
fi
kind() { PATH="$kind_path" "$KIND" "$@"; }
api_answers() {
  kind get kubeconfig --name "${CLUSTER_NAME}" > "$KC" 2>/dev/null \
    && "$KUBECTL" --kubeconfig "$KC" get --raw /readyz --request-timeout=10s >/dev/null 2>&1
}
if [[ -n "$(cluster_nodes)" ]] && ! api_answers; then
  # nodes left over from a stopped engine (a reboot, an ended session) whose control plane
  # did not come back: start over from the cached node image
  step "kind cluster ${CLUSTER_NAME}: its API server does not answer, recreating it"
  kind delete cluster --name "${CLUSTER_NAME}" --kubeconfig "$KC"
fi
if [[ -z "$(cluster_nodes)" ]]; then
  step "kind create cluster ${CLUSTER_NAME} (image ${NODE_IMAGE_TAG}, ${WORKERS} workers)"
  mkdir -p "${CLUSTER_STATE}"
  t0=$(date +%s)
  kind create cluster --name "${CLUSTER_NAME}" --image "${NODE_IMAGE_TAG}" \
    --config <("$here/kind-config.sh" --offline --workers "${WORKERS}") --kubeconfig "$KC" \
    || die "kind create cluster failed (see above); kind removed the nodes: docs/offline-cluster.md, Common failures, shows how to keep them for kind export logs"
  echo "$(date -u +%FT%TZ) kind-create $(( $(date +%s) - t0 ))s" >> "${CLUSTER_STATE}/timings.log"
else
  log "kind cluster ${CLUSTER_NAME} is up: kept"
fi
kind get kubeconfig --name "${CLUSTER_NAME}" > "$KC"
mapfile -t nodes < <(cluster_nodes)
step "pod network (${nodes[*]})"
for _ in $(seq 1 60); do
  missing=0
  for n in "${nodes[@]}"; do
    [[ -n "$("$KUBECTL" --kubeconfig "$KC" get node "$n" -o jsonpath='{.spec.podCIDR}' 2>/dev/null)" ]] || missing=1
  done
  [[ $missing == 0 ]] && break; sleep 1
done
"$here/simple-cni.sh" "$KC" "${nodes[@]}"
step "kube-router: routes + NetworkPolicy"
"$KUBECTL" --kubeconfig "$KC" apply -f "$here/cni/kube-router.yaml" >/dev/null
step "waiting for nodes Ready"
"$KUBECTL" --kubeconfig "$KC" wait --for=condition=Ready node --all --timeout=180s
step "add-ons (metrics-server, local-path default StorageClass)"
# only the add-ons whose images are baked in (addons/ may hold others)
for f in metrics-server.yaml local-path.yaml; do
  "$KUBECTL" --kubeconfig "$KC" apply -f "$here/addons/$f" >/dev/null
done
step "waiting for kube-system pods"
"$KUBECTL" --kubeconfig "$KC" -n kube-system wait --for=condition=Ready pod --all --timeout=180s
"$KUBECTL" --kubeconfig "$KC" -n local-path-storage rollout status deploy/local-path-provisioner --timeout=120s
"$KUBECTL" --kubeconfig "$KC" -n kube-system rollout status ds/kube-router --timeout=120s
"$KUBECTL" --kubeconfig "$KC" -n kube-system rollout status deploy/coredns --timeout=120s
"$KUBECTL" --kubeconfig "$KC" -n kube-system rollout status deploy/metrics-server --timeout=180s
# the aggregated metrics API needs a first scrape before `kubectl top` works
for _ in $(seq 1 60); do
  "$KUBECTL" --kubeconfig "$KC" top nodes >/dev/null 2>&1 && break; sleep 2
done
"$KUBECTL" --kubeconfig "$KC" get nodes -o wide
echo "$(date -u +%FT%TZ) up-total $(( $(date +%s) - T0 ))s" >> "${CLUSTER_STATE}/timings.log"
log "cluster up in $(( $(date +%s) - T0 ))s. export KUBECONFIG=${CLUSTER_STATE}/kubeconfig"
