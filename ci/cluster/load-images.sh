#!/usr/bin/env bash
# Import the cached image tars into a node's containerd (k8s.io namespace).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--refresh] NODE [TAR...]

Imports every tar under \${SAGA_STACK_CACHE}/images/${K8S_VERSION}/ (or the given
tars) into NODE's containerd, namespace k8s.io, skipping images already there.
--refresh  compare image IDs, not names: re-import a tag whose content changed
USAGE
}
refresh=0
if [[ "${1:-}" == --refresh ]]; then refresh=1; shift; fi
[[ $# -ge 1 && "$1" != -h && "$1" != --help ]] || { usage; [[ $# -ge 1 ]]; exit; }
need docker; docker_env
node="$1"; shift
tars=("$@")
[[ ${#tars[@]} -gt 0 ]] || tars=("${SAGA_STACK_CACHE}/images/${K8S_VERSION}/"*.tar)
have="$(docker exec "$node" ctr -n k8s.io images ls -q 2>/dev/null || true)"
markers=/var/lib/saga-stack/images
for t in "${tars[@]}"; do
  [[ -s "$t" ]] || { log "skip $t (missing)"; continue; }
  # the image name and its config digest (the image ID) are in the tar's manifest
  read -r name id < <(tar -xOf "$t" manifest.json | python3 -c \
    'import json,sys; m=json.load(sys.stdin)[0]; print(m["RepoTags"][0], m["Config"].split("/")[-1].split(".")[0])')
  marker="$markers/$(tr '/:' '__' <<<"$name")"
  if [[ $refresh == 1 ]]; then
    # a tag that stays while its content changes (the app's appVersion): compare IDs
    if [[ "$(docker exec "$node" cat "$marker" 2>/dev/null)" == "$id" ]]; then
      log "$node: has $name (${id:0:12})"; continue
    fi
  elif grep -qE "(^|/)${name//./\\.}\$" <<<"$have"; then
    # containerd stores short names fully qualified: match the name as a path suffix
    log "$node: has $name"; continue
  fi
  t0=$(date +%s)
  docker exec -i "$node" ctr -n k8s.io images import --all-platforms - < "$t" >/dev/null \
    || die "import of $name into $node failed"
  docker exec "$node" sh -c "mkdir -p $markers && echo $id > $marker"
  log "$node: imported $name (${id:0:12}, $(( $(date +%s) - t0 ))s)"
done
