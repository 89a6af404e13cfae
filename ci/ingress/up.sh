#!/usr/bin/env bash
# The cluster's way in: Traefik serving Ingress and Gateway API, reachable from the host
# on 127.0.0.1 over HTTP and HTTPS. Idempotent; a second run takes seconds.
set -euo pipefail
# shellcheck source=ci/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"
PROG=ingress

INGRESS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NS=saga-ingress
TRAEFIK_REF="saga-stack.local/traefik:${TRAEFIK_VERSION}"
UPSTREAM_TRAEFIK_REF="traefik:${TRAEFIK_VERSION}"
TLS_SECRET=saga-ingress-tls
TLS_DIR="${SAGA_STACK_CACHE}/ingress-tls"
# Names a certificate made here; any other Secret of that name is the user's, left alone.
GENERATED=saga-stack.io/generated-by=ci-ingress

usage() {
  cat <<USAGE
Usage: ci/ingress/up.sh [--kubeconfig FILE] [--upstream-images] [--no-images] [--timeout SECONDS]

Brings up, in namespace ${NS}:
  Traefik ${TRAEFIK_VERSION}   image ${TRAEFIK_REF} (built from the Go module proxy; the
                      first build takes minutes); upstream: ${UPSTREAM_TRAEFIK_REF}
  IngressClass traefik, GatewayClass traefik, Gateway ${NS}/saga-gateway (listeners
                      http :8000 and https :8443, routes from every namespace)
  Gateway API CRDs    ${TRAEFIK_GATEWAY_API_VERSION}, standard channel (the version this Traefik
                      implements), from the Go module proxy, or the release's
                      standard-install.yaml when there is no Go toolchain
  TLS                 a local CA and a certificate for localhost, saga.localhost and
                      *.saga.localhost (kept in ${TLS_DIR}), as Secret
                      ${NS}/${TLS_SECRET}; the CA's certificate as ConfigMap
                      ${NS}/saga-ingress-ca. A Secret of that name that this script did
                      not make (your own certificate) is left as it is.
From the host: http://saga.localhost:${INGRESS_HTTP_PORT}/ and https://saga.localhost:${INGRESS_HTTPS_PORT}/
(the control-plane node publishes the NodePorts ${INGRESS_NODE_PORT_HTTP} and ${INGRESS_NODE_PORT_HTTPS}
there, from its creation; INGRESS_HTTP_PORT / INGRESS_HTTPS_PORT change them).

${ADDON_OPTIONS_HELP}

See ci/ingress/README.md. Remove it: kubectl delete -f ci/ingress/manifests/
USAGE
}

addon_args "$@"
need openssl
t0=$SECONDS
addon_image_refs "$INGRESS_DIR" "${TRAEFIK_REF}=${UPSTREAM_TRAEFIK_REF}"

[[ $ADDON_IMAGES == 1 ]] && addon_images traefik

gateway_api_crds() {
  local want="$TRAEFIK_GATEWAY_API_VERSION" have dir
  have="$("${K[@]}" get crd gateways.gateway.networking.k8s.io \
    -o jsonpath='{.metadata.annotations.gateway\.networking\.k8s\.io/bundle-version}' 2>/dev/null || true)"
  if [[ "$have" == "$want" ]]; then
    log "Gateway API CRDs ${want}: already installed"
  elif [[ -n "$have" ]]; then
    warn "Gateway API CRDs ${have} are installed, not ${want} (what Traefik ${TRAEFIK_VERSION} implements): left as they are"
  elif command -v go >/dev/null; then
    log "Gateway API CRDs ${want} (standard channel) from the Go module proxy"
    dir="$(GOFLAGS='' go mod download -json "sigs.k8s.io/gateway-api@${want}" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
    [[ -d "$dir/config/crd/standard" ]] || die "no config/crd/standard in sigs.k8s.io/gateway-api@${want}"
    # server-side: the CRDs are too large for the last-applied annotation
    "${K[@]}" apply --server-side --force-conflicts -f "$dir/config/crd/standard/" >/dev/null ||
      die "applying the Gateway API CRDs failed"
  else
    log "Gateway API CRDs ${want} (standard channel) from the project's release (no Go toolchain here)"
    "${K[@]}" apply --server-side --force-conflicts -f \
      "https://github.com/kubernetes-sigs/gateway-api/releases/download/${want}/standard-install.yaml" >/dev/null ||
      die "applying the Gateway API CRDs failed"
  fi
  "${K[@]}" wait --for=condition=Established --timeout="${ADDON_TIMEOUT}s" \
    crd/gatewayclasses.gateway.networking.k8s.io crd/gateways.gateway.networking.k8s.io \
    crd/httproutes.gateway.networking.k8s.io >/dev/null || die "the Gateway API CRDs are not Established"
}

