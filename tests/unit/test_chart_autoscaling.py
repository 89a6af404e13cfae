"""The HPA: CPU and memory, and the saga backlog through the external metrics API."""

from __future__ import annotations

from typing import Any

import k8s_openapi
from helm import RELEASE, find, one, render

APP = f"{RELEASE}-saga-stack"


def hpa_metrics(values: dict[str, Any]) -> list[dict[str, Any]]:
    hpa = one(render(values={"autoscaling.enabled": True, **values}), "HorizontalPodAutoscaler")
    metrics: list[dict[str, Any]] = hpa["spec"]["metrics"]
    return metrics


def test_cpu_alone_by_default_so_no_adapter_is_needed() -> None:
    """Memory is left out: the app's memory does not follow its load, and a memory target
    only keeps pods after the load has gone (footprint_bench, scaling_bench)."""
    metrics = hpa_metrics({})
    assert [(m["type"], m["resource"]["name"]) for m in metrics] == [("Resource", "cpu")]


def test_a_memory_target_adds_memory() -> None:
    metrics = hpa_metrics({"autoscaling.targetMemoryUtilizationPercentage": 150})
    memory = [m["resource"] for m in metrics if m["resource"]["name"] == "memory"]
    assert memory == [
        {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 150}}
    ]


def test_backlog_metric_targets_the_releases_own_series_per_pod(k8s_schemas: list[str]) -> None:
    objects = render(values={"autoscaling.enabled": True, "autoscaling.backlog.enabled": True})
    metrics = one(objects, "HorizontalPodAutoscaler")["spec"]["metrics"]
    external = [m["external"] for m in metrics if m["type"] == "External"]
    assert external == [
        {
            "metric": {
                "name": "saga_consumer_backlog_messages",
                "selector": {"matchLabels": {"service": APP}},
            },
            "target": {"type": "AverageValue", "averageValue": "20"},
        }
    ]
    assert k8s_openapi.schema_errors(find(objects, "HorizontalPodAutoscaler"), k8s_schemas) == []


def test_backlog_alone_makes_a_valid_hpa(k8s_schemas: list[str]) -> None:
    metrics = hpa_metrics(
        {
            "autoscaling.backlog.enabled": True,
            "autoscaling.backlog.matchLabels": {"team": "orders"},
            "autoscaling.backlog.targetPerPod": "500m",
            "autoscaling.targetCPUUtilizationPercentage": 0,
            "autoscaling.targetMemoryUtilizationPercentage": 0,
        }
    )
    assert len(metrics) == 1
    assert metrics[0]["external"]["metric"]["selector"] == {"matchLabels": {"team": "orders"}}
    assert metrics[0]["external"]["target"]["averageValue"] == "500m"


def test_scale_up_is_immediate_and_scale_down_is_stabilised() -> None:
    hpa = one(render(values={"autoscaling.enabled": True}), "HorizontalPodAutoscaler")
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 60
