# shellcheck shell=bash disable=SC2034  # sourced: the variables are read by the scripts that source it
# The one place where every pinned tool version lives.
# Sourced by the scripts under ci/ and read by tests (KEY=value lines only).
HELM_VERSION=v4.3.1
HELM3_VERSION=v3.22.0
UV_VERSION=0.13.8
KAFKA_VERSION=4.1.1
SCALA_BINARY_VERSION=2.13
# The offline cluster's Kubernetes (ci/cluster/): the newest 1.3x patch on the Go
# module proxy on 2026-11-26. Add-on versions: the recipes in ci/cluster/build-addons.sh.
K8S_VERSION=v1.37.2
# Kubernetes minor lines the rendered chart is validated against (newest three).
K8S_SCHEMA_VERSIONS="v1.35.4 v1.36.3 v1.37.2"
# CRD schemas (openAPIV3Schema) for the validator, from Go module zips
# (gateway-api v1.7.0 needs go >= 1.27 to download, so the newest v1.6 patch).
GATEWAY_API_VERSION=v1.6.3
PROMETHEUS_OPERATOR_VERSION=v0.85.0
# Offline container images (ci/images/build.sh): Debian suites of the rootfs,
# image tags under saga-stack.local/. Tags carry the Debian package's major
# line, not its point release (the archive moves point releases on).
DEBIAN_SUITE=bookworm
DEBIAN_NEXT_SUITE=trixie
PYTHON_IMAGE_TAG=3.11-bookworm
POSTGRES_MAJOR=17
POSTGRES_SUITE=trixie
POSTGRES_IMAGE_TAG=17-patroni-trixie
# Redis 7.0 from bookworm: BSD-3-Clause. Redis 7.4 and later are RSALv2/SSPLv1
# (8.0 and later also AGPLv3), which this project does not ship.
REDIS_SUITE=bookworm
REDIS_IMAGE_TAG=7.0-bookworm
KAFKA_JAVA_MAJOR=17
PROMETHEUS_SUITE=trixie
PROMETHEUS_IMAGE_TAG=2.53-trixie
# prometheus-adapter (external metrics API for the HPA, ci/monitoring/): built from
# the Go module proxy by ci/cluster/build-addons.sh, image
# saga-stack.local/prometheus-adapter:<this version> by ci/images/build.sh.
PROMETHEUS_ADAPTER_VERSION=v0.12.0
# The ingress and Gateway API controller (ci/ingress/): Traefik built from the Go module
# proxy by ci/cluster/build-addons.sh (the newest release whose whole module graph the
# proxy serves), image saga-stack.local/traefik:<this version>; online, the upstream image.
TRAEFIK_VERSION=v3.6.12
# The Gateway API CRDs installed in the cluster: the version this Traefik implements
# (its go.mod), standard channel, from that module's zip.
TRAEFIK_GATEWAY_API_VERSION=v1.4.0
# Central logs (ci/logging/): VictoriaLogs and its node agent vlagent, both built from this
# one Go module by ci/cluster/build-addons.sh, images saga-stack.local/victoria-logs and
# saga-stack.local/vlagent:<this version>; online, the upstream images of the same tag.
VICTORIALOGS_VERSION=v1.52.2
# Traces (ci/tracing/): Jaeger's all-in-one (the v2 binary, cmd/jaeger: OTLP in, memory
# store, query API and UI), built from the Go module proxy by ci/cluster/build-addons.sh,
# image saga-stack.local/jaeger:<this version>; online, the upstream image of the same release.
JAEGER_VERSION=v1.75.0
# The same release's upstream image tag: Jaeger tags each release twice, v1.x on the Go
# module and 2.x on the v2 binary's image.
JAEGER_UPSTREAM_TAG=2.12.0
# kind creates the cluster in both modes: offline from our node image, built by
# ci/cluster/build-addons.sh from the Go module proxy; online, the kind on PATH (>= 0.31).
KIND_VERSION=v0.33.0
# Online path (stock kind with upstream images). Not exercised on our registry-less CI
# machines.
KIND_NODE_TAG=v1.35.0