# A CA valid 10 years (trust it once), a server certificate valid 397 days (what browsers
# accept), made again when it has less than 30 days left.
local_certificate() {
  mkdir -p "$TLS_DIR" && chmod 700 "$TLS_DIR"
  if [[ ! -s "$TLS_DIR/ca.crt" || ! -s "$TLS_DIR/ca.key" ]]; then
    log "TLS: a local CA in ${TLS_DIR}"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj "/CN=saga-stack local CA" -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.crt" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null ||
      die "openssl could not make the CA"
    rm -f "$TLS_DIR/tls.crt"
  fi
  if [[ -s "$TLS_DIR/tls.crt" ]] && openssl x509 -checkend 2592000 -noout -in "$TLS_DIR/tls.crt" >/dev/null; then
    return 0
  fi
  log "TLS: a certificate for localhost, saga.localhost, *.saga.localhost"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=saga.localhost" \
    -keyout "$TLS_DIR/tls.key" -out "$TLS_DIR/tls.csr" 2>/dev/null || die "openssl could not make a key"
  openssl x509 -req -in "$TLS_DIR/tls.csr" -CA "$TLS_DIR/ca.crt" -CAkey "$TLS_DIR/ca.key" \
    -CAcreateserial -days 397 -out "$TLS_DIR/tls.crt" -extfile <(printf '%s\n' \
      'subjectAltName=DNS:localhost,DNS:saga.localhost,DNS:*.saga.localhost,IP:127.0.0.1' \
      'extendedKeyUsage=serverAuth' 'basicConstraints=critical,CA:FALSE') 2>/dev/null ||
    die "openssl could not sign the certificate"
}

tls_secret() {
  local owner
  if "${K[@]}" -n "$NS" get secret "$TLS_SECRET" >/dev/null 2>&1; then
    owner="$("${K[@]}" -n "$NS" get secret "$TLS_SECRET" -o jsonpath='{.metadata.labels.saga-stack\.io/generated-by}')"
    [[ "$owner" == ci-ingress ]] || { log "TLS: Secret ${NS}/${TLS_SECRET} is yours: kept"; return 0; }
  fi
  local_certificate
  "${K[@]}" -n "$NS" create secret tls "$TLS_SECRET" --cert="$TLS_DIR/tls.crt" --key="$TLS_DIR/tls.key" \
    --dry-run=client -o yaml | "${K[@]}" label --local -f - "$GENERATED" -o yaml |
    "${K[@]}" apply -f - >/dev/null || die "creating Secret ${NS}/${TLS_SECRET} failed"
  "${K[@]}" -n "$NS" create configmap saga-ingress-ca --from-file=ca.crt="$TLS_DIR/ca.crt" \
    --dry-run=client -o yaml | "${K[@]}" apply -f - >/dev/null || die "creating ConfigMap ${NS}/saga-ingress-ca failed"
}

# The host's way in, through the control-plane node's published port: Traefik answers 404
# for a host no route names.
host_port_answers() {
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:${INGRESS_HTTP_PORT}/" || true)"
  [[ "$code" == 404 ]]
}

log "kubectl apply -f ci/ingress/manifests/ (namespace ${NS}; waits up to ${ADDON_TIMEOUT}s per Deployment)"
apply_manifests "$NS" "$ADDON_TIMEOUT" "${INGRESS_DIR}/manifests/00-namespace.yaml"
tls_secret
gateway_api_crds
apply_manifests "$NS" "$ADDON_TIMEOUT" "${INGRESS_DIR}/manifests/10-traefik.yaml" "${INGRESS_DIR}/manifests/20-gateway.yaml"
"${K[@]}" -n "$NS" wait --for=condition=Programmed gateway/saga-gateway --timeout="${ADDON_TIMEOUT}s" >/dev/null ||
  { "${K[@]}" -n "$NS" get gateway saga-gateway -o yaml >&2; die "Gateway ${NS}/saga-gateway is not Programmed"; }
log "  gateway/saga-gateway Programmed"
if host_port_answers; then
  log "ready in $((SECONDS - t0))s: http://saga.localhost:${INGRESS_HTTP_PORT}/ and https://saga.localhost:${INGRESS_HTTPS_PORT}/ (CA: ${TLS_DIR}/ca.crt)"
else
  warn "127.0.0.1:${INGRESS_HTTP_PORT} does not reach Traefik: this cluster's control-plane node was created without the published ports (make down && make up recreates it); in-cluster, Traefik is svc/traefik.${NS}"
fi
