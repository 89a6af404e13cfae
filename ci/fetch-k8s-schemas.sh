#!/usr/bin/env bash
# Fetches the schemas the unit tests validate rendered manifests against,
# offline except for the Go module proxy (through `go mod download`, so the
# proxy is whatever `go env GOPROXY` says; no host is named here):
#   - api/openapi-spec/swagger.json (OpenAPI v2, every built-in kind) from the
#     k8s.io/kubernetes module zip, once per K8S_SCHEMA_VERSIONS entry;
#   - CustomResourceDefinition YAML (openAPIV3Schema) of the Gateway API
#     (standard channel) and of the prometheus-operator monitoring kinds.
# Everything lands in ${SAGA_STACK_CACHE:-~/.cache/saga-stack}/k8s-openapi/.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: ci/fetch-k8s-schemas.sh [--force] [--check] [--no-crds] [VERSION...]

Stores, for each Kubernetes VERSION (default: K8S_SCHEMA_VERSIONS from
ci/versions.sh),
  $SAGA_STACK_CACHE/k8s-openapi/<version>/swagger.json
and the pinned CRD schemas (GATEWAY_API_VERSION, PROMETHEUS_OPERATOR_VERSION)
  $SAGA_STACK_CACHE/k8s-openapi/crds/gateway-api/<version>/*.yaml
  $SAGA_STACK_CACHE/k8s-openapi/crds/prometheus-operator/<version>/*.yaml
($SAGA_STACK_CACHE defaults to ~/.cache/saga-stack.)

Files already present are kept, so a second run does no network I/O.
Each module zip is fetched with `go mod download` into a throwaway module
cache under the target directory, which is removed afterwards.

  --force     fetch again even if the files are present
  --check     fetch nothing; exit 1 and list what is missing
  --no-crds   only the built-in Kubernetes schemas
  -h, --help  this text
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=ci/versions.sh
source "$repo/ci/versions.sh"
# shellcheck source=ci/lib.sh
source "$repo/ci/lib.sh"
cache=${SAGA_STACK_CACHE:-$HOME/.cache/saga-stack}
root="$cache/k8s-openapi"

force=0 check=0 crds=1 versions=()
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --check) check=1 ;;
    --no-crds) crds=0 ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $arg" ;;
    v[0-9]*) versions+=("$arg") ;;
    *) usage >&2; die "not a version (want vMAJOR.MINOR.PATCH): $arg" ;;
  esac
done
if [ ${#versions[@]} -eq 0 ]; then
  read -r -a versions <<<"${K8S_SCHEMA_VERSIONS:-}"
fi
[ ${#versions[@]} -gt 0 ] || die "no versions: K8S_SCHEMA_VERSIONS is empty in ci/versions.sh"

# CRD files to keep from each module zip (paths inside the module).
GATEWAY_API_MODULE=sigs.k8s.io/gateway-api
GATEWAY_API_CRDS=(
  config/crd/standard/gateway.networking.k8s.io_gatewayclasses.yaml
  config/crd/standard/gateway.networking.k8s.io_gateways.yaml
  config/crd/standard/gateway.networking.k8s.io_httproutes.yaml
  config/crd/standard/gateway.networking.k8s.io_grpcroutes.yaml
  config/crd/standard/gateway.networking.k8s.io_referencegrants.yaml
  config/crd/standard/gateway.networking.k8s.io_backendtlspolicies.yaml
)
PROMETHEUS_OPERATOR_MODULE=github.com/prometheus-operator/prometheus-operator
PROMETHEUS_OPERATOR_CRDS=(
  example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml
  example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml
  example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml
  example/prometheus-operator-crd/monitoring.coreos.com_probes.yaml
)

# Work list: "<kind> <module> <version> <dest>" lines.
jobs=()
for v in "${versions[@]}"; do
  jobs+=("k8s k8s.io/kubernetes $v $root/$v")
done
if [ "$crds" = 1 ]; then
  [ -n "${GATEWAY_API_VERSION:-}" ] || die "GATEWAY_API_VERSION is not set in ci/versions.sh"
  [ -n "${PROMETHEUS_OPERATOR_VERSION:-}" ] || die "PROMETHEUS_OPERATOR_VERSION is not set in ci/versions.sh"
  jobs+=("gateway-api $GATEWAY_API_MODULE $GATEWAY_API_VERSION $root/crds/gateway-api/$GATEWAY_API_VERSION")
  jobs+=("prometheus-operator $PROMETHEUS_OPERATOR_MODULE $PROMETHEUS_OPERATOR_VERSION $root/crds/prometheus-operator/$PROMETHEUS_OPERATOR_VERSION")
fi

# present DEST KIND: the job's files are all there (a CRD set is complete only
# once its .complete marker is written, after every file was moved in).
present() {
  case "$2" in
    k8s) [ -s "$1/swagger.json" ] ;;
    *) [ -f "$1/.complete" ] ;;
  esac
}

if [ "$check" = 1 ]; then
  missing=0
  for job in "${jobs[@]}"; do
    read -r kind module version dest <<<"$job"
    if ! present "$dest" "$kind"; then
      printf 'missing: %s %s (%s)\n' "$module" "$version" "$dest"
      missing=1
    fi
  done
  exit "$missing"
fi

todo=()
for job in "${jobs[@]}"; do
  read -r kind module version dest <<<"$job"
  if [ "$force" = 0 ] && present "$dest" "$kind"; then
    step "$module $version: present, skipped ($dest)"
  else
    todo+=("$job")
  fi
done
if [ ${#todo[@]} -eq 0 ]; then
  step "all schemas present under $root"
  exit 0
fi

command -v go >/dev/null || die "go not found: it is needed to download module zips from the Go module proxy"
command -v unzip >/dev/null || die "unzip not found (apt-get install unzip)"

mkdir -p "$root"
# Throwaway module cache and scratch space; -modcacherw keeps it removable.
work=$(mktemp -d "$root/.work.XXXXXX")
cleanup() { chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# zip_of MODULE VERSION: downloads the module zip, prints its path.
zip_of() {
  local module=$1 version=$2 out zip
  out=$(cd "$work" && env GOMODCACHE="$work/mod" GOFLAGS="-mod=mod -modcacherw" \
    GOTOOLCHAIN=local GOWORK=off GO111MODULE=on \
    go mod download -json "$module@$version" 2>"$work/go.err") || {
    cat "$work/go.err" >&2
    printf '%s\n' "$out" | grep -E '"Error"' >&2 || true
    die "go mod download $module@$version failed (is the version on the Go module proxy? \`go list -m -versions $module\`)"
  }
  zip=$(printf '%s\n' "$out" | sed -n 's/^[[:space:]]*"Zip": "\(.*\)",*$/\1/p')
  if [ -z "$zip" ] || [ ! -f "$zip" ]; then
    die "go mod download $module@$version reported no zip file"
  fi
  printf '%s\n' "$zip"
}

# extract ZIP MODULE VERSION INNER_PATH OUT: one file out of a module zip.
extract() {
  local zip=$1 module=$2 version=$3 inner=$4 out=$5
  unzip -p "$zip" "$module@$version/$inner" >"$out.tmp" 2>/dev/null \
    || die "$inner not found in the $module@$version module zip"
  [ -s "$out.tmp" ] || die "$inner is empty in the $module@$version module zip"
  mv -f "$out.tmp" "$out"
}

for job in "${todo[@]}"; do
  read -r kind module version dest <<<"$job"
  t0=$SECONDS
  step "$module $version: downloading the module zip"
  zip=$(zip_of "$module" "$version")
  step "$module $version: zip is $(du -h "$zip" | cut -f1), fetched in $((SECONDS - t0))s; extracting"
  mkdir -p "$dest"
  case "$kind" in
    k8s)
      extract "$zip" "$module" "$version" api/openapi-spec/swagger.json "$dest/swagger.json"
      grep -q '"x-kubernetes-group-version-kind"' "$dest/swagger.json" \
        || { rm -f "$dest/swagger.json"; die "$module@$version: swagger.json has no kinds in it"; }
      ;;
    gateway-api | prometheus-operator)
      rm -f "$dest/.complete"
      if [ "$kind" = gateway-api ]; then files=("${GATEWAY_API_CRDS[@]}"); else files=("${PROMETHEUS_OPERATOR_CRDS[@]}"); fi
      for f in "${files[@]}"; do
        extract "$zip" "$module" "$version" "$f" "$dest/$(basename "$f")"
        grep -q 'openAPIV3Schema' "$dest/$(basename "$f")" || die "$f in $module@$version has no openAPIV3Schema"
      done
      : >"$dest/.complete"
      ;;
  esac
  # the extracted module tree is big (k8s.io/kubernetes: ~120 MB): drop it now
  chmod -R u+w "$work/mod" 2>/dev/null || true
  rm -rf "$work/mod"
  step "$module $version: done in $((SECONDS - t0))s -> $dest"
done
step "all schemas present under $root"
