#!/usr/bin/env bash
# Installs the console's browser libraries (app/console-ui/package.json, locked by its
# package-lock.json) with `npm ci` into a cache outside the repository, and copies uPlot's
# dist files to a target directory: the console serves them at /static/vendor/uplot/.
# Nothing downloaded is committed; the registry is whatever npm's own configuration says
# (no host is named here or in the lock file).
set -euo pipefail

usage() {
  cat <<'EOF_USAGE'
Usage: ci/console-assets.sh [--force] TARGET_DIR

Runs `npm ci --ignore-scripts` for app/console-ui into
  $SAGA_STACK_CACHE/console-ui/   ($SAGA_STACK_CACHE defaults to ~/.cache/saga-stack)
(skipped when the cache already holds an install of the same package-lock.json), then
copies uPlot.iife.min.js, uPlot.min.css and uPlot's LICENSE (MIT) to
  TARGET_DIR/uplot/
TARGET_DIR is typically the console's static vendor directory, e.g.
  app/src/saga_console/static/vendor   (git-ignored) or a directory of an image build.

  --force     install again even if the cache is current
  -h, --help  this text
EOF_USAGE
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=ci/lib.sh
source "$repo/ci/lib.sh"

force=0
target=""
while (($#)); do
  case "$1" in
    -h | --help)
      usage
      exit 0
      ;;
    --force) force=1 ;;
    -*)
      usage >&2
      die "unknown option $1"
      ;;
    *)
      [[ -z "$target" ]] || die "one TARGET_DIR only"
      target=$1
      ;;
  esac
  shift
done
[[ -n "$target" ]] || {
  usage >&2
  die "TARGET_DIR is required"
}
need npm "Node.js with npm"

source_dir="$repo/app/console-ui"
cache="${SAGA_STACK_CACHE:-$HOME/.cache/saga-stack}/console-ui"
stamp="$cache/.lock-sha256"
want=$(sha256sum "$source_dir/package-lock.json" | cut -d' ' -f1)

if ((force)) || [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$want" ]]; then
  step "npm ci into $cache"
  mkdir -p "$cache"
  cp "$source_dir/package.json" "$source_dir/package-lock.json" "$cache/"
  # --ignore-scripts: a chart library has no business running code at install time.
  (cd "$cache" && npm ci --ignore-scripts --no-audit --no-fund)
  printf '%s\n' "$want" >"$stamp"
else
  log "cache current ($cache)"
fi

dist="$cache/node_modules/uplot/dist"
for file in uPlot.iife.min.js uPlot.min.css; do
  [[ -f "$dist/$file" ]] || die "$dist/$file is missing: run again with --force"
done
mkdir -p "$target/uplot"
cp "$dist/uPlot.iife.min.js" "$dist/uPlot.min.css" "$target/uplot/"
cp "$cache/node_modules/uplot/LICENSE" "$target/uplot/LICENSE"
log "uPlot $(node -p "require('$cache/node_modules/uplot/package.json').version" 2>/dev/null || echo '?') in $target/uplot"
