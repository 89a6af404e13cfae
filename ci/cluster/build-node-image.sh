#!/usr/bin/env bash
# Build the kind-style node base image (Debian rootfs + systemd + containerd) without any registry.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--force]

1. mmdebstrap a ${DEBIAN_SUITE} rootfs with systemd, containerd, runc, CNI plugins,
   iptables, conntrack, ... (cached as a tar under \${SAGA_STACK_CACHE}/rootfs/,
   keyed by suite + package list). apt sources are taken from this machine's /etc/apt.
2. docker import it, then docker build the node image ${NODE_IMAGE_TAG}
   from ci/cluster/node/ (entrypoint, containerd config, kubelet unit).
   If k8s binaries exist in the cache they are added too (kubeadm, kubelet, kubectl).

3. Bakes every image tar under \${SAGA_STACK_CACHE}/images/${K8S_VERSION}/ (build-images.sh)
   into the image's containerd store, as kind does: new nodes start with them.
   The image is labelled with a key of the baked tars and rebuilt when they change.

--force        rebuild the image even if the tag exists (the rootfs tar stays cached)
--rootfs-only  stop after step 1 + import (build-images.sh needs the rootfs for kube-proxy)
Env: PAUSE_IMAGE (default: the pause image 'kubeadm config images list' prints), DOCKER_API_VERSION.
USAGE
}
force=0; rootfs_only=0
for a in "$@"; do case "$a" in -h|--help) usage; exit 0 ;; --force) force=1 ;; --rootfs-only) rootfs_only=1 ;; *) die "unknown arg $a" ;; esac; done

need docker; need mmdebstrap "apt-get install -y mmdebstrap"
docker_env
export DOCKER_BUILDKIT=0

PKGS=(systemd systemd-sysv dbus containerd runc containernetworking-plugins
      iptables nftables ebtables conntrack iproute2 ethtool kmod procps util-linux mount
      libseccomp2 pigz ca-certificates bash socat ipset curl findutils less)


key="$(printf '%s\n' "${DEBIAN_SUITE}" "${PKGS[@]}" | sha256sum | cut -c1-12)"
ROOTFS="${SAGA_STACK_CACHE}/rootfs/${DEBIAN_SUITE}-node-${key}.tar"
ROOTFS_TAG="saga-stack/node-rootfs:${DEBIAN_SUITE}-${key}"

if [[ ! -s "${ROOTFS}" ]]; then
  log "mmdebstrap ${DEBIAN_SUITE} rootfs (${#PKGS[@]} packages) -> ${ROOTFS} (log: ${CLUSTER_STATE}/mmdebstrap-node.log)"
  t0=$(date +%s)
  debian_rootfs_tar minbase "${ROOTFS}" "${CLUSTER_STATE}/mmdebstrap-node.log" "${PKGS[@]}"
  echo "$(date -u +%FT%TZ) mmdebstrap-node-rootfs $(( $(date +%s) - t0 ))s $(( $(stat -c %s "${ROOTFS}") / 1048576 ))MiB" >> "${CLUSTER_STATE}/timings.log"
  log "rootfs done in $(( $(date +%s) - t0 ))s"
fi

if ! docker image inspect "${ROOTFS_TAG}" >/dev/null 2>&1; then
  log "docker import ${ROOTFS_TAG}"
  docker import "${ROOTFS}" "${ROOTFS_TAG}" >/dev/null
fi

[[ $rootfs_only == 1 ]] && { log "rootfs image ${ROOTFS_TAG} ready"; exit 0; }

IMG_DIR="${SAGA_STACK_CACHE}/images/${K8S_VERSION}"
BIN="${SAGA_STACK_CACHE}/k8s-build/${K8S_VERSION}/bin"
# what goes into the image: our node files, the binaries, the baked image tars
read -ra extra_tars <<<"${EXTRA_IMAGE_TARS:-}"
bake_key="$( { cat "${CLUSTER_DIR}/node/"* "${CLUSTER_DIR}/addons/local-path.yaml"; ls -l --time-style=+%s "${BIN}"/kube{adm,let,ctl} "${IMG_DIR}"/*.tar "${extra_tars[@]}" 2>/dev/null; } | sha256sum | cut -c1-16)"
if [[ $force == 0 ]] && [[ "$(docker image inspect -f '{{index .Config.Labels "saga-stack.node-key"}}' "${NODE_IMAGE_TAG}" 2>/dev/null)" == "${bake_key}" ]]; then
  log "${NODE_IMAGE_TAG} is up to date (key ${bake_key}; --force to rebuild)"; exit 0
fi

# the sandbox image must be exactly the pause image kubeadm lists
if [[ -z "${PAUSE_IMAGE:-}" ]]; then
  [[ -x "${BIN}/kubeadm" ]] || die "no kubeadm in ${BIN}: run build-k8s.sh kubeadm first"
  PAUSE_IMAGE="$("${BIN}/kubeadm" config images list --kubernetes-version "${K8S_VERSION}" 2>/dev/null | grep '/pause:' | head -1)"
  [[ -n "${PAUSE_IMAGE}" ]] || die "kubeadm did not list a pause image"
