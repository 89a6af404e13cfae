#!/usr/bin/env bash
# Join a worker node container to the cluster whose control plane runs in CP_NODE.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") CP_NODE WORKER_NODE

Creates a bootstrap token on CP_NODE, writes a JoinConfiguration (imagePullPolicy
Never, containerd socket, node-ip) into WORKER_NODE and runs
  kubeadm join --config ... --skip-phases=preflight
No-op if WORKER_NODE already has /etc/kubernetes/kubelet.conf.
The kubelet settings (failCgroupV1: false, ...) come from the cluster's
kubelet-config ConfigMap written by kubeadm-init.sh.
USAGE
}
[[ $# -eq 2 ]] || { usage; [[ "${1:-}" == -h || "${1:-}" == --help ]]; exit; }
need docker; docker_env
cp="$1"; w="$2"
if docker exec "$w" test -f /etc/kubernetes/kubelet.conf; then log "$w: already joined"; exit 0; fi
docker exec "$cp" test -f /etc/kubernetes/admin.conf || die "$cp is not initialised (kubeadm-init.sh $cp)"
wip="$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$w")"
[[ -n "$wip" ]] || die "no IP for $w"
join="$(docker exec "$cp" kubeadm token create --ttl 15m --print-join-command)"
token="$(sed -n 's/.*--token \([^ ]*\).*/\1/p' <<<"$join")"
hash="$(sed -n 's/.*--discovery-token-ca-cert-hash \([^ ]*\).*/\1/p' <<<"$join")"
endpoint="$(awk '{print $3}' <<<"$join")"
[[ -n "$token" && -n "$hash" && -n "$endpoint" ]] || die "cannot parse join command: $join"
docker exec -i "$w" sh -c 'mkdir -p /etc/saga-node && cat > /etc/saga-node/kubeadm-join.yaml' <<YAML
apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    token: ${token}
    apiServerEndpoint: ${endpoint}
    caCertHashes: ["${hash}"]
nodeRegistration:
  criSocket: unix:///run/containerd/containerd.sock
  imagePullPolicy: Never
  ignorePreflightErrors: [all]
  kubeletExtraArgs:
    - name: node-ip
      value: "${wip}"
YAML
logf="${CLUSTER_STATE}/kubeadm-join-${w}.log"
log "$w: kubeadm join ${endpoint} (log ${logf})"
t0=$(date +%s); rc=0
docker exec "$w" kubeadm join --config /etc/saga-node/kubeadm-join.yaml --skip-phases=preflight --v=2 >"$logf" 2>&1 || rc=$?
echo "$(date -u +%FT%TZ) kubeadm-join ${w} rc=${rc} $(( $(date +%s) - t0 ))s" >> "${CLUSTER_STATE}/timings.log"
[[ $rc == 0 ]] || { tail -20 "$logf" >&2; die "kubeadm join of $w failed (rc $rc)"; }
log "$w: joined in $(( $(date +%s) - t0 ))s"
