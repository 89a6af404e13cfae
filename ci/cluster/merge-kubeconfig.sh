#!/usr/bin/env bash
# Merges a cluster's kubeconfig into the user's (default ~/.kube/config) under
# one context name, and makes it current; other clusters' entries stay.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: $(basename "$0") CLUSTER_KUBECONFIG [TARGET] [CONTEXT]

Renames the cluster, user and context of CLUSTER_KUBECONFIG to CONTEXT
(default saga-stack), merges them into TARGET (default ~/.kube/config,
replacing an older saga-stack entry) and sets the current context.
USAGE
}
case "${1:-}" in ""|-h|--help) usage; [[ -n "${1:-}" ]]; exit ;; esac
source_config=$1 target=${2:-$HOME/.kube/config} context=${3:-saga-stack}
repo=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib.sh
source "$repo/ci/lib.sh"
[[ -s "$source_config" ]] || die "$source_config is missing or empty"
python=$repo/.venv/bin/python
[[ -x "$python" ]] || python=python3
mkdir -p "$(dirname "$target")"
"$python" - "$source_config" "$target" "$context" <<'PY'
import os, sys, tempfile
import yaml

source_path, target_path, name = sys.argv[1:4]
source = yaml.safe_load(open(source_path))
target = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": []}
if os.path.exists(target_path) and os.path.getsize(target_path):
    target = yaml.safe_load(open(target_path)) or target
for key in ("clusters", "users", "contexts"):
    target[key] = [e for e in (target.get(key) or []) if e.get("name") != name]
target["clusters"].append({"name": name, "cluster": source["clusters"][0]["cluster"]})
target["users"].append({"name": name, "user": source["users"][0]["user"]})
target["contexts"].append({"name": name, "context": {"cluster": name, "user": name}})
target["current-context"] = name
fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target_path) or ".")
with os.fdopen(fd, "w") as out:
    yaml.safe_dump(target, out, default_flow_style=False)
os.chmod(tmp, 0o600)
os.replace(tmp, target_path)
PY
echo "kubeconfig: context $context in $target"
