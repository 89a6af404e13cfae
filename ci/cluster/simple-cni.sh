#!/usr/bin/env bash
# Pod networking for the offline cluster: bridge + host-local conflist per node, masquerade
# for traffic leaving the pod network, and initial static routes between nodes.
# kube-router (cni/kube-router.yaml) then owns the routes (BGP; they survive node
# restarts) and enforces NetworkPolicy.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") KUBECONFIG NODE...

For each NODE (node container name == Kubernetes node name): writes
/etc/cni/net.d/10-saga-bridge.conflist (bridge cni0, host-local on the node's
podCIDR, portmap) and adds a route to every other node's podCIDR via that
node's IP. Idempotent: rerun after adding nodes.
USAGE
}
[[ $# -ge 2 ]] || { usage; [[ "${1:-}" == -h || "${1:-}" == --help ]]; exit; }
need docker; docker_env
kc="$1"; shift
KUBECTL="${SAGA_STACK_CACHE}/k8s-build/${K8S_VERSION}/bin/kubectl"
[[ -x "$KUBECTL" ]] || die "no kubectl at $KUBECTL (build-k8s.sh kubectl)"
declare -A CIDR IP
for n in "$@"; do
  CIDR[$n]="$("$KUBECTL" --kubeconfig "$kc" get node "$n" -o jsonpath='{.spec.podCIDR}')" || die "node $n not in the cluster"
  [[ -n "${CIDR[$n]}" ]] || die "node $n has no podCIDR yet"
  IP[$n]="$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$n")"
done
for n in "$@"; do
  gw="$(python3 -c 'import ipaddress,sys;print(next(ipaddress.ip_network(sys.argv[1]).hosts()))' "${CIDR[$n]}")"
  docker exec -i "$n" sh -c 'cat > /etc/cni/net.d/10-saga-bridge.conflist' <<JSON
{
  "cniVersion": "0.4.0",
  "name": "saga-bridge",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
      "hairpinMode": true,
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "${CIDR[$n]}", "gateway": "${gw}" }]],
                "routes": [{ "dst": "0.0.0.0/0" }] }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
JSON
  # Masquerade only traffic that leaves the cluster's pod network: pod-to-pod traffic
  # keeps its source IP, which NetworkPolicy enforcement needs. (The bridge plugin's
  # own ipMasq would SNAT cross-node pod traffic too.)
  docker exec "$n" sh -c "iptables -t nat -C POSTROUTING -s ${CIDR[$n]} ! -d ${POD_SUBNET} -m comment --comment saga-pod-masq -j MASQUERADE 2>/dev/null \
    || iptables -t nat -A POSTROUTING -s ${CIDR[$n]} ! -d ${POD_SUBNET} -m comment --comment saga-pod-masq -j MASQUERADE"
  for o in "$@"; do
    [[ "$o" == "$n" ]] && continue
    docker exec "$n" ip route replace "${CIDR[$o]}" via "${IP[$o]}"
  done
  log "$n: podCIDR ${CIDR[$n]}, routes to $(( $# - 1 )) peer(s)"
done
