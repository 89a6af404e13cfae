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

# docker run flags that replace --privileged for a node container (measured, see
# docs/offline-cluster.md). /var is added by the caller (an anonymous volume per node).
# shellcheck disable=SC2034
NODE_RUN_FLAGS=(
  --cap-add=ALL --cap-drop=SYS_RESOURCE
  --security-opt seccomp=unconfined --security-opt apparmor=unconfined
  --security-opt systempaths=unconfined
  --cgroupns=private --device-cgroup-rule='a *:* rwm'
  --tmpfs /run --tmpfs /run/lock --tmpfs /tmp
  -v /lib/modules:/lib/modules:ro
  --init=false
)
