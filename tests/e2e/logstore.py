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
