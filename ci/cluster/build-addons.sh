#!/usr/bin/env bash
# Build kind and the cluster add-on binaries (metrics-server, local-path-provisioner, CNI
# candidates, prometheus-adapter for ci/monitoring/, Traefik for ci/ingress/, VictoriaLogs and vlagent
# for ci/logging/, Jaeger for ci/tracing/)
# from the Go module proxy, one at a time, niced.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# name|module|version|package|extra go build flags|replaces (space-separated old=new@ver)
# A package that starts with ./ is built inside the module itself, as its main module:
# for modules whose go.mod has replace directives (a dependent's `go get` ignores them).
# cilium: its pinned gobgp pseudo-version is refused by the proxy here (403), so the
# nearest release is substituted.
RECIPES=(
  "kind|sigs.k8s.io/kind|${KIND_VERSION}|sigs.k8s.io/kind|"
  "metrics-server|sigs.k8s.io/metrics-server|v0.9.0|sigs.k8s.io/metrics-server/cmd/metrics-server|"
  "local-path-provisioner|github.com/rancher/local-path-provisioner|v0.0.30|github.com/rancher/local-path-provisioner|"
  "crictl|sigs.k8s.io/cri-tools|v1.37.0|sigs.k8s.io/cri-tools/cmd/crictl|"
  "kube-router|github.com/cloudnativelabs/kube-router/v2|v2.1.0|github.com/cloudnativelabs/kube-router/v2/cmd/kube-router|"
  "prometheus-adapter|sigs.k8s.io/prometheus-adapter|${PROMETHEUS_ADAPTER_VERSION}|sigs.k8s.io/prometheus-adapter/cmd/adapter|"
  "traefik|github.com/traefik/traefik/v3|${TRAEFIK_VERSION}|./cmd/traefik|"
  "victoria-logs|github.com/VictoriaMetrics/VictoriaLogs|${VICTORIALOGS_VERSION}|./app/victoria-logs|"
  "vlagent|github.com/VictoriaMetrics/VictoriaLogs|${VICTORIALOGS_VERSION}|./app/vlagent|"
  "jaeger|github.com/jaegertracing/jaeger|${JAEGER_VERSION}|./cmd/jaeger|"
)

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--list] [--path] NAME...

Builds each NAME into \${SAGA_STACK_CACHE}/addons/<module>@<version>/bin/NAME
(cached: delete the binary to rebuild). --path prints that path for each NAME
and builds nothing. Recipes:
$(printf '  %s\n' "${RECIPES[@]}" | cut -d'|' -f1-3 | tr '|' ' ')
Env: BUILD_NICE (19), BUILD_PAR (every core). Timings: ${CLUSTER_STATE}/timings.log
USAGE
}
[[ $# -gt 0 ]] || { usage; exit 2; }
names=(); print_path=0
for a in "$@"; do case "$a" in -h|--help) usage; exit 0 ;; --list) printf '%s\n' "${RECIPES[@]}" | cut -d'|' -f1; exit 0 ;; --path) print_path=1 ;; *) names+=("$a") ;; esac; done
[[ $print_path == 1 ]] || need go
: "${BUILD_NICE:=19}"; : "${BUILD_PAR:=$(nproc)}"
export CGO_ENABLED=0 GOOS=linux GOARCH=amd64 GOFLAGS="-p=${BUILD_PAR}" GOCACHE="${SAGA_STACK_CACHE}/go-build"
mkdir -p "${CLUSTER_STATE}"

for n in "${names[@]}"; do
  r="$(printf '%s\n' "${RECIPES[@]}" | grep "^${n}|" || true)"
  [[ -n "$r" ]] || die "no recipe '$n' (see --list)"
  IFS='|' read -r _ mod ver pkg flags repl <<<"$r"
  d="${SAGA_STACK_CACHE}/addons/${mod//\//_}@${ver}"
  out="$d/bin/$n"
  [[ $print_path == 1 ]] && { echo "$out"; continue; }
  [[ -x "$out" ]] && { log "$n: cached ($out)"; continue; }
  mkdir -p "$d/bin"
  if [[ "$pkg" == ./* ]]; then
    # the module's own tree (read-only in the module cache) copied to a writable place
    if [[ ! -f "$d/src/go.mod" ]]; then
      log "$n: downloading ${mod}@${ver}"
      src="$(GOFLAGS='' go mod download -json "${mod}@${ver}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
      [[ -n "$src" && -f "$src/go.mod" ]] || die "cannot download ${mod}@${ver} from the Go module proxy"
      rm -rf "$d/src.tmp" && cp -r "$src" "$d/src.tmp" && chmod -R u+w "$d/src.tmp" && mv "$d/src.tmp" "$d/src"
    fi
    d="$d/src"
  elif [[ ! -f "$d/go.mod" ]]; then
    log "$n: resolving ${mod}@${ver}"
    (cd "$d" && GOFLAGS='' go mod init "saga-stack.local/addon-${n}" >/dev/null 2>&1 && GOFLAGS=-mod=mod go get "${mod}@${ver}") \
      || { rm -f "$d/go.mod"; die "cannot resolve ${mod}@${ver} from the Go module proxy"; }
  fi
  for rp in ${repl}; do (cd "$d" && GOFLAGS='' go mod edit -replace "$rp"); done
  log "$n: go build ${pkg} (nice ${BUILD_NICE}, -p ${BUILD_PAR})"
  t0=$(date +%s)
  # shellcheck disable=SC2086
  (cd "$d" && nice -n "${BUILD_NICE}" go build -mod=mod -trimpath -ldflags '-s -w' ${flags} -o "${out}.tmp" "${pkg}") \
    || die "build of $n failed"
  mv "${out}.tmp" "$out"
  s=$(( $(date +%s) - t0 )); sz=$(( $(stat -c %s "$out") / 1048576 ))
  echo "$(date -u +%FT%TZ) build ${n}-${ver} ${s}s ${sz}MiB" >> "${CLUSTER_STATE}/timings.log"
  log "built $n ${ver} in ${s}s (${sz} MiB)"
done
