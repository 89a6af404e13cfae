#!/usr/bin/env bash
# Run kubeadm init inside a control-plane node container, offline.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${POD_SUBNET:=10.244.0.0/16}"
: "${SERVICE_SUBNET:=10.96.0.0/16}"
usage() {
  cat <<USAGE
Usage: $(basename "$0") NODE [--reset] [--print-config]

Writes /etc/saga-node/kubeadm.yaml into NODE (kubeadm v1beta4 Init +
ClusterConfiguration, KubeletConfiguration with failCgroupV1: false,
imagePullPolicy Never, kind-like kubelet settings) and runs
  kubeadm init --config ... --skip-phases=preflight (plus ignore-preflight-errors=all)
No-op if /etc/kubernetes/admin.conf already exists in NODE (unless --reset).
Output: ${CLUSTER_STATE}/kubeadm-init-NODE.log; kubeconfig copied to
${CLUSTER_STATE}/kubeconfig-NODE (server rewritten to the node IP).
USAGE
}
[[ $# -ge 1 && "$1" != -h && "$1" != --help ]] || { usage; [[ $# -ge 1 ]]; exit; }
need docker; docker_env
node="$1"; shift
reset=0; print=0
for a in "$@"; do case "$a" in --reset) reset=1 ;; --print-config) print=1 ;; *) die "unknown arg $a" ;; esac; done

ip="$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$node")"
[[ -n "$ip" ]] || die "no IP for $node (is it running?)"
docker exec "$node" test -x /usr/bin/kubeadm || die "$node has no /usr/bin/kubeadm (rebuild the node image after build-k8s.sh)"

cfg="$(cat <<YAML
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: ${ip}
  bindPort: 6443
nodeRegistration:
  criSocket: unix:///run/containerd/containerd.sock
  imagePullPolicy: Never
  ignorePreflightErrors: [all]
  kubeletExtraArgs:
    - name: node-ip
      value: "${ip}"
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: ${K8S_VERSION}
clusterName: ${CLUSTER_NAME}
controlPlaneEndpoint: "${node}:6443"
networking:
  podSubnet: ${POD_SUBNET}
  serviceSubnet: ${SERVICE_SUBNET}
apiServer:
  certSANs: [localhost, 127.0.0.1, "${ip}", "${node}"]
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
cgroupRoot: /kubelet
failSwapOn: false
failCgroupV1: false
imageGCHighThresholdPercent: 100
evictionHard:
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
conntrack:
  maxPerCore: 0
YAML
)"
[[ $print == 1 ]] && { echo "$cfg"; exit 0; }

write_kubeconfig() {
  docker exec "$node" cat /etc/kubernetes/admin.conf | sed "s#server: https://.*:6443#server: https://${ip}:6443#" \
    > "${CLUSTER_STATE}/kubeconfig-${node}"
}
if docker exec "$node" test -f /etc/kubernetes/admin.conf; then
  if [[ $reset == 1 ]]; then
    log "$node: kubeadm reset"
    docker exec "$node" kubeadm reset -f >/dev/null 2>&1 || true
  else
    write_kubeconfig; log "$node: already initialised"; exit 0
  fi
fi
docker exec -i "$node" sh -c 'mkdir -p /etc/saga-node && cat > /etc/saga-node/kubeadm.yaml' <<<"$cfg"
logf="${CLUSTER_STATE}/kubeadm-init-${node}.log"
log "$node: kubeadm init (log ${logf})"
t0=$(date +%s)
rc=0
docker exec "$node" kubeadm init --config /etc/saga-node/kubeadm.yaml --skip-phases=preflight \
  --v=2 >"${logf}" 2>&1 || rc=$?
echo "$(date -u +%FT%TZ) kubeadm-init ${node} rc=${rc} $(( $(date +%s) - t0 ))s" >> "${CLUSTER_STATE}/timings.log"
if [[ $rc != 0 ]]; then
  tail -25 "${logf}" >&2
  die "kubeadm init failed (rc ${rc}) after $(( $(date +%s) - t0 ))s; full log ${logf}"
fi
write_kubeconfig
log "$node: kubeadm init OK in $(( $(date +%s) - t0 ))s; KUBECONFIG=${CLUSTER_STATE}/kubeconfig-${node}"
