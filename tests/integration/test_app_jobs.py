"""Background jobs end to end against real Postgres, Redis and Kafka: the order-document
job that a confirming saga asks for through the job outbox, its effect exactly once (a
duplicate delivery, a worker SIGKILLed after the effect), the failed set for a poison job,
graceful SIGTERM, and the reconciliation finding a planted inconsistency.

The queue is inspected in Redis with BullMQ's own key layout (`bull:<queue>:<job id>`
hashes, the `completed`/`failed` sorted sets, the `active` list), and poison jobs are
added with the `bullmq` producer as a foreign service would add them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from bullmq import Queue

from tests.integration import app_processes, services
from tests.integration.app_processes import AppProcess, AppStack, saga_service_argv

pytestmark = pytest.mark.timeout(300)

app_stack = app_processes.app_stack
app_stack_factory = app_processes.app_stack_factory

# Short lock and stall check so that a killed worker's job comes back within seconds.
FAST_STALLS = {"JOBS_LOCK_MS": "1500", "JOBS_STALLED_INTERVAL_MS": "500"}


class QueueView:
    """Read-only view of one BullMQ queue in Redis, plus a producer for test jobs."""

    def __init__(self, redis: services.RedisInstance, queue: str, prefix: str = "bull") -> None:
        self.redis = redis
        self.queue = queue
        self.base = f"{prefix}:{queue}"
        self.client = redis.client(decode_responses=True)

    def job(self, job_id: str) -> dict[str, str]:
        fields: dict[str, str] = self.client.hgetall(f"{self.base}:{job_id}")
        return fields

    def attempts_made(self, job_id: str) -> int:
        fields = self.job(job_id)
        return int(fields.get("atm") or fields.get("attemptsMade") or 0)

    def state_has(self, state: str, job_id: str) -> bool:
        """completed / failed / delayed are sorted sets; wait / active are lists."""
        key = f"{self.base}:{state}"
        if state in ("wait", "active"):
            return job_id in self.client.lrange(key, 0, -1)
        return self.client.zscore(key, job_id) is not None

    def count(self, state: str) -> int:
        key = f"{self.base}:{state}"
        if state in ("wait", "active"):
            return int(self.client.llen(key))
        return int(self.client.zcard(key))

    def add(self, name: str, data: dict[str, Any], **opts: Any) -> None:
        async def add() -> None:
            queue = Queue(self.queue, {"connection": self.redis.url})
            try:
                await queue.add(name, data, opts)
            finally:
                await queue.close()

        asyncio.run(add())

    def remove(self, job_id: str) -> None:
        async def remove() -> None:
            queue = Queue(self.queue, {"connection": self.redis.url})
            try:
                await queue.remove(job_id)
            finally:
                await queue.close()

        asyncio.run(remove())

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def queue_view(app_stack: AppStack, redis: services.RedisInstance) -> Iterator[QueueView]:
    view = QueueView(redis, app_stack.env["JOBS_QUEUE"])
    yield view
    view.close()


def place(app: AppProcess, customer: str, sku: str, quantity: int = 1) -> dict[str, str]:
    with app.client() as client:
        response = client.post(
            "/orders",
            json={
                "customer_id": customer,
                "items": [{"sku": sku, "quantity": quantity, "unit_price_cents": 250}],
            },
        )
    assert response.status_code == 202, response.text
    body: dict[str, str] = response.json()
    return body


def document_job_id(order_id: str) -> str:
    return f"order-document-{order_id}"


def documents(stack: AppStack, order_id: str) -> list[dict[str, Any]]:
    return stack.query("SELECT * FROM order_documents WHERE order_id = %s", (order_id,))


def wait_for(condition: Any, timeout: float, what: str) -> float:
    return services.wait_until(condition, timeout=timeout, what=what, max_interval=0.2)


def confirmed_order(stack: AppStack, app: AppProcess, sku: str) -> str:
    order = place(app, "alice", sku)
    assert stack.wait_saga(order["saga_id"])["state"] == "COMPLETED"
    return order["order_id"]


def test_a_confirmed_saga_gets_one_document_and_a_compensated_one_none(
    app_stack: AppStack, queue_view: QueueView
) -> None:
    (app,) = app_stack.start(1)
    (worker,) = app_stack.start_workers(1)
    app_stack.set_stock("DOC-1", 10)
    confirmed = place(app, "alice", "DOC-1", 2)
    declined = place(app, "decline-bob", "DOC-1")
    refused = place(app, "fail-confirm-carol", "DOC-1")
    for order in (confirmed, declined, refused):
        app_stack.wait_saga(order["saga_id"])
    job_id = document_job_id(confirmed["order_id"])
    wait_for(lambda: queue_view.state_has("completed", job_id), 30, "document job completed")

    (document,) = documents(app_stack, confirmed["order_id"])
    assert "ORDER CONFIRMATION" in document["body"]
    assert "customer: alice" in document["body"]
    assert "total: 5.00" in document["body"]
    assert document["job_id"] == job_id
    assert documents(app_stack, declined["order_id"]) == []
    assert documents(app_stack, refused["order_id"]) == []
    # The outbox asked for exactly one job, the confirmed order's, and it went to Redis.
    outbox = app_stack.query("SELECT job_id, enqueued_at FROM job_outbox")
    assert [row["job_id"] for row in outbox] == [job_id]
    assert outbox[0]["enqueued_at"] is not None
    assert queue_view.job(job_id)["returnvalue"] == '"created"'
    assert worker.metric("saga_jobs_processed_total", {"outcome": "completed"}) == 1
    assert worker.metric("saga_job_wait_seconds_count", {"name": "order-document"}) == 1
    wait_for(
        lambda: worker.metric("saga_jobs", {"state": "completed"}) == 1,
        10,
        "saga_jobs{state=completed} sampled",
    )

    # Enqueued again while it is kept: the same id is one job, nothing runs.
    queue_view.add(
        "order-document", {"order_id": confirmed["order_id"], "saga_id": "x"}, jobId=job_id
    )
    assert queue_view.count("wait") == 0
    kept = queue_view.job(job_id)
    assert json.loads(kept["data"])["saga_id"] == confirmed["saga_id"]  # not the new "x"
    assert kept["returnvalue"] == '"created"'
    # Delivered again after it was removed (a relay that crashed before its commit, with
    # the job already pruned): it runs, and the database keeps the effect to one.
    queue_view.remove(job_id)
    queue_view.add(
        "order-document",
        {"order_id": confirmed["order_id"], "saga_id": confirmed["saga_id"]},
        jobId=job_id,
    )
    wait_for(lambda: queue_view.state_has("completed", job_id), 30, "duplicate job completed")
    assert queue_view.job(job_id)["returnvalue"] == '"exists"'
    assert documents(app_stack, confirmed["order_id"]) == [document]
    assert worker.metric("saga_jobs_processed_total", {"outcome": "completed"}) == 2


def test_worker_sigkilled_after_the_effect_job_completes_once_after_the_stall_timeout(
    app_stack: AppStack, queue_view: QueueView
) -> None:
    (app,) = app_stack.start(1)
    app_stack.set_stock("KILL-1", 5)
    order_id = confirmed_order(app_stack, app, "KILL-1")
    job_id = document_job_id(order_id)
    wait_for(lambda: queue_view.state_has("wait", job_id), 15, "document job waiting")

    # The first worker holds the job for a minute after its effect: the kill lands after
    # the document was written and before the queue heard of it, the worst case.
    (first,) = app_stack.start_workers(
        1, JOBS_ACK_DELAY_MS="60000", JOBS_CONCURRENCY="1", **FAST_STALLS
    )
    wait_for(lambda: len(documents(app_stack, order_id)) == 1, 30, "document written")
    assert queue_view.state_has("active", job_id)
    # Two more jobs wait behind it (concurrency 1): the scaling signal must show them.
    for n in range(2):
        queue_view.add("not-a-job", {}, jobId=f"behind-{n}")

    def sampled() -> bool:
        return (
            first.metric("saga_jobs", {"state": "waiting"}) == 2
            and first.metric("saga_jobs", {"state": "active"}) == 1
        )

    wait_for(sampled, 10, "saga_jobs{state=waiting} 2 and {state=active} 1")
    first.process.kill()
    killed_at = time.monotonic()
    assert queue_view.state_has("active", job_id)

    (second,) = app_stack.start_workers(1, **FAST_STALLS)
    wait_for(lambda: queue_view.state_has("completed", job_id), 30, "stalled job completed")
    recovered_in = time.monotonic() - killed_at

    (document,) = documents(app_stack, order_id)
    assert document["rendered_by"].endswith("/attempt-1")  # the killed worker's effect
    fields = queue_view.job(job_id)
    assert fields["returnvalue"] == '"exists"'
    assert int(fields["stc"]) == 1  # handed back once by the stall check
    assert not queue_view.state_has("failed", job_id)
    wait_for(lambda: queue_view.count("failed") == 2, 10, "the two jobs behind it done")
    assert second.metric("saga_jobs_stalled_total") == 1
    assert second.metric("saga_jobs_processed_total", {"outcome": "completed"}) == 1
    # Bounded: the lock expiry (1.5 s) plus two stall checks, plus the second worker's
    # start; far below the minute the first worker would have held it.
    assert recovered_in < 20, recovered_in


def test_poison_job_ends_in_the_failed_set_with_its_reason_and_the_worker_goes_on(
    app_stack: AppStack, queue_view: QueueView
) -> None:
    (app,) = app_stack.start(1)
    (worker,) = app_stack.start_workers(1)
    missing = str(uuid.uuid4())
    poison_id = document_job_id(missing)
    queue_view.add(
        "order-document",
        {"order_id": missing, "saga_id": str(uuid.uuid4())},
        jobId=poison_id,
        attempts=3,
        backoff={"type": "exponential", "delay": 200},
    )
    queue_view.add("render-invoice", {"order_id": missing}, jobId="unknown-kind-1", attempts=3)
    # A good job after the poison ones: the worker keeps going.
    app_stack.set_stock("POISON-1", 5)
    order_id = confirmed_order(app_stack, app, "POISON-1")
    wait_for(
        lambda: queue_view.state_has("completed", document_job_id(order_id)),
        30,
        "the good job completed",
    )
    wait_for(lambda: queue_view.state_has("failed", poison_id), 30, "poison job failed")

    fields = queue_view.job(poison_id)
    assert queue_view.attempts_made(poison_id) == 3
    assert f"order {missing} not found" in fields["failedReason"]
    # Backoff 200 ms then 400 ms between the three attempts.
    assert int(fields["finishedOn"]) - int(fields["timestamp"]) >= 600
    # A job that can never succeed is not retried.
    wait_for(lambda: queue_view.state_has("failed", "unknown-kind-1"), 10, "unknown job failed")
    assert queue_view.attempts_made("unknown-kind-1") == 1
    assert "unknown job name 'render-invoice'" in queue_view.job("unknown-kind-1")["failedReason"]

    assert len(documents(app_stack, order_id)) == 1
    assert worker.process.alive()
    assert worker.metric("saga_jobs_processed_total", {"outcome": "retried"}) == 2
    assert worker.metric("saga_jobs_processed_total", {"outcome": "failed"}) == 2
    wait_for(
        lambda: worker.metric("saga_jobs", {"state": "failed"}) == 2,
        10,
        "saga_jobs{state=failed} sampled",
    )


def test_sigterm_lets_the_running_job_finish_and_exits(
    app_stack: AppStack, queue_view: QueueView
) -> None:
    (app,) = app_stack.start(1)
    (worker,) = app_stack.start_workers(1, JOBS_ACK_DELAY_MS="2000", SHUTDOWN_GRACE_SECONDS="10")
    app_stack.set_stock("TERM-1", 5)
    order_id = confirmed_order(app_stack, app, "TERM-1")
    job_id = document_job_id(order_id)
    wait_for(lambda: len(documents(app_stack, order_id)) == 1, 30, "document written")
    assert queue_view.state_has("active", job_id)

    worker.process.popen.send_signal(signal.SIGTERM)
    assert worker.process.popen.wait(timeout=15) == 0
    assert queue_view.state_has("completed", job_id)
    assert queue_view.job(job_id)["returnvalue"] == '"created"'
    assert '"jobs_finished": true' in worker.log()


def reconcile(stack: AppStack) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        saga_service_argv("reconcile"),
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    reports = report_lines(result.stdout)
    assert len(reports) == 1, result.stdout[-3000:] + result.stderr[-2000:]
    return result.returncode, reports[0]


def report_lines(stdout: str) -> list[dict[str, Any]]:
    """The report among the JSON log lines that share stdout."""
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("type") == "reconcile-report"]


def test_reconciliation_finds_a_planted_inconsistency_and_reports_it(
    app_stack: AppStack, queue_view: QueueView
) -> None:
    (app,) = app_stack.start(1)
    (worker,) = app_stack.start_workers(1, JOBS_METRICS_INTERVAL_SECONDS="0.5")
    app_stack.set_stock("REC-1", 10)
    confirmed = place(app, "alice", "REC-1", 2)
    declined = place(app, "decline-dave", "REC-1")
    for order in (confirmed, declined):
        app_stack.wait_saga(order["saga_id"])
    wait_for(lambda: len(documents(app_stack, confirmed["order_id"])) == 1, 30, "document written")

    code, report = reconcile(app_stack)
    assert (code, report["ok"], report["findings"]) == (0, True, []), report
    assert report["orders"] == 2
    assert set(report["counts"].values()) == {0}

    # Plant two breaks: the confirmed order's charge refunded behind the saga's back, and
    # a SKU reserving units that no saga holds.
    app_stack.query(
        "UPDATE payments SET status = 'REFUNDED' WHERE saga_id = %s RETURNING saga_id",
        (confirmed["saga_id"],),
    )
    app_stack.query("UPDATE stock SET reserved = reserved + 3 WHERE sku = 'REC-1' RETURNING sku")
    code, report = reconcile(app_stack)
    assert code == 1
    assert report["ok"] is False
    found = {(f["rule"], f["subject"]) for f in report["findings"]}
    assert found == {
        ("confirmed_order_charged_once", f"order:{confirmed['order_id']}"),
        ("stock_reserved_matches_reservations", "sku:REC-1"),
    }
    stored = app_stack.query(
        "SELECT rule, subject FROM reconciliation_findings WHERE run_id = %s", (report["run_id"],)
    )
    assert {(r["rule"], r["subject"]) for r in stored} == found

    def exported() -> bool:
        return (
            worker.metric("saga_reconcile_findings", {"rule": "confirmed_order_charged_once"}) == 1
            and worker.metric(
                "saga_reconcile_findings", {"rule": "stock_reserved_matches_reservations"}
            )
            == 1
        )

    wait_for(exported, 10, "findings exported by the worker")
    assert worker.metric("saga_reconcile_findings", {"rule": "stock_not_negative"}) == 0
    assert worker.metric("saga_reconcile_last_run_timestamp_seconds") > 0


def test_a_job_lost_with_the_queue_comes_back_through_the_reconciliation(
    app_stack: AppStack, queue_view: QueueView
) -> None:
    (app,) = app_stack.start(1)
    (worker,) = app_stack.start_workers(1)
    app_stack.set_stock("LOST-1", 5)
    order = confirmed_order(app_stack, app, "LOST-1")
    wait_for(lambda: len(documents(app_stack, order)) == 1, 30, "document written")
    # Redis lost its data (no persistence, a failover past the last writes): the queue's
    # keys are gone, and with them the job; its document never got written.
    keys = list(queue_view.client.scan_iter(f"{queue_view.base}:*"))
    assert keys
    queue_view.client.delete(*keys)
    app_stack.query("DELETE FROM order_documents WHERE order_id = %s RETURNING order_id", (order,))

    stack_now = {**app_stack.env, "RECONCILE_DOCUMENT_GRACE_SECONDS": "0"}
    code, report = reconcile(dataclasses.replace(app_stack, env=stack_now))
    assert code == 1
    assert [(f["rule"], f["subject"]) for f in report["findings"]] == [
        ("confirmed_order_has_document", f"order:{order}")
    ]
    assert report["document_jobs_requeued"] == 1
    # The app's job relay puts the job on the queue again; the worker writes the document.
    wait_for(lambda: len(documents(app_stack, order)) == 1, 30, "document written again")
    code, report = reconcile(dataclasses.replace(app_stack, env=stack_now))
    assert (code, report["findings"], report["document_jobs_requeued"]) == (0, [], 0), report
    assert worker.process.alive()


def test_jobs_on_sentinel_follow_a_failover(
    app_stack_factory: app_processes.StackFactory,
    redis_sentinel_group: services.SentinelGroup,
) -> None:
    group = redis_sentinel_group
    stack = app_stack_factory(group.env())
    (app,) = stack.start(1)
    (worker,) = stack.start_workers(1)
    stack.set_stock("SENTJ-1", 5)
    before = confirmed_order(stack, app, "SENTJ-1")
    wait_for(lambda: len(documents(stack, before)) == 1, 30, "document before the failover")

    old_master = group.current_master_address()
    group.kill_master()  # returns once every Sentinel names the promoted replica
    assert group.current_master_address() != old_master
    after = confirmed_order(stack, app, "SENTJ-1")
    wait_for(lambda: len(documents(stack, after)) == 1, 60, "document after the failover")
    assert worker.process.alive()
    assert worker.metric("saga_jobs_processed_total", {"outcome": "failed"}) == 0


def test_reconciliation_without_a_database_says_so_in_its_exit_code(app_stack: AppStack) -> None:
    dead = str(services.free_port())
    result = subprocess.run(
        saga_service_argv("reconcile"),
        env={**app_stack.env, "DATABASE_PORT": dead},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3, result.stderr[-2000:]
    assert report_lines(result.stdout) == []  # nothing to mistake for a clean run
    assert '"reconciliation failed"' in result.stdout


def test_a_worker_without_redis_stays_alive_not_ready_and_stops_on_sigterm(
    app_stack: AppStack,
) -> None:
    # Started by hand: start_workers waits for readiness, which this worker must not reach.
    port = services.free_port()
    proc = services.ManagedProcess(
        "worker-noredis",
        saga_service_argv("worker"),
        app_stack.workdir / "worker-noredis.log",
        env={**app_stack.env, "REDIS_PORT": str(services.free_port()), "PORT": str(port)},
    )
    worker = AppProcess("worker-noredis", port, proc)
    app_stack.processes.append(worker)

    def answers_not_ready() -> bool:
        response = httpx.get(worker.url + "/healthz/ready", timeout=5)
        return response.status_code == 503

    wait_for(answers_not_ready, 30, "worker /healthz/ready 503")
    body = httpx.get(worker.url + "/healthz/ready", timeout=5).json()
    assert body["checks"]["postgres"] == "ok"
    assert body["checks"]["redis"] != "ok"
    wait_for(lambda: "queue not reachable yet" in worker.log(), 30, "the worker waits for Redis")
    # Waiting for Redis is not death: the kubelet must not restart it in a loop.
    assert httpx.get(worker.url + "/healthz/live", timeout=5).status_code == 200
    assert 'saga_dependency_up{dependency="redis"} 0.0' in httpx.get(worker.url + "/metrics").text

    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(timeout=15) == 0, worker.log()[-3000:]
