#!/bin/sh
# Entry point of saga-stack.local/redis.
#  - `image -opt` / `image file.conf`: run redis-server with those arguments;
#  - redis-server without a config file: protected mode off (the container's
#    network is the boundary, as in the official image);
#  - started as root: own /data, then run as the redis user (uid 999).
set -eu

case "${1:-}" in
  '' | -* | *.conf) set -- redis-server "$@" ;;
esac

if [ "$1" = redis-server ] || [ "$1" = redis-sentinel ]; then
  if [ "$(id -u)" = 0 ]; then
    chown redis:redis /data 2>/dev/null || true
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
  fi
  if [ "$1" = redis-server ]; then
    has_conf=no
    for a in "$@"; do
      case "$a" in *.conf) has_conf=yes ;; esac
    done
    if [ "$has_conf" = no ]; then
      shift
      set -- redis-server --protected-mode no "$@"
    fi
  fi
fi

exec "$@"
