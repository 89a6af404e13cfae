#!/usr/bin/env bash
# Build Kubernetes binaries (and etcd, CoreDNS, pause) from the Go module proxy.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--list] [COMPONENT...]

Builds static linux/amd64 binaries from the Go module proxy into
  \${SAGA_STACK_CACHE:-~/.cache/saga-stack}/k8s-build/<version>/bin/
A binary already in the cache is not rebuilt (delete it to force).

Components (default: all, in this order):
  kubeadm kubelet kube-apiserver kube-controller-manager kube-scheduler
  kube-proxy kubectl etcd coredns pause

Environment:
  K8S_VERSION   comes from ci/versions.sh (${K8S_VERSION}), the one place it is pinned
  ETCD_VERSION  etcd server version (default: what this kubeadm expects)
  COREDNS_VERSION  CoreDNS version (default: what this kubeadm expects)
  BUILD_NICE    nice level for the compiler (default 19)
  BUILD_PAR     go build -p value (default: every core, as nothing else runs during
                make up; niced, so anything that does run still gets the CPU first)
Timings go to ${CLUSTER_STATE}/timings.log.
USAGE
}

ALL=(kubeadm kubelet kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl etcd coredns pause)
comps=()
for a in "$@"; do
  case "$a" in
    -h|--help) usage; exit 0 ;;
    --list) printf '%s\n' "${ALL[@]}"; exit 0 ;;
    -*) die "unknown option $a (see --help)" ;;
    *) comps+=("$a") ;;
  esac
