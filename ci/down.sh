#!/usr/bin/env bash
# `make down`: removes the local cluster `make up` made, and its kubeconfig
# context. Caches (built binaries and images) stay, so the next `make up` is fast.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
source "$repo/ci/lib.sh"

usage() {
  cat <<USAGE
Usage: ci/down.sh [--stop-engine]

Deletes the offline cluster's node containers (ci/cluster/down.sh) or the
kind cluster "saga-stack", and the saga-stack context from ~/.kube/config.
  --stop-engine   also stop the Docker engine that make up started by hand
USAGE
}
stop_engine=()
for arg in "$@"; do
  case "$arg" in
    --stop-engine) stop_engine=(--stop-engine) ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; echo "down: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

if command -v kind >/dev/null && kind get clusters 2>/dev/null | grep -qx saga-stack; then
  step "deleting kind cluster saga-stack"
  kind delete cluster --name saga-stack
fi
step "deleting the offline cluster's nodes"
"$repo/ci/cluster/down.sh" "${stop_engine[@]}"
if command -v kubectl >/dev/null && [[ -f "$HOME/.kube/config" ]]; then
  for entry in context cluster user; do
    kubectl config "delete-$entry" saga-stack >/dev/null 2>&1 || true
  done
fi
step "down (caches kept in ${SAGA_STACK_CACHE:-$HOME/.cache/saga-stack})"
