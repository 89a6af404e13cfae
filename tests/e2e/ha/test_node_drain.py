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
from tests.e2e.cluster import RELEASE, kubectl, kubectl_json, wait_for
from tests.e2e.failover import (
    move_redis_master_to,
    postgres_pod_with_ip,
    postgres_primary_ip,
    record,
    redis_master_pod,
    start_sagas,
)


def test_draining_the_node_of_both_leaders_fails_no_request(
    ha_release: str, ha_client: str, probe: str
) -> None:
    stock, count = 1000, 200
    old_ip: str = wait_for("a primary", lambda: postgres_primary_ip(ha_release), timeout=60)
    old_primary = postgres_pod_with_ip(ha_release, old_ip)
    node = old_primary["spec"]["nodeName"]
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
    whole = Whole(Target(ha_release, RELEASE, app_selector(RELEASE), ""))
    wait_for("the release whole again after the uncordon", whole, timeout=480, every=3)
