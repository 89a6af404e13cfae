# shellcheck shell=bash
# What the offline cluster scripts under ci/cluster/ share beyond ci/lib.sh
# (log, die, need, ...): where things live, versions, docker flags.
# Sourced, never run. Nothing here writes into the repository.

set -euo pipefail

# shellcheck disable=SC2034  # used by the scripts that source this file
CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib.sh
source "${CLUSTER_DIR}/../lib.sh"

# Pinned versions live in ci/versions.sh (K8S_VERSION, DEBIAN_SUITE, ...).
# shellcheck source=../versions.sh
source "${CLUSTER_DIR}/../versions.sh"
: "${CLUSTER_NAME:=saga-stack}"
: "${NODE_IMAGE_TAG:=saga-stack/node:${K8S_VERSION}}"
: "${ROOTFS_IMAGE_TAG:=saga-stack/debian:bookworm}"

# Caches live outside the repo, keyed by version.
: "${SAGA_STACK_CACHE:=${HOME}/.cache/saga-stack}"
# Run-time state (dockerd log, pid, data) lives here.
: "${CLUSTER_STATE:=/var/tmp/saga-stack-cluster}"

# kind's extraPortMappings model: the control-plane node publishes the ingress
# controller's NodePorts (ci/ingress/) on the host's loopback, fixed when the node is
# created (ci/cluster/kind-config.sh, both modes).
: "${INGRESS_HTTP_PORT:=8080}"
: "${INGRESS_HTTPS_PORT:=8443}"
# shellcheck disable=SC2034  # read by ci/ingress/up.sh
INGRESS_NODE_PORT_HTTP=30080 INGRESS_NODE_PORT_HTTPS=30443

# docker client here may be newer than Debian's 20.10 engine: pin the API
# version to what the engine reports, unless the caller already did.
docker_env() {
  if [[ -z "${DOCKER_API_VERSION:-}" ]] && [[ -S /var/run/docker.sock ]]; then
    local v
    v="$(curl -fsS --unix-socket /var/run/docker.sock http://localhost/version 2>/dev/null \
         | python3 -c 'import json,sys;print(json.load(sys.stdin)["ApiVersion"])' 2>/dev/null || true)"
    [[ -n "$v" ]] && export DOCKER_API_VERSION="$v"
  fi
  return 0
}

# Time a command and append "name seconds" to the timings file.
timed() {
  local name="$1"; shift
  local t0 t1
  t0=$(date +%s)
  "$@"
  t1=$(date +%s)
  mkdir -p "${CLUSTER_STATE}"
  printf '%s %s %ss\n' "$(date -u +%FT%TZ)" "$name" "$((t1 - t0))" >> "${CLUSTER_STATE}/timings.log"
  log "${name}: $((t1 - t0))s"
}

# What replaces --privileged on an engine that refuses it (its VM lacks CAP_SYS_RESOURCE;
# measured, see docs/offline-cluster.md). privileged-shim/docker puts these in the place of
# kind's --privileged; NODE_RUN_FLAGS starts a node container the way kind does.
# shellcheck disable=SC2034
PRIVILEGED_FLAGS=(
  --cap-add=ALL --cap-drop=SYS_RESOURCE
  --security-opt systempaths=unconfined --device-cgroup-rule='a *:* rwm'
)
# shellcheck disable=SC2034
NODE_RUN_FLAGS=(
  "${PRIVILEGED_FLAGS[@]}"
  --security-opt seccomp=unconfined --security-opt apparmor=unconfined
  --cgroupns=private
  --tmpfs /run --tmpfs /run/lock --tmpfs /tmp
  -v /lib/modules:/lib/modules:ro
  --init=false
)

# The pod network: kind's podSubnet (kind_config) and simple-cni.sh's masquerade rule.
: "${POD_SUBNET:=10.244.0.0/16}"

# kind_bin: the kind that ci/cluster/build-addons.sh built (KIND_VERSION); dies if missing.
kind_bin() {
  local bin
  bin="$("${CLUSTER_DIR}/build-addons.sh" --path kind)"
  [[ -x "$bin" ]] || die "no kind at ${bin} (ci/cluster/build-addons.sh kind)"
  echo "$bin"
}

