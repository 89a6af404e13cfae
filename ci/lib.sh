# shellcheck shell=bash
# The helpers every script under ci/ shares, so that all of them print the
# same kind of lines. Sourced, never run; it sets no shell options, because
# the scripts that source it differ in those.
#
# Every line goes to stderr and names its script: `make up` interleaves the
# output of a dozen scripts, and stdout is left for what a script returns
# (get-kind.sh prints a path, for instance).
# PROG is that name; a script sets it when its file name alone would be
# ambiguous (ci/up.sh and ci/cluster/up.sh), else the file name is used.

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