done
[[ ${#comps[@]} -gt 0 ]] || comps=("${ALL[@]}")

need go "the Go toolchain"
: "${BUILD_NICE:=19}"
: "${BUILD_PAR:=$(nproc)}"

K8S_DIR="${SAGA_STACK_CACHE}/k8s-build/${K8S_VERSION}"
BIN="${K8S_DIR}/bin"
mkdir -p "${BIN}"
export CGO_ENABLED=0 GOOS=linux GOARCH=amd64 GOFLAGS="-p=${BUILD_PAR}"
# Keep the build cache with the rest of our caches, keyed by nothing (Go keys it itself).
export GOCACHE="${SAGA_STACK_CACHE}/go-build"

# ---- the k8s.io/kubernetes wrapper module ---------------------------------
prepare_k8s_module() {
  local mod="${K8S_DIR}/mod"
  [[ -f "${mod}/go.mod" && -f "${mod}/.ready" ]] && return 0
  log "preparing wrapper module for k8s.io/kubernetes ${K8S_VERSION}"
  mkdir -p "${mod}"
  local gomod
  gomod="$(cd "${mod}" && GOFLAGS='' go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" \
           | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')" \
    || die "cannot download k8s.io/kubernetes@${K8S_VERSION} from the Go module proxy"
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local patch="${K8S_VERSION##*.}"
  local staging_ver="v0.${minor}.${patch}"
  local gover
  gover="$(awk '$1=="go"{print $2; exit}' "${gomod}")"
  {
    echo "module saga-stack.local/k8s-build"
    echo
    echo "go ${gover}"
    echo
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    echo
    echo "replace ("
    # every module that k/k points at ./staging gets its published v0.Y.Z
    awk '/=> \.\/staging\//{print "\t" $1 " => " $1 " '"${staging_ver}"'"}' "${gomod}"
    echo ")"
  } > "${mod}/go.mod"
  log "staging modules replaced: $(grep -c '=> k8s.io' "${mod}/go.mod") (-> ${staging_ver})"
  # resolve the full graph once (network); builds afterwards are offline-safe
  (cd "${mod}" && GOFLAGS=-mod=mod go mod download) || true
  touch "${mod}/.ready"
}

k8s_ldflags() {
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local date; date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  local f=() k v
  for kv in "gitVersion=${K8S_VERSION}" "gitMajor=1" "gitMinor=${minor}" \
            "gitTreeState=clean" "gitCommit=0000000000000000000000000000000000000000" \
            "buildDate=${date}"; do
    k="${kv%%=*}"; v="${kv#*=}"
    f+=("-X 'k8s.io/client-go/pkg/version.${k}=${v}'" "-X 'k8s.io/component-base/version.${k}=${v}'")
  done
  echo "-s -w ${f[*]}"
}

record() { # name file seconds
  local sz; sz=$(stat -c %s "$2")
  printf '%s build %s %ss %sMiB %s\n' "$(date -u +%FT%TZ)" "$1" "$3" "$((sz / 1048576))" "${K8S_VERSION}" \
    >> "${CLUSTER_STATE}/timings.log"
  log "built $1 in $3s ($((sz / 1048576)) MiB) -> $2"
}

build_k8s_cmd() {
  local name="$1" out="${BIN}/$1"
  [[ -x "${out}" ]] && { log "${name}: cached (${out})"; return 0; }
  prepare_k8s_module
  log "${name}: go build k8s.io/kubernetes/cmd/${name} (nice ${BUILD_NICE}, -p ${BUILD_PAR})"
  local t0; t0=$(date +%s)
  (cd "${K8S_DIR}/mod" && nice -n "${BUILD_NICE}" go build -mod=mod -trimpath \
      -tags 'selinux,notest,grpcnotrace' -ldflags "$(k8s_ldflags)" \
      -o "${out}.tmp" "k8s.io/kubernetes/cmd/${name}") || die "build of ${name} failed"
  mv "${out}.tmp" "${out}"
  record "${name}" "${out}" "$(( $(date +%s) - t0 ))"
}

# kubeadm's own table says which etcd / CoreDNS / pause it expects.
kubeadm_const() { # NAME
  local cf="${HOME}/go/pkg/mod/k8s.io/kubernetes@${K8S_VERSION}/cmd/kubeadm/app/constants/constants.go"
  [[ -f "$cf" ]] || cf="$(GOFLAGS='' go env GOMODCACHE)/k8s.io/kubernetes@${K8S_VERSION}/cmd/kubeadm/app/constants/constants.go"
  sed -n "s/^[[:space:]]*$1 = \"\\(.*\\)\"/\\1/p" "$cf" | head -1
}

build_etcd() {
  local out="${BIN}/etcd"
  [[ -x "${out}" ]] && { log "etcd: cached"; return 0; }
  prepare_k8s_module
  local ev="${ETCD_VERSION:-$(kubeadm_const DefaultEtcdVersion)}"; ev="v${ev%-*}"
  local d="${SAGA_STACK_CACHE}/etcd-build/${ev}"
  mkdir -p "$d"
  cat > "$d/main.go" <<'GO'
// Thin main around etcd's own entry point.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  [[ -f "$d/go.mod" ]] || (cd "$d" && GOFLAGS='' go mod init saga-stack.local/etcd-build >/dev/null 2>&1 \
       && GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@${ev}") || die "cannot resolve etcd ${ev}"
  log "etcd ${ev}: go build"
  local t0; t0=$(date +%s)
  (cd "$d" && nice -n "${BUILD_NICE}" go build -mod=mod -trimpath -ldflags '-s -w' -o "${out}.tmp" .) \
    || die "build of etcd failed"
  mv "${out}.tmp" "${out}"
  echo "${ev}" > "${BIN}/etcd.version"
  record "etcd-${ev}" "${out}" "$(( $(date +%s) - t0 ))"
}

build_coredns() {
  local out="${BIN}/coredns"
  [[ -x "${out}" ]] && { log "coredns: cached"; return 0; }
  prepare_k8s_module
  local cv="${COREDNS_VERSION:-$(kubeadm_const CoreDNSVersion)}"
  local d="${SAGA_STACK_CACHE}/coredns-build/${cv}"
  mkdir -p "$d"
  [[ -f "$d/go.mod" ]] || (cd "$d" && GOFLAGS='' go mod init saga-stack.local/coredns-build >/dev/null 2>&1 \
       && printf 'package main\n\nimport _ "github.com/coredns/coredns"\n' > tools.go \
       && GOFLAGS=-mod=mod go get "github.com/coredns/coredns@${cv}") || die "cannot resolve coredns ${cv}"
  rm -f "$d/tools.go"
  log "coredns ${cv}: go build"
  local t0; t0=$(date +%s)
  (cd "$d" && nice -n "${BUILD_NICE}" go build -mod=mod -trimpath -ldflags '-s -w' -o "${out}.tmp" github.com/coredns/coredns) \
    || die "build of coredns failed"
  mv "${out}.tmp" "${out}"
  echo "${cv}" > "${BIN}/coredns.version"
  record "coredns-${cv}" "${out}" "$(( $(date +%s) - t0 ))"
}

build_pause() {
  local out="${BIN}/pause"
  [[ -x "${out}" ]] && { log "pause: cached"; return 0; }
  local d="${SAGA_STACK_CACHE}/pause-build"
  mkdir -p "$d"
  # Our own minimal pause: PID 1 of a pod sandbox, reaps zombies, exits on TERM/INT.
  cat > "$d/main.go" <<'GO'
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s == syscall.SIGCHLD {
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
GO
  [[ -f "$d/go.mod" ]] || (cd "$d" && GOFLAGS='' go mod init saga-stack.local/pause >/dev/null 2>&1)
  local t0; t0=$(date +%s)
  (cd "$d" && nice -n "${BUILD_NICE}" go build -trimpath -ldflags '-s -w' -o "${out}.tmp" .) || die "build of pause failed"
  mv "${out}.tmp" "${out}"
  record pause "${out}" "$(( $(date +%s) - t0 ))"
}

mkdir -p "${CLUSTER_STATE}"
for c in "${comps[@]}"; do
  case "$c" in
    kubeadm|kubelet|kube-apiserver|kube-controller-manager|kube-scheduler|kube-proxy|kubectl) build_k8s_cmd "$c" ;;
    etcd) build_etcd ;;
    coredns) build_coredns ;;
    pause) build_pause ;;
    *) die "unknown component '$c' (see --list)" ;;
  esac
done
built=("${BIN}"/*)
log "done: ${built[*]##*/}"
