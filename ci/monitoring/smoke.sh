#!/usr/bin/env bash
# Checks of the monitoring stack (ci/monitoring/up.sh) on the offline cluster: Prometheus
# scrapes the app pods, the external metrics API serves their backlog per namespace, and
# an HPA scales on it. All traffic stays inside the cluster.
set -euo pipefail
# shellcheck source=ci/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"
PROG=monitoring-smoke

MON=saga-monitoring
PROBE_NS=saga-monitoring-smoke
METRIC=saga_consumer_backlog_messages
EXT=/apis/external.metrics.k8s.io/v1beta1
PROM=/api/v1/namespaces/${MON}/services/prometheus:web/proxy

usage() {
  cat <<USAGE
Usage: ci/monitoring/smoke.sh [--kubeconfig FILE] [--namespace NS] [--no-hpa]

  1. Prometheus and prometheus-adapter Ready, APIService v1beta1.external.metrics.k8s.io Available
  2. every Ready app pod of NS (default saga) is a target that is up, labelled
     namespace/service/job/pod as a ServiceMonitor's target would be
  3. GET ${EXT}/namespaces/NS/${METRIC} returns one value,
     also with labelSelector service=<the app Service>
  4. (not with --no-hpa) end to end, in a namespace of its own (${PROBE_NS}, deleted
     afterwards): a stand-in app Service with the chart's labels whose pod serves a fixed
     backlog of 42, and an HPA on the external metric (averageValue 20 per pod) over
     a 1-replica Deployment: the API must answer exactly 42 for that namespace (no other
     namespace's backlog) and the HPA must want 3 replicas and get them.
Checks 2-3 are skipped when NS has no app pods. Prints PASS/FAIL per check; exit 1 on a FAIL.
USAGE
}
kubeconfig="${KUBECONFIG:-${CLUSTER_STATE}/kubeconfig}" ns=saga hpa=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --kubeconfig) kubeconfig="${2:?}"; shift ;;
    --namespace) ns="${2:?}"; shift ;;
    --no-hpa) hpa=0 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done
kubectl_bin="${SAGA_STACK_CACHE}/k8s-build/${K8S_VERSION}/bin/kubectl"
[[ -x "$kubectl_bin" ]] || kubectl_bin="$(command -v kubectl || true)"
[[ -n "$kubectl_bin" ]] || die "no kubectl"
K=("$kubectl_bin" --kubeconfig "$kubeconfig")
pass=0 fail=0
check() { # check NAME CMD...
  local name="$1"; shift
  if "$@" >/dev/null; then log "PASS: $name"; pass=$((pass + 1)); else log "FAIL: $name"; fail=$((fail + 1)); fi
}
# retry SECONDS CMD...: until CMD succeeds, every 3s
retry() {
  local end=$((SECONDS + $1)); shift
  until "$@"; do [[ $SECONDS -lt $end ]] || return 1; sleep 3; done
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); $1"; }

stack_ready() {
  "${K[@]}" -n "$MON" rollout status deploy/prometheus --timeout=60s >/dev/null &&
    "${K[@]}" -n "$MON" rollout status deploy/prometheus-adapter --timeout=60s >/dev/null &&
    "${K[@]}" wait --for=condition=Available apiservice/v1beta1.external.metrics.k8s.io --timeout=60s >/dev/null
}
check "Prometheus, prometheus-adapter Ready; external metrics APIService Available" stack_ready

# --- 2, 3: the release in $ns ---------------------------------------------------
app_sel="app.kubernetes.io/component=app,app.kubernetes.io/part-of=saga-stack"
mapfile -t pods < <("${K[@]}" -n "$ns" get pods -l "$app_sel" -o json 2>/dev/null | json '
for p in d["items"]:
    if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])):
        print(p["metadata"]["name"])' 2>/dev/null || true)
targets_up() { # every Ready app pod of $ns is up, with the ServiceMonitor labels ($svc's
  # targets only: the job workers' Service is scraped too)
  local up
  up="$("${K[@]}" get --raw "${PROM}/api/v1/query?query=up%7Bnamespace%3D%22${ns}%22%2Cservice%3D%22${svc}%22%7D" | json '
for r in d["data"]["result"]:
    m = r["metric"]
    if r["value"][1] == "1" and m.get("service") and m.get("job") == m["service"] and m.get("endpoint") == "http":
        print(m["pod"])' | sort)"
  [[ "$up" == "$(printf '%s\n' "${pods[@]}" | sort)" ]]
}
backlog_of() { # backlog_of NS [SELECTOR]: prints the one value the API returns
  local q=""
  [[ -n "${2:-}" ]] && q="?labelSelector=$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$2")"
  "${K[@]}" get --raw "${EXT}/namespaces/$1/${METRIC}${q}" 2>/dev/null | json '
