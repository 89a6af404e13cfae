"""The replicated data layer under loss, on the local-ha release (values/local-ha.yaml, the
`ha_release` fixture shared with the fault campaign):
deleting the Redis master while sagas run promotes a replica, the app follows it and
nothing is oversold or stuck; deleting a Kafka broker while sagas run loses no event.

An in-cluster probe (probes/data_layer_probe.py, with the app's image and environment)
takes a lock and produces to Kafka every 100 ms, so the outage a client sees is measured
as well as survived. The figures go to the test report and to
$SAGA_STACK_RESULTS (default ~/.cache/saga-stack/results)/e2e-failover.json.
"""

from __future__ import annotations

import json
import time

from tests.e2e.cluster import (
    InClusterProcess,
    http_client,
    kubectl,
    ready_pods,
    run_python_in,
    wait_for,
)
from tests.e2e.failover import (
    KAFKA_SELECTOR,
    PROBE,
    REDIS_SELECTOR,
    outage,
    record,
    redis_master_pod,
    start_sagas,
)


def test_ha_release_runs_a_replicated_data_layer(ha_release: str, probe: str) -> None:
    redis = ready_pods(ha_release, REDIS_SELECTOR)
    kafka = ready_pods(ha_release, KAFKA_SELECTOR)
    assert len(redis) == 3, [p["metadata"]["name"] for p in redis]
    assert len(kafka) == 3, [p["metadata"]["name"] for p in kafka]
    assert redis_master_pod(ha_release, probe) in {p["metadata"]["name"] for p in redis}


def test_losing_the_redis_master_mid_run_promotes_a_replica_without_oversell(
    ha_release: str, ha_client: str, probe: str
) -> None:
    stock, count = 40, 70
    lock_probe = InClusterProcess(ha_release, probe, PROBE, "--only", "lock", "--seconds", "45")
    lock_probe.wait_line("a first lock", lambda line: line.get("ok") is True, timeout=60)
    driver = start_sagas(ha_release, ha_client, "ha-redis-sku", stock, count)

    old_master = redis_master_pod(ha_release, probe)
    lost_at = time.time()
    kubectl("delete", "pod", "-n", ha_release, old_master, "--wait=false")
    new_master = wait_for(
        "the Sentinels to name another master",
        lambda: (m := redis_master_pod(ha_release, probe)) != old_master and m,
        timeout=120,
    )
    promoted_after = time.time() - lost_at

    summary = driver.finish(timeout=600)[-1]
    seen = outage(lock_probe.finish(timeout=120), "lock", lost_at)
    placed, finals, level = summary["placed"], summary["finals"], summary["stock"]
    confirmed = finals.count("CONFIRMED")
    assert [p["status"] for p in placed] == [202] * count, placed
    assert "PENDING" not in finals, f"sagas stuck: {finals.count('PENDING')}"
    assert confirmed <= stock, f"oversold: {confirmed} confirmed for a stock of {stock}"
    assert level["reserved"] == 0 and level["available"] + confirmed == stock, level
    after_loss = [final for final, p in zip(finals, placed, strict=True) if p["at"] > lost_at]
    assert "CONFIRMED" in after_loss, "no order placed after the failover was confirmed"
    assert seen["first_success_after_last_failure_s"] is not None, seen
    figures = {
        "old_master": old_master,
        "new_master": new_master,
        "promotion_seen_after_s": round(promoted_after, 2),
        "lock": seen,
        "confirmed": confirmed,
        "cancelled": finals.count("CANCELLED"),
    }
    record("redis_master_loss", figures)
    print(json.dumps(figures))


def test_losing_a_kafka_broker_mid_run_loses_no_event(
    ha_release: str, ha_client: str, probe: str
) -> None:
    count = 60
    produce_probe = InClusterProcess(
        ha_release, probe, PROBE, "--only", "produce", "--seconds", "45", "--read-back"
    )
    produce_probe.wait_line("a first produce", lambda line: line.get("ok") is True, timeout=90)
    driver = start_sagas(ha_release, ha_client, "ha-kafka-sku", 1000, count)

    victim = sorted(p["metadata"]["name"] for p in ready_pods(ha_release, KAFKA_SELECTOR))[0]
    lost_at = time.time()
    kubectl("delete", "pod", "-n", ha_release, victim, "--wait=false")

    summary = driver.finish(timeout=600)[-1]
    lines = produce_probe.finish(timeout=180)
    seen = outage(lines, "produce", lost_at)
    read_back = next(line for line in lines if line.get("kind") == "read-back")
    assert [p["status"] for p in summary["placed"]] == [202] * count, summary["placed"]
    assert summary["finals"] == ["CONFIRMED"] * count, summary["finals"]
    assert read_back["missing"] == [], f"acknowledged but not readable: {read_back['missing']}"
    assert read_back["acknowledged"] > 0
    wait_for(
        f"{victim} back and Ready",
        lambda: victim in {p["metadata"]["name"] for p in ready_pods(ha_release, KAFKA_SELECTOR)},
        timeout=300,
    )
    figures = {"broker": victim, "produce": seen, "read_back": read_back}
    record("kafka_broker_loss", figures)
    print(json.dumps(figures))


def test_the_app_reaches_every_data_layer_service(ha_release: str, ha_client: str) -> None:
    ready = run_python_in(
        ha_release,
        ha_client,
        http_client() + 'print(json.dumps(call("GET", "/healthz/ready")[:2]))',
    )
    assert ready[0] == 200, ready
