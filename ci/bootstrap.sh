#!/usr/bin/env bash
# Installs the project's own tools: the Python virtualenv (.venv) from the
# lock files, and pinned helm binaries (.tools/bin) built from the Go module
# proxy. Built artifacts are cached outside the repo, keyed by version, so a
# second run takes seconds; a new machine still builds everything.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: ci/bootstrap.sh [--python] [--helm] [--promtool] [--shellcheck] [--all]

Installs the pinned tools into the repository (nothing outside it but caches):
  --python   .venv from requirements/app.lock + requirements/dev.lock, app/ editable
  --helm     .tools/bin/helm (v4) and .tools/bin/helm3 (v3, for the render-equality check)
  --promtool promtool from Debian's prometheus package (checks the chart's alert rules)
  --shellcheck shellcheck from Debian's package (make lint)
  --all      all of them (the default)

Versions: ci/versions.sh.  Cache: $SAGA_STACK_CACHE (default ~/.cache/saga-stack).
EOF
}

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.sh
source "$repo/ci/versions.sh"
# shellcheck source=lib.sh
source "$repo/ci/lib.sh"
cache=${SAGA_STACK_CACHE:-$HOME/.cache/saga-stack}
tools="$repo/.tools/bin"

want_python=0 want_helm=0 want_promtool=0 want_shellcheck=0
[ $# -eq 0 ] && set -- --all
for arg in "$@"; do
  case "$arg" in
    --python) want_python=1 ;;
    --helm) want_helm=1 ;;
    --promtool) want_promtool=1 ;;
    --shellcheck) want_shellcheck=1 ;;
    --all) want_python=1 want_helm=1 want_promtool=1 want_shellcheck=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $arg" ;;
  esac
done

install_python() {
  command -v python3 >/dev/null || die "python3 not found (need 3.11+)"
  if ! command -v uv >/dev/null || [ "$(uv --version | awk '{print $2}')" != "$UV_VERSION" ]; then
    step "installing uv $UV_VERSION"
    python3 -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION" \
      || die "could not install uv $UV_VERSION from PyPI"
  fi
  local uv
  uv=$(command -v uv)
  [ -x "$repo/.venv/bin/python" ] || { step "creating .venv"; "$uv" venv --quiet "$repo/.venv" --python python3; }
  step "syncing .venv with requirements/*.lock"
  # sync (not install) so a dependency removed from the locks leaves the venv too
  "$uv" pip sync --quiet --python "$repo/.venv/bin/python" \
    "$repo/requirements/app.lock" "$repo/requirements/dev.lock" \
    || die "could not install the locked Python dependencies"
  "$uv" pip install --quiet --python "$repo/.venv/bin/python" --no-deps -e "$repo/app" \
    || die "could not install app/ into .venv"
}

# go_build_tool MODULE_PATH VERSION NAME: builds a Go main package at a pinned
# version into the cache once, then copies it into .tools/bin/NAME.
go_build_tool() {
  local pkg=$1 version=$2 name=$3
  local built="$cache/tools/$name-$version"
  if [ ! -x "$built" ]; then
    command -v go >/dev/null || die "go not found: needed to build $name $version from the Go module proxy"
    step "building $name $version from the Go module proxy (first time only; a few minutes)"
    local gobin
    gobin=$(mktemp -d)
    # helm reads its own version from this variable; go install alone leaves it at the minor line
    local major=${pkg#helm.sh/helm/}
    major=${major%%/*}
    CGO_ENABLED=0 GOBIN="$gobin" GOFLAGS=-trimpath go install \
      -ldflags "-s -w -X helm.sh/helm/$major/internal/version.version=$version" "$pkg@$version" \
      || die "go install $pkg@$version failed"
    mkdir -p "$cache/tools"
    mv "$gobin/helm" "$built"
    rmdir "$gobin"
  fi
  mkdir -p "$tools"
  install -m 0755 "$built" "$tools/$name"
  step "$name: $("$tools/$name" version --short 2>/dev/null || echo "$version")"
}

# deb_tool PACKAGE BINARY: BINARY out of Debian's PACKAGE .deb (downloaded into the cache
# once), unpacked into .tools/bin. Installing the package instead would need root for a
# lint tool, and prometheus's would also start a server on machines that run systemd.
deb_tool() {
  local package=$1 binary=$2 debs="$cache/debs"
  mkdir -p "$debs" "$tools"
  if ! compgen -G "$debs/${package}_*.deb" >/dev/null; then
    step "downloading Debian's $package package (for $binary)"
    (cd "$debs" && { apt-get download "$package" >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get download "$package" >/dev/null; }; }) \
      || die "could not download Debian's $package package (for $binary)"
  fi
  local unpacked found
  found=("$debs/${package}"_*.deb)
  unpacked=$(mktemp -d)
  dpkg-deb -x "${found[-1]}" "$unpacked"
  install -m 0755 "$unpacked/usr/bin/$binary" "$tools/$binary"
  rm -rf "$unpacked"
  step "$binary: $("$tools/$binary" --version 2>&1 | grep -m 1 -iE 'version')"
}

[ "$want_python" = 1 ] && install_python
[ "$want_promtool" = 1 ] && deb_tool prometheus promtool
[ "$want_shellcheck" = 1 ] && deb_tool shellcheck shellcheck
if [ "$want_helm" = 1 ]; then
  go_build_tool helm.sh/helm/v4/cmd/helm "$HELM_VERSION" helm
  go_build_tool helm.sh/helm/v3/cmd/helm "$HELM3_VERSION" helm3
fi
step "bootstrap done"
