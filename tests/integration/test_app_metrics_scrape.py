"""Every metric a rule or dashboard of the chart uses is one the app really exports, checked
against a scrape of the running app and of a job worker (not only their registry, as
tests/unit does): after real sagas (completed, declined, refused at confirmation, contending
for one SKU, one held up by a lock held elsewhere), a poison message and the confirmed
orders' document jobs, GET /metrics of both is parsed with prometheus_client's parser and
every metric name the rendered PrometheusRule and dashboards query must be there.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from saga_service.adapters.lock import lock_key

from tests.integration import app_processes, services
from tests.integration.app_processes import AppProcess, AppStack
from tests.unit import chart_metrics, helm

pytestmark = pytest.mark.timeout(300)

# Fixtures of app_processes, made visible to this module.
app_stack = app_processes.app_stack
app_stack_factory = app_processes.app_stack_factory

LOCK_ACQUIRE_TIMEOUT_MS = 300


def place(app: AppProcess, customer: str, sku: str) -> str:
    response = httpx.post(
        f"{app.url}/orders",
        json={
            "customer_id": customer,
            "items": [{"sku": sku, "quantity": 1, "unit_price_cents": 5}],
        },
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["saga_id"])


def scrape(process: AppProcess) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """sample name -> {sorted labels: value}, from the process' own /metrics."""
    response = httpx.get(f"{process.url}/metrics", timeout=10)
    assert response.status_code == 200
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def family_types(*processes: AppProcess) -> dict[str, str]:
    types: dict[str, str] = {}
    for process in processes:
        text = httpx.get(f"{process.url}/metrics", timeout=10).text
        types.update({f.name: f.type for f in text_string_to_metric_families(text)})
    return types


async def send_poison(stack: AppStack) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.env["KAFKA_BOOTSTRAP_SERVERS"])
    await producer.start()
    try:
        await producer.send_and_wait(stack.topic, value=b"not an event", key=b"poison-scrape")
    finally:
        await producer.stop()


def test_every_metric_rules_and_dashboards_use_is_in_a_scrape_of_the_app(
    app_stack: AppStack, redis: services.RedisInstance
) -> None:
    (app,) = app_stack.start(1, LOCK_ACQUIRE_TIMEOUT_MS=str(LOCK_ACQUIRE_TIMEOUT_MS))
    # The queue's series (rules, the jobs panels) are the worker's.
    (worker,) = app_stack.start_workers(1)
    app_stack.set_stock("SCRAPE-A", 100)
    app_stack.set_stock("SCRAPE-HOT", 100)
    app_stack.set_stock("SCRAPE-HELD", 10)

    sagas = [
        place(app, "alice", "SCRAPE-A"),  # completed
        place(app, "decline-bob", "SCRAPE-A"),  # payment declined: compensated
        place(app, "fail-confirm-carol", "SCRAPE-A"),  # refund, release, cancel
    ]
    # Contention: 12 orders for one SKU at once, so steps wait for its lock.
    with ThreadPoolExecutor(max_workers=12) as pool:
        sagas += pool.map(lambda i: place(app, f"hot-{i}", "SCRAPE-HOT"), range(12))
    # A lock held elsewhere for longer than LOCK_ACQUIRE_TIMEOUT_MS: acquisitions time out,
    # then the saga completes once the holder's TTL has passed.
    client = redis.client()
    try:
        assert client.set(lock_key("SCRAPE-HELD"), "test-holder", nx=True, px=1500)
        sagas.append(place(app, "dave", "SCRAPE-HELD"))
        app_processes.wait_for(
            lambda: app.metric("saga_lock_acquire_failures_total", {"reason": "timeout"}) >= 1,
            timeout=30,
            what="a lock acquisition timing out",
        )
    finally:
        client.close()
    asyncio.run(send_poison(app_stack))
    states = {s: app_stack.wait_saga(s, timeout=90)["state"] for s in sagas}
    assert sorted(states.values()).count("COMPENSATED") == 2, states
    app_processes.wait_for(
        lambda: app.metric("saga_dead_lettered_total") >= 1, timeout=30, what="the poison message"
    )
    # Every confirmed order's document job has run, and the worker sampled the queue.
    confirmed = len(sagas) - 2
    app_processes.wait_for(
        lambda: worker.metric("saga_jobs_processed_total", {"outcome": "completed"}) >= confirmed,
        timeout=60,
        what=f"the worker to complete {confirmed} document jobs",
    )
    app_processes.wait_for(
        lambda: {"saga_jobs", "saga_reconcile_findings"} <= set(scrape(worker)),
        timeout=30,
        what="the worker to sample the queue and the latest reconciliation",
    )
    time.sleep(1.5)  # the recovery sweep refreshes the database-wide gauges

    used = chart_metrics.app_metrics_used(helm.render(extra=chart_metrics.MONITORING_API))
    assert len(used) >= 10, sorted(used)
    scraped = scrape(app)
    # Both processes register every metric; each reports what it does, so presence is
    # checked over both and the values below are the app's.
    present = set(scraped) | set(scrape(worker))
    missing = {name: sorted(where) for name, where in used.items() if name not in present}
    assert not missing, (
        f"{len(missing)} metrics used by the chart are not in a scrape of the app and worker: "
        + "; ".join(
            f"{name} (used by {', '.join(where)})" for name, where in sorted(missing.items())
        )
    )

    # Histograms: the _bucket a rule or panel uses comes with its _sum and _count.
    types = family_types(app, worker)
    for name in used:
        if name.endswith("_bucket"):
            base = name.removesuffix("_bucket")
            assert types.get(base) == "histogram", f"{name}: {base} is a {types.get(base)}"
            assert {f"{base}_sum", f"{base}_count"} <= present, base

    # And the series carry what we just did.
    def total(name: str, **labels: str) -> float:
        return sum(value for key, value in scraped[name].items() if set(labels.items()) <= set(key))

    assert total("saga_started_total") == len(sagas)
    assert total("saga_completed_total") == len(sagas) - 2
    assert total("saga_compensated_total") == 2
    assert total("saga_lock_acquire_failures_total", reason="timeout") >= 1
    assert total("saga_lock_acquire_failures_total", reason="redis_error") == 0  # a 0 series
    assert total("saga_dead_lettered_total", reason="malformed") == 1
    assert total("saga_end_to_end_duration_seconds_count", final_state="COMPENSATED") == 2
    assert total("saga_lock_wait_seconds_count") >= len(sagas)
    assert total("saga_in_flight") == 0
