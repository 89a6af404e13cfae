"""What the failover tests share: the data-layer probe, who leads each replicated store,
the outage a client saw, and where the figures are written
($SAGA_STACK_RESULTS/e2e-failover.json, default ~/.cache/saga-stack/results)."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

from tests.e2e.cluster import (
    RELEASE,
    InClusterProcess,
    http_client,
    kubectl,
    kubectl_json,
    wait_for,
)
from tests.e2e.releases import RESULTS

PROBE = (Path(__file__).parent / "probes" / "data_layer_probe.py").read_text()
REDIS_SELECTOR = "app.kubernetes.io/name=redis"
KAFKA_SELECTOR = "app.kubernetes.io/name=kafka"
POSTGRES_SELECTOR = "app.kubernetes.io/name=postgresql"
PRIMARY_SERVICE = f"{RELEASE}-postgresql"
PATRONICTL = ["patronictl", "-c", "/etc/patroni/patroni.yml"]

# Orders at a steady pace; a request that fails at the socket (an app pod lost with its node,
# a timeout) is recorded as not acknowledged instead of stopping the run. Then every
# acknowledged order is read back until it is final.
SAGA_DRIVER = """
import sys
sku, stock, count, pace = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])

def attempt(method, path, body=None):
    try:
        return call(method, path, body)
    except Exception as exc:
        return None, {"error": type(exc).__name__}, {}

call("PUT", "/stock/" + sku, {"quantity": stock})
placed = []
for i in range(count):
    started = time.time()
    status, body, _ = attempt("POST", "/orders", {"customer_id": sku + "-%d" % i, "items": [
        {"sku": sku, "quantity": 1, "unit_price_cents": 100}]})
    order_id = (body or {}).get("order_id") if status == 202 else None
    placed.append({"status": status, "order_id": order_id, "at": started, "end": time.time()})
    print(json.dumps({"placed": i + 1, "status": status}), flush=True)
    time.sleep(max(0.0, pace - (time.time() - started)))

def final(order_id, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, body, _ = attempt("GET", "/orders/" + order_id)
        if status == 200 and body["status"] != "PENDING":
            return body["status"]
        if status == 404:
            return "MISSING"
        time.sleep(0.5)
    return "PENDING"

finals = [final(p["order_id"]) if p["order_id"] else None for p in placed]
_, level, _ = attempt("GET", "/stock/" + sku)
print(json.dumps({"placed": placed, "finals": finals, "stock": level}), flush=True)
"""


def start_sagas(namespace: str, client: str, sku: str, stock: int, count: int) -> InClusterProcess:
    """SAGA_DRIVER at 4 orders/s, once its first 12 orders are placed."""
    code = http_client() + SAGA_DRIVER
    driver = InClusterProcess(namespace, client, code, sku, str(stock), str(count), "0.25")
    driver.wait_line("the first 12 orders", lambda line: line.get("placed") == 12, timeout=120)
    return driver


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


def patroni_config(namespace: str, pod: str) -> str:
    """The cluster's dynamic configuration (YAML), as Patroni keeps it in its DCS."""
    return kubectl("exec", "-n", namespace, pod, "-c", "postgresql", "--", *PATRONICTL,
                   "show-config")  # fmt: skip


def release_healthy(namespace: str) -> bool:
    """Every StatefulSet and Deployment of the release has all its pods Ready again."""
    sets = kubectl_json("get", "statefulsets,deployments", "-n", namespace)["items"]
    return all(s["status"].get("readyReplicas", 0) == s["spec"]["replicas"] for s in sets)


def redis_pods_by_node(namespace: str) -> dict[str, str]:
    pods = kubectl_json("get", "pods", "-n", namespace, "-l", REDIS_SELECTOR)["items"]
    return {p["spec"]["nodeName"]: p["metadata"]["name"] for p in pods}


def redis_cli(namespace: str, pod: str, container: str, *argv: str) -> str:
    return kubectl("exec", "-n", namespace, pod, "-c", container, "--", "redis-cli", *argv).strip()


def sentinel_replica_priorities(namespace: str, sentinel_pod: str) -> dict[str, str]:
    """Pod name -> replica priority, as the Sentinel in `sentinel_pod` last read them
    (`SENTINEL REPLICAS`: one flat key, value list per replica, named `<pod>.<service>:port`)."""
    lines = redis_cli(
        namespace, sentinel_pod, "sentinel", "-p", "26379", "sentinel", "replicas", "mymaster"
    ).splitlines()
    replicas: list[dict[str, str]] = []
    for key, value in zip(lines[::2], lines[1::2], strict=False):
        if key == "name":
            replicas.append({})
        if replicas:
            replicas[-1][key] = value
    return {r["name"].split(".")[0]: r.get("slave-priority", "") for r in replicas}


def move_redis_master_to(namespace: str, probe: str, node: str) -> str:
    """Makes the Redis pod on `node` the master (a Sentinel failover, with the other replica
    made unpromotable for it), so that one node loss takes both leaders."""
    by_node = redis_pods_by_node(namespace)
    target = by_node[node]
    if redis_master_pod(namespace, probe) == target:
        return target
    others = [pod for n, pod in by_node.items() if n != node]
    master = redis_master_pod(namespace, probe)
    bystanders = [pod for pod in others if pod != master]
    for pod in bystanders:
        redis_cli(namespace, pod, "redis", "config", "set", "replica-priority", "0")
    try:
        # A Sentinel reads a replica's priority from its INFO, every 10 s: a failover asked
        # before it saw the new ones could still promote a bystander (seen once).
        wait_for(
            f"the Sentinel on {target} to see {bystanders} unpromotable",
            lambda: all(
                sentinel_replica_priorities(namespace, target).get(pod) == "0" for pod in bystanders
            ),
            timeout=60,
        )
        failover = ["-p", "26379", "sentinel", "failover", "mymaster"]
        answer = redis_cli(namespace, target, "sentinel", *failover)
        assert answer == "OK", f"SENTINEL FAILOVER answered {answer!r}"
        wait_for(
            f"{target} to be the Redis master",
            lambda: redis_master_pod(namespace, probe) == target,
            timeout=90,
        )
    finally:
        for pod in bystanders:
            redis_cli(namespace, pod, "redis", "config", "set", "replica-priority", "100")
    return target


def switch_postgres_primary_to(namespace: str, member: str) -> None:
    """A planned switchover (Patroni's) to `member`, which must be the synchronous standby
    in synchronous mode; returns once the primary Service names it."""
    listed = patroni_members(namespace, member)
    leader = next(m["Member"] for m in listed if m["Role"] == "Leader")
    if leader == member:
        return
    kubectl(
        "exec", "-n", namespace, member, "-c", "postgresql", "--", *PATRONICTL,
        "switchover", "--leader", leader, "--candidate", member, "--force",
    )  # fmt: skip
    target_ip = kubectl_json("get", "pod", "-n", namespace, member)["status"]["podIP"]
    wait_for(
        f"the primary Service on {member}",
        lambda: postgres_primary_ip(namespace) == target_ip,
        timeout=120,
    )
