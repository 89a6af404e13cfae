#!/usr/bin/env bash
# Create / delete / inspect kind-style node containers without --privileged.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NET="${CLUSTER_NAME}-net"

usage() {
  cat <<USAGE
Usage: $(basename "$0") create NAME [ROLE] | delete NAME | delete-all | wait NAME | list

  create NAME [ROLE]  start node container NAME (role control-plane|worker, default
                      control-plane) from ${NODE_IMAGE_TAG} on docker network ${NET};
                      no-op if it already runs. The control plane publishes the ingress
                      NodePorts on 127.0.0.1:${INGRESS_HTTP_PORT} and :${INGRESS_HTTPS_PORT}
  wait NAME           wait until systemd in NAME reports running/degraded (120s)
  delete NAME         remove node NAME (and its anonymous /var volume)
  delete-all          remove every node labelled saga-stack.cluster=${CLUSTER_NAME}, and the network
  list                list this cluster's nodes
  network             create the cluster's docker network (do this before parallel creates)

Flags used instead of --privileged (measured on this machine, see docs/offline-cluster.md):
  --cap-add=ALL --cap-drop=SYS_RESOURCE, seccomp/apparmor/systempaths unconfined,
  --cgroupns=private, --device-cgroup-rule='a *:* rwm', tmpfs /run /run/lock /tmp,
  -v /var, -v /lib/modules:/lib/modules:ro
USAGE
}

need docker; docker_env
cmd="${1:-}"; name="${2:-}"
case "$cmd" in
  -h|--help|"") usage; [[ -n "$cmd" ]]; exit ;;
esac

node_state() {
  local st
  st="$(docker inspect -f '{{.State.Status}}' "$1" 2>/dev/null)" || st=""
  echo "${st:-absent}"
}

wait_node() {
  local n="$1" st=""
  for _ in $(seq 1 120); do
    st="$(docker exec "$n" systemctl is-system-running 2>/dev/null || true)"
    case "$st" in running|degraded) log "$n: systemd ${st}"; return 0 ;; esac
    [[ "$(node_state "$n")" == running ]] || die "$n is not running any more (docker logs $n)"
    sleep 1
  done
  die "$n: systemd not up after 120s (last: ${st:-none}); try: docker exec $n systemctl --failed"
}

ensure_network() {
  docker network inspect "${NET}" >/dev/null 2>&1 && return 0
  log "creating docker network ${NET}"
  docker network create --label "saga-stack.cluster=${CLUSTER_NAME}" "${NET}" >/dev/null
}

case "$cmd" in
  network) ensure_network ;;
  create)
    [[ -n "$name" ]] || die "create needs a NAME"
    role="${3:-control-plane}"
    docker image inspect "${NODE_IMAGE_TAG}" >/dev/null 2>&1 || die "no image ${NODE_IMAGE_TAG}: run build-node-image.sh"
    ensure_network
    case "$(node_state "$name")" in
      running) log "$name already running"; exit 0 ;;
      absent) ;;
      *) log "$name exists but is not running: recreating"; docker rm -f -v "$name" >/dev/null ;;
    esac
    ports=()
    [[ "$role" == control-plane ]] && ports=(
      -p "127.0.0.1:${INGRESS_HTTP_PORT}:${INGRESS_NODE_PORT_HTTP}"
      -p "127.0.0.1:${INGRESS_HTTPS_PORT}:${INGRESS_NODE_PORT_HTTPS}")
    log "starting node $name (role $role${ports[*]:+, publishing ${ports[*]}})"
    docker run -d --name "$name" --hostname "$name" \
      --label "saga-stack.cluster=${CLUSTER_NAME}" --label "saga-stack.role=${role}" \
      --network "${NET}" "${ports[@]}" \
      "${NODE_RUN_FLAGS[@]}" -v /var --restart=on-failure:1 \
      "${NODE_IMAGE_TAG}" >/dev/null
    wait_node "$name"
    ;;
  wait) wait_node "$name" ;;
  delete)
    [[ -n "$name" ]] || die "delete needs a NAME"
    [[ "$(node_state "$name")" == absent ]] || { docker rm -f -v "$name" >/dev/null; log "deleted $name"; }
    ;;
  delete-all)
    mapfile -t ids < <(docker ps -aq --filter "label=saga-stack.cluster=${CLUSTER_NAME}")
    (( ${#ids[@]} == 0 )) || { docker rm -f -v "${ids[@]}" >/dev/null; log "deleted nodes: ${ids[*]}"; }
    for id in $(docker network ls -q --filter "label=saga-stack.cluster=${CLUSTER_NAME}"); do
      docker network rm "$id" >/dev/null && log "deleted network ${NET} (${id})"
    done
    ;;
  list) docker ps -a --filter "label=saga-stack.cluster=${CLUSTER_NAME}" --format '{{.Names}}\t{{.Status}}\t{{.Label "saga-stack.role"}}' ;;
  *) usage; exit 2 ;;
esac