# cluster_nodes [ROLE]: the names of this cluster's node containers (kind's labels),
# sorted; ROLE is control-plane or worker. Container name = host name = node name.
cluster_nodes() {
  local filter=(--filter "label=io.x-k8s.kind.cluster=${CLUSTER_NAME}")
  [[ -n "${1:-}" ]] && filter+=(--filter "label=io.x-k8s.kind.role=$1")
  docker ps -a "${filter[@]}" --format '{{.Names}}' | sort
}

# --- add-ons (ci/monitoring/, ci/ingress/, ci/logging/, ci/tracing/) -----------
# addon_args ARG...: the options of every add-on script, parsed into ADDON_IMAGES (1: build
# our images and load them), ADDON_UPSTREAM (1: run the upstream images instead: a cluster
# that pulls) and ADDON_TIMEOUT (seconds per wait); then sets K (addon_kubectl). The
# caller defines usage().
# shellcheck disable=SC2034  # ADDON_IMAGES and ADDON_TIMEOUT are read by the caller
addon_args() {
  local kubeconfig="${KUBECONFIG:-${CLUSTER_STATE}/kubeconfig}"
  ADDON_IMAGES=1 ADDON_UPSTREAM=0 ADDON_TIMEOUT=300
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --kubeconfig) kubeconfig="${2:?--kubeconfig needs a file}"; shift ;;
      --upstream-images) ADDON_UPSTREAM=1; ADDON_IMAGES=0 ;;
      --no-images) ADDON_IMAGES=0 ;;
      --timeout) ADDON_TIMEOUT="${2:?--timeout needs seconds}"; shift ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
  done
  addon_kubectl "$kubeconfig"
}
# The usage lines of those options, for the scripts' usage().
# shellcheck disable=SC2034  # read by the add-on scripts
ADDON_OPTIONS_HELP="  --kubeconfig FILE   default: \$KUBECONFIG, else ${CLUSTER_STATE}/kubeconfig
  --upstream-images   run the upstream images named above (a cluster that pulls images)
                      instead of building ours (implies --no-images)
  --no-images         do not build or load the images (they are already in the nodes)
  --timeout SECONDS   for each wait (default 300)"

