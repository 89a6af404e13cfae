"""What the failover tests share: the data-layer probe, who leads each replicated store,
the outage a client saw, and where the figures are written
($SAGA_STACK_RESULTS/e2e-failover.json, default ~/.cache/saga-stack/results)."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

from tests.e2e.cluster import RELEASE, kubectl, kubectl_json
from tests.e2e.releases import RESULTS

PROBE = (Path(__file__).parent / "probes" / "data_layer_probe.py").read_text()
REDIS_SELECTOR = "app.kubernetes.io/name=redis"
KAFKA_SELECTOR = "app.kubernetes.io/name=kafka"
POSTGRES_SELECTOR = "app.kubernetes.io/name=postgresql"
PRIMARY_SERVICE = f"{RELEASE}-postgresql"
PATRONICTL = ["patronictl", "-c", "/etc/patroni/patroni.yml"]


def record(name: str, figures: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "e2e-failover.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[name] = {**figures, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.write_text(json.dumps(data, indent=2) + "\n")


def outage(lines: list[dict[str, Any]], kind: str, since: float) -> dict[str, Any]:
    """What a client saw of `kind` after `since`: failed attempts, the last failure, the first
    success after it, and the longest stretch between two successes."""
    attempts = [line for line in lines if line.get("kind") == kind and line["end"] >= since]
    failures = [a for a in attempts if not a["ok"]]
    successes = [a["end"] for a in attempts if a["ok"]]
    last_failure = max((a["end"] for a in failures), default=since)
    recovered = min((t for t in successes if t > last_failure), default=None)
    before = [line["end"] for line in lines if line.get("kind") == kind and line["ok"]]
    ends = sorted({max((t for t in before if t < since), default=since), *successes})
    gaps = [b - a for a, b in itertools.pairwise(ends)]
    return {
        "attempts": len(attempts),
        "failed_attempts": len(failures),
        "errors": sorted({a["error"] for a in failures}),
        "first_success_after_last_failure_s": None if recovered is None else recovered - since,
        "longest_gap_between_successes_s": max(gaps, default=0.0),
    }


def redis_master_pod(namespace: str, probe: str) -> str:
    """The pod the Sentinels name as master (they announce `<pod>.<headless service>`)."""
    kubectl_out = kubectl(
        "exec", "-i", "-n", namespace, probe, "--", "python3", "-", "--master", stdin=PROBE
    )
    host: str = json.loads(kubectl_out.strip().splitlines()[-1])["host"]
    return host.split(".")[0]


def postgres_primary_ip(namespace: str) -> str | None:
    """The address Patroni published for the primary Service (None while it has none)."""
    endpoints = kubectl_json("get", "endpoints", "-n", namespace, PRIMARY_SERVICE)
    addresses = [a["ip"] for s in endpoints.get("subsets") or [] for a in s.get("addresses", [])]
    assert len(addresses) <= 1, f"the primary Service points at {addresses}"
    return addresses[0] if addresses else None


def postgres_pod_with_ip(namespace: str, ip: str) -> dict[str, Any]:
    pods = kubectl_json("get", "pods", "-n", namespace, "-l", POSTGRES_SELECTOR)["items"]
    return next(p for p in pods if p["status"].get("podIP") == ip)


def patroni_members(namespace: str, pod: str) -> list[dict[str, Any]]:
    """`patronictl list` as seen from `pod`: Member, Role, State, TL, Lag in MB."""
    out = kubectl("exec", "-n", namespace, pod, "-c", "postgresql", "--", *PATRONICTL, "list",
                  "-f", "json")  # fmt: skip
    listed: list[dict[str, Any]] = json.loads(out)
    return listed
