"""Autoscaling helpers shared by the e2e scaling test and the scaling benchmark: the
settings of a backlog-only HPA, the chart's load-generator Jobs, and reads of Prometheus
and the external metrics API through the API server (no port-forward)."""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any

from tests.e2e.cluster import APP_SELECTOR, APP_SERVICE, kubectl, kubectl_json, ready_pods

MONITORING = "saga-monitoring"
PROMETHEUS = f"/api/v1/namespaces/{MONITORING}/services/prometheus:web/proxy"
EXTERNAL_API = "external.metrics.k8s.io/v1beta1"
BACKLOG = "saga_consumer_backlog_messages"
WORK = "saga_consumer_work_messages"
LOAD_GENERATOR = "app.kubernetes.io/component=load-generator"
TARGET_PER_POD = 40
# Of the 8 consumer slots of a pod (the chart's pool of 10 connections, less 2): scale out
# once they are three-quarters busy on average, before any backlog forms.
WORK_TARGET_PER_POD = 6
TARGET_CPU_PERCENT = 70
# The app's memory stays near 55 % of its request whatever the load: at 80 % the HPA stopped
# at 3 pods after a load step and never scaled back in. 150 % scales out only on memory that
# really grows.
TARGET_MEMORY_PERCENT = 150

# Scale in after 30 s of a low backlog instead of the profile's 2 minutes, to keep the
# test short; scale out as the chart does by default.
BEHAVIOR = {
    "scaleUp": {
        "stabilizationWindowSeconds": 0,
        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 15}],
    },
    "scaleDown": {
        "stabilizationWindowSeconds": 30,
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
    },
}


def scaling_values(max_replicas: int = 3) -> list[str]:
    """The settings of a backlog-only HPA, shared with the scaling benchmark."""
    return [
        "--set", "replicas=1",
        "--set", f"autoscaling.maxReplicas={max_replicas}",
        "--set", "autoscaling.targetCPUUtilizationPercentage=0",
        "--set", "autoscaling.targetMemoryUtilizationPercentage=0",
        "--set", "autoscaling.backlog.enabled=true",
        "--set", f"autoscaling.backlog.targetPerPod={TARGET_PER_POD}",
        "--set-json", f"autoscaling.behavior={json.dumps(BEHAVIOR)}",
        "--set-json", 'extraEnv=[{"name": "SAGA_STEP_DELAY_MS", "value": "100"}]',
        # The app's scaling alone (the job workers scale on a signal of their own).
        "--set", "jobs.enabled=false",
    ]  # fmt: skip


def work_scaling_values(max_replicas: int = 3) -> list[str]:
    """The backlog HPA reading the leading signal instead: backlog + messages running."""
    return [
        *scaling_values(max_replicas),
        "--set", f"autoscaling.backlog.metricName={WORK}",
        "--set", f"autoscaling.backlog.targetPerPod={WORK_TARGET_PER_POD}",
    ]  # fmt: skip


def resource_scaling_values(max_replicas: int = 3) -> list[str]:
    """An HPA on CPU and memory only (the chart's targets, percent of requests), with no
    step delay: the app is then bound by its CPU, the signal this HPA reads."""
    return [
        *scaling_values(max_replicas),
        "--set", f"autoscaling.targetCPUUtilizationPercentage={TARGET_CPU_PERCENT}",
        "--set", f"autoscaling.targetMemoryUtilizationPercentage={TARGET_MEMORY_PERCENT}",
        "--set", "autoscaling.backlog.enabled=false",
        "--set-json", "extraEnv=[]",
    ]  # fmt: skip


def prometheus(query: str, at: float | None = None) -> list[dict[str, Any]]:
    """An instant query (at `at`, wall-clock seconds, or now) through the API server proxy."""
    params = {"query": query, **({"time": f"{at:.3f}"} if at is not None else {})}
    path = f"{PROMETHEUS}/api/v1/query?{urllib.parse.urlencode(params)}"
    answer = json.loads(kubectl("get", "--raw", path))
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def prometheus_range(
    query: str, start: float, end: float, step: float
) -> list[tuple[float, float]]:
    """(time, value) of the first series a range query returns; [(start, 0)] when none."""
    params = {"query": query, "start": start, "end": end, "step": step}
    path = f"{PROMETHEUS}/api/v1/query_range?{urllib.parse.urlencode(params)}"
    result = json.loads(kubectl("get", "--raw", path))["data"]["result"]
    return [(float(t), float(v)) for t, v in result[0]["values"]] if result else [(start, 0.0)]


def load_jobs(namespace: str) -> list[dict[str, Any]]:
    """The chart's load-generator Jobs in the namespace."""
    jobs: list[dict[str, Any]] = kubectl_json("get", "jobs", "-n", namespace, "-l", LOAD_GENERATOR)[
        "items"
    ]
    return jobs


def finished(job: dict[str, Any]) -> bool:
    return any(
        c["type"] in ("Complete", "Failed") and c["status"] == "True"
        for c in job["status"].get("conditions", [])
    )


QUANTITY_SUFFIXES = {
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30,
}  # fmt: skip


def quantity(text: str) -> float:
    """A Kubernetes quantity as the metrics APIs print it: 250m, 40, 2k, 1.5M, 1Gi, 1234n."""
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", text)
    if match is None or match.group(2) not in QUANTITY_SUFFIXES:
        raise ValueError(f"not a quantity: {text!r}")
    return float(match.group(1)) * QUANTITY_SUFFIXES[match.group(2)]


def external_backlog(namespace: str, metric: str = BACKLOG) -> float:
    """The app's gauge `metric` summed over its pods, as the HPA reads it."""
    selector = urllib.parse.quote(f"service={APP_SERVICE}")
    path = f"/apis/{EXTERNAL_API}/namespaces/{namespace}/{metric}?labelSelector={selector}"
    items = json.loads(kubectl("get", "--raw", path))["items"]
    assert items, f"the adapter serves no {metric} series for {namespace}"
    return sum(quantity(i["value"]) for i in items)


def app_pods_ready(namespace: str) -> int:
    return len(ready_pods(namespace, APP_SELECTOR))
