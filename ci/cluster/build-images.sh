#!/usr/bin/env bash
# Build the images kubeadm asks for (control plane, kube-proxy, etcd, CoreDNS, pause)
# from the binaries build-k8s.sh made, and save them as docker-save tars.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--force]

Asks the cached kubeadm for its image list (kubeadm config images list
--kubernetes-version ${K8S_VERSION}) and builds each image under exactly that
name, FROM scratch with the binary (kube-proxy: on a small Debian
"essential" rootfs with iptables/conntrack/ipset, made with mmdebstrap). Saves each as a docker-save tar under
  \${SAGA_STACK_CACHE}/images/${K8S_VERSION}/
Skips images whose tar already exists unless --force.
USAGE
}
force=0
for a in "$@"; do case "$a" in -h|--help) usage; exit 0 ;; --force) force=1 ;; *) die "unknown arg $a" ;; esac; done

need docker; docker_env
export DOCKER_BUILDKIT=0
BIN="${SAGA_STACK_CACHE}/k8s-build/${K8S_VERSION}/bin"
OUT="${SAGA_STACK_CACHE}/images/${K8S_VERSION}"
mkdir -p "${OUT}"
[[ -x "${BIN}/kubeadm" ]] || die "no kubeadm in ${BIN}: run build-k8s.sh kubeadm"

mapfile -t IMAGES < <("${BIN}/kubeadm" config images list --kubernetes-version "${K8S_VERSION}" 2>/dev/null)
[[ ${#IMAGES[@]} -gt 0 ]] || die "kubeadm printed no images"
printf '%s\n' "${IMAGES[@]}" > "${OUT}/kubeadm-images.txt"
log "kubeadm wants: ${IMAGES[*]}"

# kube-proxy needs iptables/ip6tables, conntrack, ipset: a small Debian "essential" rootfs.
# kube-router (same base) also wants iproute2 (/etc/iproute2/rt_tables, ip).
KP_PKGS=(iptables conntrack ipset kmod iproute2)
kp_key="$(printf '%s\n' "${DEBIAN_SUITE}" essential "${KP_PKGS[@]}" | sha256sum | cut -c1-12)"
kp_tag="saga-stack/kube-proxy-base:${DEBIAN_SUITE}-${kp_key}"
kp_base() {
  docker image inspect "${kp_tag}" >/dev/null 2>&1 && return 0
  local tarf="${SAGA_STACK_CACHE}/rootfs/${DEBIAN_SUITE}-kube-proxy-${kp_key}.tar"
  if [[ ! -s "${tarf}" ]]; then
    need mmdebstrap "apt-get install -y mmdebstrap"
    log "mmdebstrap ${DEBIAN_SUITE} essential + ${KP_PKGS[*]} -> ${tarf}"
    debian_rootfs_tar essential "${tarf}" "${CLUSTER_STATE}/mmdebstrap-kube-proxy.log" "${KP_PKGS[@]}"
  fi
  docker import "${tarf}" "${kp_tag}" >/dev/null
}

build_one() { # image binary base entrypoint-json
  local image="$1" binary="$2" base="$3" ep="$4"
  local tarf
  tarf="${OUT}/$(echo "${image}" | tr "/:" "__").tar"
  if [[ $force == 0 && -s "${tarf}" ]]; then log "cached: ${image}"; return 0; fi
  [[ -x "${BIN}/${binary}" ]] || { log "SKIP ${image}: no ${BIN}/${binary} (build-k8s.sh ${binary})"; return 0; }
  local ctx; ctx="$(mktemp -d)"
  cp "${BIN}/${binary}" "${ctx}/${binary}"
  {
    echo "FROM ${base}"
    echo "COPY ${binary} /usr/local/bin/${binary}"
    echo "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    [[ -n "${ep}" ]] && echo "ENTRYPOINT ${ep}"
  } > "${ctx}/Dockerfile"
  local t0 old_id; t0=$(date +%s)
  old_id="$(docker image inspect -f '{{.Id}}' "${image}" 2>/dev/null || true)"
  docker build -q -t "${image}" "${ctx}" >/dev/null 2>"${ctx}/err" || { cat "${ctx}/err" >&2; die "build of ${image} failed"; }
  # drop the image this tag pointed at before, unless something still uses it
  if [[ -n "${old_id}" && "${old_id}" != "$(docker image inspect -f '{{.Id}}' "${image}")" ]]; then
    docker rmi "${old_id}" >/dev/null 2>&1 || true
  fi
  docker save -o "${tarf}.tmp" "${image}" && mv "${tarf}.tmp" "${tarf}"
  rm -rf "${ctx}"
  log "built ${image} in $(( $(date +%s) - t0 ))s, tar $(( $(stat -c %s "${tarf}") / 1048576 )) MiB"
}

for img in "${IMAGES[@]}"; do
  case "${img}" in
    */kube-apiserver:*)          build_one "$img" kube-apiserver scratch "" ;;
    */kube-controller-manager:*) build_one "$img" kube-controller-manager scratch "" ;;
    */kube-scheduler:*)          build_one "$img" kube-scheduler scratch "" ;;
    */kube-proxy:*)
      kp_base
      build_one "$img" kube-proxy "${kp_tag}" "" ;;
    */etcd:*)                    build_one "$img" etcd scratch "" ;;
    */coredns:*)                 build_one "$img" coredns scratch '["/usr/local/bin/coredns"]' ;;
    */pause:*)                   build_one "$img" pause scratch '["/usr/local/bin/pause"]' ;;
    *) warn "no recipe for ${img}" ;;
  esac
