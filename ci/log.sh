# shellcheck shell=bash
# Progress and error lines shared by the scripts under ci/: source it after
# setting PROG (the name shown in front of every line).
ts() { date -u +%H:%M:%S; }
log() { printf '[%s %s] %s\n' "$PROG" "$(ts)" "$*" >&2; }
die() {
  printf '[%s %s] ERROR: %s\n' "$PROG" "$(ts)" "$*" >&2
  exit 1
}
