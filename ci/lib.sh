# shellcheck shell=bash
# The helpers every script under ci/ shares, so that all of them print the
# same kind of lines. Sourced, never run; it sets no shell options, because
# the scripts that source it differ in those.
#
# Every line goes to stderr and names its script: `make up` interleaves the
# output of a dozen scripts, and stdout is left for what a script returns
# (build-addons.sh --path prints a path, for instance).
# That name is PROG when the script sets it (its file name says too little,
# as ci/images/build.sh's "images", or is taken: ci/cluster/up.sh is
# "cluster-up", ci/up.sh "up"), else the file name without .sh.

_lib_prog() {
  local p="${PROG:-${0##*/}}"
  printf '%s' "${p%.sh}"
}
_lib_clock() { date -u +%H:%M:%S; }

log() { printf '[%s %s] %s\n' "$(_lib_prog)" "$(_lib_clock)" "$*" >&2; }
warn() { log "WARN: $*"; }
die() {
  log "ERROR: $*"
  exit 1
}

# need CMD [HINT]: stop early with what to install, rather than halfway
# through a build with "command not found".
need() { command -v "$1" >/dev/null 2>&1 || die "missing command '$1'${2:+ ($2)}"; }

# step MSG: a milestone, marked with ==> so that it stands out among the
# log lines of the scripts a step runs. A script that sets STEP_T0 (epoch
# seconds) shows the seconds since then instead of the clock: ci/up.sh does,
# for a first run that takes half an hour (docs/offline-cluster.md shows
# its lines as `==> [  NNs] step`).
step() {
  if [[ -n "${STEP_T0:-}" ]]; then
    printf '==> [%4ss] %s\n' "$(($(date +%s) - STEP_T0))" "$*" >&2
  else
    printf '==> [%s %s] %s\n' "$(_lib_prog)" "$(_lib_clock)" "$*" >&2
  fi
}

# --- this machine's apt sources ----------------------------------------------
# Debian mirrors are read from /etc/apt at run time: no host name is written
# in the repository, and each machine uses the mirror (or proxy) it already
# trusts. One reading of those files serves both forms below.

# _apt_source_uris FILE: "URI SUITE" per enabled deb entry of FILE, in the
# one-line format or, for *.sources, deb822.
_apt_source_uris() {
  case "$1" in
    *.sources)
      awk 'function flush(  n, m, a, b, u, s) {
             if (types ~ /(^| )deb( |$)/ && enabled != "no") {
               n = split(uris, u, " "); m = split(suites, s, " ")
               for (a = 1; a <= n; a++) for (b = 1; b <= m; b++) print u[a], s[b]
             }
             types = uris = suites = enabled = ""
           }
           /^[ \t]*$/ { flush(); next }
           /^#/ { next }
           { key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ /, "")
             if (key == "types") types = $0; else if (key == "uris") uris = $0
             else if (key == "suites") suites = $0; else if (key == "enabled") enabled = tolower($0) }
           END { flush() }' "$1"
      ;;
    *) awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } print $i, $(i + 1) }' "$1" ;;
  esac
}

# apt_sources: "URI SUITE" lines of all of the machine's sources (one-line
# files first), for deriving the mirrors of a suite the machine does not run.
apt_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] && _apt_source_uris "$f"
  done
  return 0
}

# apt_sources_file: the file listing the machine's Debian archive, for tools
# that read a sources file (mmdebstrap, apt-get -o Dir::Etc::...): passed
# whole, it keeps the keyring and components the machine already uses.
apt_sources_file() {
  local f
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    if [[ -f $f && -n "$(_apt_source_uris "$f")" ]]; then
      echo "$f"
      return 0
    fi
  done
  die "no Debian apt sources found in /etc/apt"
}

# debian_mirrors: sets DEB_URI (the Debian archive) and SEC_URI (its security
# archive; empty when the machine has none), for sources of another suite.
debian_mirrors() {
  local host_suite lines
  host_suite="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  lines="$(apt_sources)"
  [[ -n "$lines" ]] || die "no deb sources found in /etc/apt; cannot derive a Debian mirror"
  DEB_URI="$(awk -v s="$host_suite" '$2 == s { print $1; exit }' <<<"$lines")"
  [[ -n "$DEB_URI" ]] || DEB_URI="$(awk '$2 !~ /-(security|updates|backports)$/ && $1 !~ /security/ { print $1; exit }' <<<"$lines")"
  [[ -n "$DEB_URI" ]] || die "could not find the Debian archive among the machine's apt sources"
  # shellcheck disable=SC2034  # read by the caller
  SEC_URI="$(awk '$2 ~ /-security$/ { print $1; exit }' <<<"$lines")"
}

# --- Debian root filesystems -------------------------------------------------

# debian_rootfs_tar [--suite SUITE] [--source SRC]... [--opt OPT]... VARIANT TARBALL LOG [PKG...]
# An mmdebstrap root filesystem of SUITE (default $DEBIAN_SUITE), VARIANT
# plus PKG..., as a tarball for `docker import`. SRC are mmdebstrap's
# mirror arguments (default: apt_sources_file); OPT are more mmdebstrap
# options, given after the common ones so that a --dpkgopt=path-include
# can take back part of an exclude. mmdebstrap's output goes to LOG, and
# its tail to stderr when it fails.
# Callers cache TARBALL under a key and build it only when it is missing,
# so it is written as TARBALL.tmp and renamed when complete: an interrupted
# run must not leave half a rootfs where the next run finds it.
debian_rootfs_tar() {
  local suite="${DEBIAN_SUITE:-}" sources=() opts=()
  while [[ ${1:-} == --* ]]; do
    [[ $# -ge 2 ]] || die "debian_rootfs_tar: $1 needs a value"
    case "$1" in
      --suite) suite="$2" ;;
      --source) sources+=("$2") ;;
      --opt) opts+=("$2") ;;
      *) die "debian_rootfs_tar: unknown option $1" ;;
    esac
    shift 2
  done
  [[ $# -ge 3 ]] || die "usage: debian_rootfs_tar [--suite S] [--source SRC]... [--opt OPT]... VARIANT TARBALL LOG [PKG...]"
  [[ -n "$suite" ]] || die "debian_rootfs_tar: no --suite and DEBIAN_SUITE is unset"
  local variant="$1" tarball="$2" logf="$3"
  shift 3
  if [[ ${#sources[@]} -eq 0 ]]; then
    local src
    src="$(apt_sources_file)" || exit 1
    sources=("$src")
  fi
  local include=()
  [[ $# -gt 0 ]] && include=(--include="$(IFS=,; echo "$*")")
  # Containers never read documentation, man pages, locales or info files;
  # apt's lists and binary caches are a snapshot of the archive that is
  # stale in an image (apt-get update fetches new ones).
  # shellcheck disable=SC2016  # the hook's $1 (the rootfs) is expanded by mmdebstrap, not here
  local mmdebstrap_argv=(mmdebstrap --mode=root --variant="$variant" --format=tar "${include[@]}"
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin'
    "${opts[@]}" "$suite" "$tarball.tmp" "${sources[@]}")
  mkdir -p "$(dirname "$tarball")" "$(dirname "$logf")"
  printf '\n+ %s\n' "${mmdebstrap_argv[*]}" >>"$logf"
  if ! "${mmdebstrap_argv[@]}" >>"$logf" 2>&1; then
    tail -n 30 "$logf" >&2
    rm -f "$tarball.tmp"
    die "mmdebstrap $suite ($variant) failed (full log: $logf)"
  fi
  mv "$tarball.tmp" "$tarball"
}
