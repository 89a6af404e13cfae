"""The cluster's trace store (ci/tracing/: Jaeger), queried from the host through the ingress
with Jaeger's HTTP API, as a user's curl does it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tests.e2e.ingress import PORTS

HOST = "traces.saga.localhost"
NAMESPACE = "saga-tracing"


@dataclass(frozen=True, slots=True)
class Span:
    span_id: str
    parent_id: str | None
    name: str
    pod: str
    namespace: str
    service: str
    tags: dict[str, Any]


def _get(path: str, params: dict[str, str] | None = None) -> httpx.Response:
    with httpx.Client(
        base_url=f"http://127.0.0.1:{PORTS['http']}", headers={"host": HOST}, timeout=30
    ) as client:
        return client.get(path, params=params)


def _spans(trace: dict[str, Any]) -> list[Span]:
    """One trace of Jaeger's JSON answer as spans, each with its process's pod."""
    processes = {
        key: {t["key"]: t["value"] for t in p["tags"]} | {"service.name": p["serviceName"]}
        for key, p in trace["processes"].items()
    }
    spans = []
    for raw in trace["spans"]:
        process = processes[raw["processID"]]
        parents = [r["spanID"] for r in raw["references"] if r["refType"] == "CHILD_OF"]
        spans.append(
            Span(
                span_id=raw["spanID"],
                parent_id=parents[0] if parents else None,
                name=raw["operationName"],
                pod=str(process.get("k8s.pod.name", "")),
                namespace=str(process.get("k8s.namespace.name", "")),
                service=str(process["service.name"]),
                tags={t["key"]: t["value"] for t in raw["tags"]},
            )
        )
    return spans


def trace(trace_id: str) -> list[Span]:
    """The spans of one trace the store holds (none when it holds no such trace)."""
    response = _get(f"/api/traces/{trace_id}")
    if response.status_code == 404:
        return []
    response.raise_for_status()
    data = response.json()["data"]
    return _spans(data[0]) if data else []


def traces_with(
    operation: str, service: str = "saga-service", limit: int = 100
) -> list[list[Span]]:
    """The newest traces (at most `limit`) that hold a span named `operation`."""
    response = _get(
        "/api/traces",
        {"service": service, "operation": operation, "limit": str(limit), "lookback": "1h"},
    )
    response.raise_for_status()
    return [_spans(t) for t in response.json()["data"] or []]
