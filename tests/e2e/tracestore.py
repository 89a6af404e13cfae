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


def trace(trace_id: str) -> list[Span]:
    """The spans of one trace the store holds (none when it holds no such trace)."""
    with httpx.Client(
        base_url=f"http://127.0.0.1:{PORTS['http']}", headers={"host": HOST}, timeout=30
    ) as client:
        response = client.get(f"/api/traces/{trace_id}")
    if response.status_code == 404:
        return []
    response.raise_for_status()
    data = response.json()["data"]
    if not data:
        return []
    processes = {
        key: {t["key"]: t["value"] for t in p["tags"]} | {"service.name": p["serviceName"]}
        for key, p in data[0]["processes"].items()
    }
    spans = []
    for raw in data[0]["spans"]:
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