fi
ctx="$(mktemp -d)"; trap 'rm -rf "$ctx"' EXIT
cp "${CLUSTER_DIR}/node/"* "$ctx/"
# kind compatibility: kind reads /kind/version and applies /kind/manifests/default-storage.yaml,
# so this same image also works with `kind create cluster --image` (see docs/offline-cluster.md)
mkdir -p "$ctx/kind/manifests"
echo "${K8S_VERSION}" > "$ctx/kind/version"
cp "${CLUSTER_DIR}/addons/local-path.yaml" "$ctx/kind/manifests/default-storage.yaml"
sed -i "s#@PAUSE_IMAGE@#${PAUSE_IMAGE}#" "$ctx/containerd-config.toml"
mkdir -p "$ctx/bin"
for b in kubeadm kubelet kubectl; do
  [[ -x "${BIN}/$b" ]] && cp "${BIN}/$b" "$ctx/bin/" && log "adding $b"
done
cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM ${ROOTFS_TAG}
COPY entrypoint.sh /usr/local/bin/entrypoint
COPY containerd-config.toml /etc/containerd/config.toml
COPY kubelet.service kubelet.slice /etc/systemd/system/
COPY 10-kubeadm.conf /etc/systemd/system/kubelet.service.d/10-kubeadm.conf
COPY bin/ /usr/bin/
COPY kind/ /kind/
RUN chmod +x /usr/local/bin/entrypoint \\
 && systemctl enable containerd.service kubelet.service \\
 && systemctl mask getty.target systemd-udevd.service systemd-udevd-kernel.socket systemd-udevd-control.socket \\
      systemd-modules-load.service sys-kernel-debug.mount sys-kernel-tracing.mount systemd-logind.service \\
      apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \\
 && systemctl set-default multi-user.target \\
 && mkdir -p /etc/cni/net.d /var/lib/kubelet /etc/kubernetes/manifests \\
 && echo "${K8S_VERSION}" > /etc/saga-node-k8s-version
ENV container=docker
LABEL saga-stack.node-key=pending
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint"]
DOCKERFILE
old_id="$(docker image inspect -f '{{.Id}}' "${NODE_IMAGE_TAG}" 2>/dev/null || true)"
log "docker build ${NODE_IMAGE_TAG}"
t0=$(date +%s)
docker build -q -t "${NODE_IMAGE_TAG}" "$ctx" >/dev/null 2>"$ctx/build.err" || die "docker build failed"
log "built ${NODE_IMAGE_TAG} in $(( $(date +%s) - t0 ))s, size $(docker image inspect -f '{{.Size}}' "${NODE_IMAGE_TAG}" | awk '{printf "%d MiB", $1/1048576}')"

# Bake the cached images into the node image's containerd store (as kind does), so a
# new node has them at once: Docker copies the image's /var into each node's /var volume.
if [[ ${NO_BAKE:-0} != 1 ]] && compgen -G "${IMG_DIR}/*.tar" >/dev/null; then
  bake="saga-bake-$$"
  log "baking images from ${IMG_DIR} into ${NODE_IMAGE_TAG}"
  t0=$(date +%s)
  # no /var volume here: what containerd writes to /var must land in the container layer
  docker run -d --name "$bake" "${NODE_RUN_FLAGS[@]}" "${NODE_IMAGE_TAG}" >/dev/null
  trap 'docker rm -f "$bake" >/dev/null 2>&1 || true; rm -rf "$ctx"' EXIT
  for _ in $(seq 1 60); do
    docker exec "$bake" ctr version >/dev/null 2>&1 && break; sleep 1
  done
  docker exec "$bake" ctr version >/dev/null 2>&1 || die "containerd did not start in the bake container"
  for t in "${IMG_DIR}"/*.tar "${extra_tars[@]}"; do
    docker exec -i "$bake" ctr -n k8s.io images import --all-platforms - < "$t" >/dev/null || die "import of $t failed"
  done
  docker exec "$bake" sh -c 'systemctl stop containerd; rm -rf /var/log/journal/* /etc/machine-id; : > /etc/machine-id'
  docker stop -t 30 "$bake" >/dev/null
  docker commit --change "LABEL saga-stack.node-key=${bake_key}" "$bake" "${NODE_IMAGE_TAG}" >/dev/null
  docker rm -f "$bake" >/dev/null
  log "baked in $(( $(date +%s) - t0 ))s, size $(docker image inspect -f '{{.Size}}' "${NODE_IMAGE_TAG}" | awk '{printf "%d MiB", $1/1048576}')"
else
  printf 'FROM %s\nLABEL saga-stack.node-key=%s\n' "${NODE_IMAGE_TAG}" "${bake_key}" \
    | docker build -q -t "${NODE_IMAGE_TAG}" - >/dev/null 2>&1 || die "cannot label ${NODE_IMAGE_TAG}"
  log "not baking images (NO_BAKE=1, or no tars: run build-images.sh, then this again)"
fi
# drop the image this one replaced, if nothing uses it any more (only ours: same tag)
new_id="$(docker image inspect -f '{{.Id}}' "${NODE_IMAGE_TAG}")"
if [[ -n "${old_id}" && "${old_id}" != "${new_id}" ]]; then
  if docker rmi "${old_id}" >/dev/null 2>&1; then log "removed previous image ${old_id:7:12}"; fi
fi
