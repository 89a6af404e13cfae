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

import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import (
    APP_SERVICE,
    InClusterProcess,
    client_pod,
    http_client,
    kubectl,
    kubectl_json,
    ready_pods,
    run_python_in,
    wait_for,
)

PROBE = (Path(__file__).parent / "probes" / "data_layer_probe.py").read_text()
REDIS_SELECTOR = "app.kubernetes.io/name=redis"
KAFKA_SELECTOR = "app.kubernetes.io/name=kafka"
RESULTS = Path(os.environ.get("SAGA_STACK_RESULTS", Path.home() / ".cache/saga-stack/results"))

# Orders placed at a steady pace from inside the cluster, the pace printed as it goes so
# the test can break something mid-run; then every order is waited on to a final state.
SAGA_DRIVER = """
import sys
sku, stock, count, pace = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
call("PUT", "/stock/" + sku, {"quantity": stock})
placed = []
for i in range(count):
    started = time.time()
    status, body, _ = call("POST", "/orders", {"customer_id": "ha-%d" % i, "items": [
        {"sku": sku, "quantity": 1, "unit_price_cents": 100}]})
    placed.append({"status": status, "order_id": (body or {}).get("order_id"), "at": started})
    print(json.dumps({"placed": i + 1, "status": status}), flush=True)
    time.sleep(max(0.0, pace - (time.time() - started)))
finals = [wait_final(p["order_id"], timeout=300) if p["order_id"] else "REFUSED" for p in placed]
_, level, _ = call("GET", "/stock/" + sku)
print(json.dumps({"placed_at": [p["at"] for p in placed], "http": [p["status"] for p in placed],
                  "finals": finals, "stock": level}), flush=True)
"""


def _record(name: str, figures: dict[str, Any]) -> None:
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


@pytest.fixture(scope="module")
def ha_client(ha_release: str) -> str:
    image = kubectl_json("get", "deployment", "-n", ha_release, APP_SERVICE)["spec"]["template"][
        "spec"
    ]["containers"][0]["image"]
    return client_pod(ha_release, "ha-client", image)


@pytest.fixture(scope="module")
def probe(ha_release: str) -> str:
    """A pod outside the release with the app's image, environment and data-layer client labels."""
    app = kubectl_json("get", "deployment", "-n", ha_release, APP_SERVICE)["spec"]["template"]
    container = app["spec"]["containers"][0]
    labels = {k: v for k, v in app["metadata"]["labels"].items() if k.startswith("saga-stack.io/")}
    return client_pod(
        ha_release,
        "ha-probe",
        container["image"],
        labels,
        env=container.get("env", []),
        env_from=container.get("envFrom", []),
    )


def redis_master_pod(namespace: str, probe: str) -> str:
    """The pod the Sentinels name as master (they announce `<pod>.<headless service>`)."""
    kubectl_out = kubectl(
        "exec", "-i", "-n", namespace, probe, "--", "python3", "-", "--master", stdin=PROBE
    )
    host: str = json.loads(kubectl_out.strip().splitlines()[-1])["host"]
    return host.split(".")[0]


def test_ha_release_runs_a_replicated_data_layer(ha_release: str, probe: str) -> None:
    redis = ready_pods(ha_release, REDIS_SELECTOR)
    kafka = ready_pods(ha_release, KAFKA_SELECTOR)
    assert len(redis) == 3, [p["metadata"]["name"] for p in redis]
    assert len(kafka) == 3, [p["metadata"]["name"] for p in kafka]
    assert redis_master_pod(ha_release, probe) in {p["metadata"]["name"] for p in redis}


def start_sagas(namespace: str, client: str, sku: str, stock: int, count: int) -> InClusterProcess:
    code = http_client() + SAGA_DRIVER
    driver = InClusterProcess(namespace, client, code, sku, str(stock), str(count), "0.25")
    driver.wait_line("the first 12 orders", lambda line: line.get("placed") == 12, timeout=120)
    return driver


def test_losing_the_redis_master_mid_run_promotes_a_replica_without_oversell(
    ha_release: str, ha_client: str, probe: str
) -> None:
    stock, count = 40, 70
    lock_probe = InClusterProcess(ha_release, probe, PROBE, "--only", "lock", "--seconds", "75")
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
    finals, level = summary["finals"], summary["stock"]
    confirmed = finals.count("CONFIRMED")
    assert summary["http"] == [202] * count, summary["http"]
    assert "PENDING" not in finals, f"sagas stuck: {finals.count('PENDING')}"
    assert confirmed <= stock, f"oversold: {confirmed} confirmed for a stock of {stock}"
    assert level["reserved"] == 0 and level["available"] + confirmed == stock, level
    after_loss = [
        final for final, at in zip(finals, summary["placed_at"], strict=True) if at > lost_at
    ]
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
    _record("redis_master_loss", figures)
    print(json.dumps(figures))


def test_losing_a_kafka_broker_mid_run_loses_no_event(
    ha_release: str, ha_client: str, probe: str
) -> None:
    count = 60
    produce_probe = InClusterProcess(
        ha_release, probe, PROBE, "--only", "produce", "--seconds", "75", "--read-back"
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
    assert summary["http"] == [202] * count, summary["http"]
    assert summary["finals"] == ["CONFIRMED"] * count, summary["finals"]
    assert read_back["missing"] == [], f"acknowledged but not readable: {read_back['missing']}"
    assert read_back["acknowledged"] > 0
    wait_for(
        f"{victim} back and Ready",
        lambda: victim in {p["metadata"]["name"] for p in ready_pods(ha_release, KAFKA_SELECTOR)},
        timeout=300,
    )
    figures = {"broker": victim, "produce": seen, "read_back": read_back}
    _record("kafka_broker_loss", figures)
    print(json.dumps(figures))


def test_the_app_reaches_every_data_layer_service(ha_release: str, ha_client: str) -> None:
    ready = run_python_in(
        ha_release,
        ha_client,
        http_client() + 'print(json.dumps(call("GET", "/healthz/ready")[:2]))',
    )
    assert ready[0] == 200, ready