done
# ---- add-on images (only when build-addons.sh has built the binary) -----------
ADDONS="${SAGA_STACK_CACHE}/addons"
addon_image() { # image module@version binary entrypoint-json
  local image="$1" modver="$2" binary="$3" ep="$4"
  local src="${ADDONS}/${modver//\//_}/bin/${binary}"
  [[ -x "$src" ]] || { log "SKIP ${image}: build-addons.sh ${binary} first"; return 0; }
  mkdir -p "${BIN}/addons"; cp -u "$src" "${BIN}/addons/${binary}"
  BIN="${BIN}/addons" build_one "${image}" "${binary}" scratch "${ep}"
}
addon_image saga-stack/metrics-server:v0.9.0 sigs.k8s.io/metrics-server@v0.9.0 metrics-server '["/usr/local/bin/metrics-server"]'
addon_image saga-stack/local-path-provisioner:v0.0.30 github.com/rancher/local-path-provisioner@v0.0.30 local-path-provisioner '["/usr/local/bin/local-path-provisioner"]'
# kube-router needs iptables/ipset like kube-proxy: same small rootfs
if [[ -x "${ADDONS}/github.com_cloudnativelabs_kube-router_v2@v2.1.0/bin/kube-router" ]]; then
  kp_base
  mkdir -p "${BIN}/addons"; cp -u "${ADDONS}/github.com_cloudnativelabs_kube-router_v2@v2.1.0/bin/kube-router" "${BIN}/addons/"
  BIN="${BIN}/addons" build_one saga-stack/kube-router:v2.1.0 kube-router "${kp_tag}" '["/usr/local/bin/kube-router"]'
fi

# busybox from Debian's busybox-static .deb: helper image for local-path-provisioner and tests
bb_tar="${OUT}/saga-stack_busybox_${DEBIAN_SUITE}.tar"
if [[ $force == 1 || ! -s "${bb_tar}" ]]; then
  d="$(mktemp -d)"
  (cd "$d" && apt-get download -q busybox-static >/dev/null 2>&1) || die "apt-get download busybox-static failed (apt-get update?)"
  dpkg-deb -x "$d"/busybox-static_*.deb "$d/x"
  mkdir -p "$d/ctx/bin" "$d/ctx/tmp"; cp "$d/x/bin/busybox" "$d/ctx/bin/busybox"
  chmod 1777 "$d/ctx/tmp"
  printf 'FROM scratch\nCOPY bin /bin\nCOPY tmp /tmp\nRUN ["/bin/busybox","--install","-s","/bin"]\nENV PATH=/bin\nCMD ["sh"]\n' > "$d/ctx/Dockerfile"
  docker build -q -t "saga-stack/busybox:${DEBIAN_SUITE}" "$d/ctx" >/dev/null 2>&1 || die "busybox image build failed"
  docker save -o "${bb_tar}" "saga-stack/busybox:${DEBIAN_SUITE}"
  rm -rf "$d"
  log "built saga-stack/busybox:${DEBIAN_SUITE}"
fi
ls -la "${OUT}" >&2
