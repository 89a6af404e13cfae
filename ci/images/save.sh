#!/usr/bin/env bash
# Saves the chart's offline images (default: app postgres redis kafka prometheus)
# as `docker save` tarballs in ${SAGA_STACK_CACHE:-$HOME/.cache/saga-stack}/images/
# (<name>-<tag>.tar), for import into a node's containerd (ctr -n k8s.io images
# import FILE). Up-to-date tarballs are kept. Extra arguments go to build.sh,
# e.g. `ci/images/save.sh --only kafka`.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case " $* " in
  *" --only "* | *" --only="*) exec "$SCRIPT_DIR/build.sh" --save-only "$@" ;;
  *) exec "$SCRIPT_DIR/build.sh" --save-only --only app,postgres,redis,kafka,prometheus "$@" ;;
esac
