"""The cluster's log store (ci/logging/: VictoriaLogs fed by vlagent on every node), queried
from the host through the ingress as a user's curl does it: LogsQL over HTTP, one JSON
object per line in the answer."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.e2e.ingress import PORTS

HOST = "logs.saga.localhost"
NAMESPACE = "saga-logging"


def _client() -> httpx.Client:
    return httpx.Client(
        base_url=f"http://127.0.0.1:{PORTS['http']}", headers={"host": HOST}, timeout=30
    )


def query(logsql: str, limit: int = 1000) -> list[dict[str, Any]]:
    """The lines (each a dict of its fields) that `logsql` selects, at most `limit`."""
    with _client() as client:
        response = client.post("/select/logsql/query", data={"query": logsql, "limit": str(limit)})
    response.raise_for_status()
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def get(path: str) -> httpx.Response:
    with _client() as client:
        return client.get(path)


def quoted(value: str) -> str:
    """A LogsQL exact-match operand."""
    return json.dumps(value)


POD = "kubernetes.pod_name"


def saga_lines(field: str, value: str) -> list[dict[str, Any]]:
    """The lines whose `field` is `value` (saga_id, order_id, trace_id), oldest first."""
    return query(f"{field}:={quoted(value)} | sort by (_time)")


def app_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lines of the app's pods (not of the job workers, whose jobs run when the queue
    reaches them)."""
    component = "kubernetes.pod_labels.app.kubernetes.io/component"
    return [line for line in lines if line.get(component) == "app"]


def pods(lines: list[dict[str, Any]]) -> set[str]:
    return {str(line[POD]) for line in lines}


def completed_saga(saga_id: str) -> list[dict[str, Any]] | None:
    """The saga's lines once the store has the first and the last of the app's: the order
    taken and the step that completed it."""
    lines = saga_lines("saga_id", saga_id)
    placed = any(line.get("_msg") == "order placed" for line in lines)
    completed = any(line.get("state") == "COMPLETED" for line in lines)
    return lines if placed and completed else None