# addon_image_refs DIR OURS=UPSTREAM...: dies unless DIR/manifests/ name each of our image
# references (ci/versions.sh is where the tags live); with --upstream-images, sets
# IMAGE_SUBST (read by apply_manifests) to put the upstream ones in their place.
addon_image_refs() {
  local dir="$1" pair ours upstream
  shift
  IMAGE_SUBST=""
  for pair in "$@"; do
    ours="${pair%%=*}" upstream="${pair#*=}"
    grep -qF "image: ${ours}" "${dir}"/manifests/*.yaml ||
      die "${dir}/manifests/ do not use ${ours} (ci/versions.sh): update the image tags there"
    [[ $ADDON_UPSTREAM == 1 ]] && IMAGE_SUBST+="s|image: ${ours}|image: ${upstream}|;"
  done
  return 0
}

# addon_kubectl KUBECONFIG: sets K, the kubectl command line of the add-on scripts: the
# kubectl built with the cluster (else PATH's), on KUBECONFIG.
addon_kubectl() {
  local bin
  [[ -s "$1" ]] || die "no kubeconfig at $1 (is the cluster up? make up)"
  bin="${SAGA_STACK_CACHE}/k8s-build/${K8S_VERSION}/bin/kubectl"
  [[ -x "$bin" ]] || bin="$(command -v kubectl || true)"
  [[ -n "$bin" ]] || die "no kubectl (ci/cluster/build-k8s.sh kubectl, or one on PATH)"
  # shellcheck disable=SC2034  # read by the caller and apply_manifests
  K=("$bin" --kubeconfig "$1")
}

# addon_images NAME...: the images of ci/images/build.sh named NAME built (skipped when
# up to date) and saved, then imported into the worker nodes (the control-plane node is
# tainted: nothing of ours runs there).
addon_images() {
  local names refs ref node worker_nodes
  names="$(IFS=,; echo "$*")"
  need docker; docker_env
  mapfile -t refs < <("${CLUSTER_DIR}/../images/build.sh" --list --only "$names")
  log "images: ${refs[*]}"
  "${CLUSTER_DIR}/../images/build.sh" --only "$names" --save || die "building ${names} failed (see above)"
  local tars=()
  for ref in "${refs[@]}"; do tars+=("${SAGA_STACK_CACHE}/images/$(tr ':' '-' <<<"${ref##*/}").tar"); done
  mapfile -t worker_nodes < <(cluster_nodes worker)
  [[ ${#worker_nodes[@]} -gt 0 ]] || die "no worker nodes of kind cluster ${CLUSTER_NAME}: is the offline cluster up?"
  for node in "${worker_nodes[@]}"; do
    "${CLUSTER_DIR}/load-images.sh" --refresh "$node" "${tars[@]}" || die "loading ${names} into $node failed"
  done
}

# addon_headless NAMESPACE SERVICE: a Service of an earlier apply that still has a ClusterIP
# is deleted, so that the manifests' headless one can be applied (clusterIP cannot change in
# place); ADDON_WAS_CLUSTER_IP says whether it was (its clients' open connections still go
# to the old address).
# shellcheck disable=SC2034  # ADDON_WAS_CLUSTER_IP is read by the caller
addon_headless() {
  local ip
  ADDON_WAS_CLUSTER_IP=0
  ip="$("${K[@]}" -n "$1" get service "$2" -o jsonpath='{.spec.clusterIP}' 2>/dev/null || true)"
  if [[ -n "$ip" && "$ip" != None ]]; then
    log "svc/$2 in $1 has ClusterIP ${ip}: deleted, to be applied headless"
    "${K[@]}" -n "$1" delete service "$2" --wait >/dev/null || die "deleting svc/$2 in $1 failed"
    ADDON_WAS_CLUSTER_IP=1
  fi
  return 0
}

# Applied with "${K[@]}", the caller's kubectl and kubeconfig. Each Deployment's pod
# template carries the sha256 of the ConfigMaps of its file (the annotation
# saga-stack.io/config-sha256: ""), so `apply` rolls its pods exactly when their
# configuration changed.
_render_manifest() { # _render_manifest FILE
  local sha
  sha="$(awk 'BEGIN { RS = "\n---\n" } /(^|\n)kind: ConfigMap(\n|$)/' "$1" | sha256sum | cut -c1-16)"
  sed "s|saga-stack.io/config-sha256: \"\"|saga-stack.io/config-sha256: \"${sha}\"|" "$1"
}
_manifest_deployments() { # _manifest_deployments FILE: names of the Deployments in FILE
  awk 'BEGIN { RS = "\n---\n" } /(^|\n)kind: Deployment(\n|$)/ {
         n = split($0, l, "\n"); for (i = 1; i <= n; i++) if (l[i] ~ /^  name: /) { sub(/^  name: /, "", l[i]); print l[i]; break } }' "$1"
}
# apply_manifests NAMESPACE TIMEOUT FILE...: one file at a time, printing only what
# changed, each Deployment of a file Ready before the next file starts. A FILE's images
# are replaced on the way when IMAGE_SUBST is set (a sed expression).
apply_manifests() {
  local ns="$1" timeout="$2" f out d
  shift 2
  for f in "$@"; do
    out="$(_render_manifest "$f" | sed "${IMAGE_SUBST:-}" | "${K[@]}" apply -f - 2>&1)" ||
      { printf '%s\n' "$out" >&2; die "kubectl apply of ${f} failed"; }
    grep -v ' unchanged$' <<<"$out" | sed 's/^/  /' >&2 || true
    for d in $(_manifest_deployments "$f"); do
      "${K[@]}" -n "$ns" rollout status "deploy/$d" --timeout="${timeout}s" >/dev/null ||
        { "${K[@]}" -n "$ns" get pods -o wide >&2; die "deploy/$d in ${ns} is not Ready"; }
      log "  deploy/$d Ready"
    done
  done
}
