#!/usr/bin/env bash
# Fetch kind from Debian (only `sid` packages it) with apt, into the cache. The apt
# source is derived at run time from this machine's own Debian sources.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
usage() {
  cat <<USAGE
Usage: $(basename "$0")

Prints the path of a kind binary, downloading Debian sid's 'kind' package into
\${SAGA_STACK_CACHE}/kind/ first if needed (apt-get download with a private list
directory; the machine's apt state is not touched). KIND_DEB_VERSION pins it
(default ${KIND_DEB_VERSION:-0.33.0-1}).
USAGE
}
[[ "${1:-}" == -h || "${1:-}" == --help ]] && { usage; exit 0; }
: "${KIND_DEB_VERSION:=0.33.0-1}"
dir="${SAGA_STACK_CACHE}/kind/${KIND_DEB_VERSION}"
bin="${dir}/usr/bin/kind"
[[ -x "$bin" ]] && { echo "$bin"; exit 0; }
src="$(apt_sources_file)"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
chmod 755 "$work"   # apt drops privileges to _apt for downloads
mkdir -p "$work/lists/partial" "$work/archives/partial"
case "$src" in
  *.sources) sed -e 's/^Suites:.*/Suites: sid/' "$src" \
               | awk 'BEGIN{RS="";ORS="\n\n"} /security/ {next} {print}' > "$work/sid.sources"
             opt_list=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$work/parts")
             mkdir -p "$work/parts"; mv "$work/sid.sources" "$work/parts/sid.sources" ;;
  *) awk '$1=="deb" && $0 !~ /security/ {$3="sid"; print; exit}' "$src" > "$work/sid.list"
     opt_list=(-o "Dir::Etc::SourceList=$work/sid.list" -o "Dir::Etc::SourceParts=/dev/null") ;;
esac
opts=("${opt_list[@]}" -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::Archives=$work/archives"
      -o APT::Get::List-Cleanup=0)
log "apt-get update (sid, private lists)"
apt-get "${opts[@]}" update -q >/dev/null || die "apt-get update for sid failed"
(cd "$work" && apt-get "${opts[@]}" download "kind=${KIND_DEB_VERSION}" >/dev/null 2>&1) \
  || die "apt-get download kind=${KIND_DEB_VERSION} failed"
mkdir -p "$dir"
dpkg-deb -x "$work"/kind_*.deb "$dir"
log "kind $("$bin" version 2>/dev/null | awk '{print $2}') -> $bin"
echo "$bin"
