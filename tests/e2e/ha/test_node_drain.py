"""Draining a worker for maintenance while orders run, on the local-ha release: `kubectl
drain` of the worker holding the PostgreSQL primary and the Redis master (the test moves
the master there first), a Kafka broker and app pods. The drain evicts through the
Eviction API, so each PodDisruptionBudget decides what may go; the data-layer pods, one per
worker by hard anti-affinity, wait for the node to come back (uncordon).

No request may fail: a planned disruption is the case every part of the stack has a hand-over
for (Patroni's switchover, the Redis master's preStop, Kafka's controlled shutdown, the app's
drain). The figures go to e2e-failover.json under `node_drain`.
"""

from __future__ import annotations

import json
import time

from tests.chaos.faults import Target
from tests.chaos.runner import Whole, app_selector
from tests.e2e.cluster import APP_SELECTOR, RELEASE, kubectl, kubectl_json, ready_pods, wait_for
from tests.e2e.failover import (
    POSTGRES_SELECTOR,
    move_redis_master_to,
    patroni_members,
    postgres_primary_ip,
    record,
    redis_master_pod,
    start_sagas,
    switch_postgres_primary_to,
)


def drain_target(namespace: str, client: str) -> str:
    """A worker with an app pod, made to hold the PostgreSQL primary: the leader's node if it
    has an app pod, else the synchronous standby's (switched over to; two app pods on three
    workers always cover one of the two)."""
    whole = Whole(Target(namespace, RELEASE, app_selector(RELEASE), client))
    wait_for("the release whole", whole, timeout=300, every=3)
    app_nodes = {p["spec"]["nodeName"] for p in ready_pods(namespace, APP_SELECTOR)}
    servers = kubectl_json("get", "pods", "-n", namespace, "-l", POSTGRES_SELECTOR)["items"]
    node_of: dict[str, str] = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in servers}
    roles = {m["Member"]: m["Role"] for m in patroni_members(namespace, next(iter(node_of)))}
    for role in ("Leader", "Sync Standby"):
        member = next(m for m, r in roles.items() if r == role)
        if node_of[member] in app_nodes:
            switch_postgres_primary_to(namespace, member)
            # The old leader must be a synchronous standby again before the drain.
            wait_for("the release whole after the switchover", whole, timeout=300, every=3)
            return node_of[member]
    raise AssertionError(f"no app pod beside the leader or the synchronous standby: {roles}")


def test_draining_the_node_of_both_leaders_fails_no_request(
    ha_release: str, ha_client: str, probe: str
) -> None:
    # 30 s of orders at 4/s: the drain starts 3 s in and takes about 10 s.
    stock, count = 1000, 120
    node = drain_target(ha_release, ha_client)
    old_ip: str = wait_for("a primary", lambda: postgres_primary_ip(ha_release), timeout=60)
    old_master = move_redis_master_to(ha_release, probe, node)
    on_node = sorted(
        p["metadata"]["name"]
        for p in kubectl_json("get", "pods", "-n", ha_release)["items"]
        if p["spec"].get("nodeName") == node
    )

    driver = start_sagas(ha_release, ha_client, "drain-sku", stock, count)
    started = time.time()
    try:
        kubectl(
            "drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=300s",
            timeout=330,
        )  # fmt: skip
        drained_after = time.time() - started
        summary = driver.finish(timeout=900)[-1]
    finally:
        kubectl("uncordon", node)

    placed, finals, level = summary["placed"], summary["finals"], summary["stock"]
    after = [p for p in placed if p["at"] >= started]
    failed = [p for p in after if p["status"] != 202]
    acknowledged = [f for p, f in zip(placed, finals, strict=True) if p["status"] == 202]
    new_ip = postgres_primary_ip(ha_release)
    figures = {
        "node": node,
        "pods_on_node": on_node,
        "drain_seconds": round(drained_after, 1),
        "requests_during_and_after_drain": len(after),
        "failed_requests": len(failed),
        "failed_statuses": sorted({str(p["status"]) for p in failed}),
        # A request that met the primary's switch waits for the new one (docs/app-contract.md).
        "slowest_request_s": round(max((p["end"] - p["at"] for p in after), default=0.0), 2),
        "postgres_primary_moved": new_ip not in (None, old_ip),
        "redis_master_moved": redis_master_pod(ha_release, probe) != old_master,
        "acknowledged": len(acknowledged),
        "confirmed": acknowledged.count("CONFIRMED"),
    }
    record("node_drain", figures)
    print(json.dumps(figures))
    assert not failed, f"{len(failed)} of {len(after)} requests failed during the drain: {figures}"
    assert set(acknowledged) <= {"CONFIRMED", "CANCELLED"}, "an acknowledged saga is not final"
    assert level["reserved"] == 0 and stock - level["available"] == acknowledged.count(
        "CONFIRMED"
    ), level

    # The next tests start from a whole release: the drained node's pods back and Ready.
    whole = Whole(Target(ha_release, RELEASE, app_selector(RELEASE), ha_client))
    wait_for("the release whole again after the uncordon", whole, timeout=480, every=3)