items = d["items"]
assert len(items) == 1, items
print(items[0]["value"])' 2>/dev/null
}
if [[ ${#pods[@]} -eq 0 ]]; then
  log "SKIP: no Ready app pods in namespace $ns (no release there): checks 2-3"
else
  svc="$("${K[@]}" -n "$ns" get svc -l "$app_sel" -o jsonpath='{.items[0].metadata.name}')"
  check "Prometheus scrapes all ${#pods[@]} app pods of $ns (up, labels namespace/service/job/pod)" retry 60 targets_up
  check "external metric ${METRIC} for namespace $ns: $(backlog_of "$ns" || echo none)" retry 60 backlog_of "$ns"
  check "... selected by service=$svc: $(backlog_of "$ns" "service=$svc" || echo none)" \
    retry 30 backlog_of "$ns" "service=$svc"
fi

# --- 4: an HPA on the external metric, end to end ------------------------------------
if [[ $hpa == 1 ]]; then
  cleanup() { "${K[@]}" delete namespace "$PROBE_NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true; }
  trap cleanup EXIT
  "${K[@]}" delete namespace "$PROBE_NS" --ignore-not-found --wait=true --timeout=120s >/dev/null
  bb="saga-stack/busybox:${DEBIAN_SUITE}"
  "${K[@]}" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Namespace
metadata:
  name: ${PROBE_NS}
  labels: {pod-security.kubernetes.io/enforce: restricted}
---
# a stand-in for the chart's app: its Service labels and port name, a fixed backlog
apiVersion: v1
kind: Service
metadata:
  name: backlog
  namespace: ${PROBE_NS}
  labels:
    app.kubernetes.io/name: saga-stack
    app.kubernetes.io/instance: smoke
    app.kubernetes.io/component: app
    app.kubernetes.io/part-of: saga-stack
spec:
  selector: {app: backlog}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: backlog, namespace: ${PROBE_NS}}
spec:
  replicas: 1
  selector: {matchLabels: {app: backlog}}
  template:
    metadata: {labels: {app: backlog}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 65534, seccompProfile: {type: RuntimeDefault}}
      volumes: [{name: www, emptyDir: {}}]
      containers:
        - name: app
          image: ${bb}
          imagePullPolicy: Never
          command: ["sh", "-c", "printf '# TYPE ${METRIC} gauge\\\\n${METRIC} 42\\\\n' > /www/metrics; exec httpd -f -p 8080 -h /www"]
          ports: [{name: http, containerPort: 8080}]
          volumeMounts: [{name: www, mountPath: /www}]
          resources: {requests: {cpu: 5m, memory: 8Mi}, limits: {cpu: 50m, memory: 32Mi}}
          securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, readOnlyRootFilesystem: true}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: worker, namespace: ${PROBE_NS}}
spec:
  replicas: 1
  selector: {matchLabels: {app: worker}}
  template:
    metadata: {labels: {app: worker}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 65534, seccompProfile: {type: RuntimeDefault}}
      terminationGracePeriodSeconds: 1
      containers:
        - name: worker
          image: ${bb}
          imagePullPolicy: Never
          command: ["sleep", "3600"]
          resources: {requests: {cpu: 5m, memory: 8Mi}, limits: {cpu: 50m, memory: 32Mi}}
          securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, readOnlyRootFilesystem: true}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: worker, namespace: ${PROBE_NS}}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: worker}
  minReplicas: 1
  maxReplicas: 4
  metrics:
    - type: External
      external:
        metric:
          name: ${METRIC}
          selector: {matchLabels: {service: backlog}}
        target: {type: AverageValue, averageValue: "20"}
YAML
  t0=$SECONDS
  is42() { [[ "$(backlog_of "$PROBE_NS" service=backlog)" == 42 ]]; }
  check "the probe namespace's backlog is exactly 42 (its own series only)" retry 90 is42
  log "  after $((SECONDS - t0))s"
  hpa_wants3() {
    [[ "$("${K[@]}" -n "$PROBE_NS" get hpa worker -o jsonpath='{.status.desiredReplicas}')" == 3 ]] &&
      [[ "$("${K[@]}" -n "$PROBE_NS" get deploy worker -o jsonpath='{.status.readyReplicas}')" == 3 ]]
  }
  check "the HPA reads 42 (target 20 per pod) and scales the worker 1 -> 3" retry 120 hpa_wants3
  log "  after $((SECONDS - t0))s: $("${K[@]}" -n "$PROBE_NS" get hpa worker -o jsonpath='backlog {.status.currentMetrics[0].external.current.averageValue} per pod at {.status.currentReplicas} replicas, wants {.status.desiredReplicas}' 2>/dev/null)"
fi

log "${pass} passed, ${fail} failed"
[[ $fail == 0 ]]
