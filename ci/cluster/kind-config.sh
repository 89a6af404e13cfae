#!/usr/bin/env bash
# Prints the kind cluster configuration of both modes: 1 control plane + N workers, the
# ingress NodePorts published on the host's loopback; offline, no default CNI and nothing
# pulled. `kind create cluster --config <(kind-config.sh ...)`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PROG=kind-config

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--offline] [--workers N]

  --offline    for our node image (ci/cluster/build-node-image.sh): kind's default CNI
               (kindnet) has no image there, so it is disabled (simple-cni.sh and
               kube-router take its place), and kubeadm is told never to pull
  --workers N  worker nodes (default 3: the HA profile spreads a 3-member quorum with
               one member per node)
The control-plane node publishes the ingress controller's NodePorts
${INGRESS_NODE_PORT_HTTP} and ${INGRESS_NODE_PORT_HTTPS} (ci/ingress/) on 127.0.0.1:${INGRESS_HTTP_PORT} and :${INGRESS_HTTPS_PORT}.
USAGE
}
offline=0 workers=3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --offline) offline=1 ;;
    --workers) workers="${2:?--workers needs a number}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done
[[ "$workers" =~ ^[0-9]+$ ]] || die "--workers must be a number, not '$workers'"

cat <<YAML
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  podSubnet: ${POD_SUBNET}
YAML
if [[ $offline == 1 ]]; then
  cat <<'YAML'
  disableDefaultCNI: true
kubeadmConfigPatches:
  - |
    kind: InitConfiguration
    nodeRegistration:
      imagePullPolicy: Never
  - |
    kind: JoinConfiguration
    nodeRegistration:
      imagePullPolicy: Never
  - |
    kind: KubeletConfiguration
    failCgroupV1: false
YAML
fi
cat <<YAML
nodes:
  - role: control-plane
    extraPortMappings:
      - containerPort: ${INGRESS_NODE_PORT_HTTP}
        hostPort: ${INGRESS_HTTP_PORT}
        listenAddress: 127.0.0.1
      - containerPort: ${INGRESS_NODE_PORT_HTTPS}
        hostPort: ${INGRESS_HTTPS_PORT}
        listenAddress: 127.0.0.1
YAML
for _ in $(seq 1 "$workers"); do echo "  - role: worker"; done
