"""Background jobs on the session's release (values/local.yaml turns them on; the release's
workers hold each job 1 s after its effect and scale in fast: values/jobs-under-test.yaml).

A burst of confirmed orders queues one document job each: the HPA adds workers on the
queue's waiting jobs (Prometheus -> prometheus-adapter -> external metric), a worker is
force-deleted mid-job, every order still gets exactly one document, a surviving worker
hands the lost worker's jobs back (stall check), and the workers scale back in. The
reconciliation CronJob runs on its schedule and the workers export its result.
"""

from __future__ import annotations

import json
import secrets
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.chaos.faults import container_pid, on_node
from tests.e2e.cluster import (
    APP_SERVICE,
    in_cluster,
    kubectl,
    kubectl_json,
    ready_pods,
    wait_for,
)
from tests.e2e.releases import RESULTS
from tests.e2e.scaling import prometheus

WORKER = f"{APP_SERVICE}-worker"
RECONCILE = f"{APP_SERVICE}-reconcile"
WORKER_SELECTOR = "app.kubernetes.io/name=saga-stack,app.kubernetes.io/component=worker"
BURST = 120


def app_sql(namespace: str, sql: str) -> Any:
    """One query's rows, run from an app pod (which the database's NetworkPolicy admits)
    with the app's own settings."""
    code = textwrap.dedent(
        f"""
        import json, psycopg
        from saga_service.adapters.postgres.db import make_conninfo
        from saga_service.settings import load_settings
        with psycopg.connect(make_conninfo(load_settings())) as conn:
            print(json.dumps(conn.execute({sql!r}).fetchall(), default=str))
        """
    )
    out = kubectl("exec", "-n", namespace, f"deploy/{APP_SERVICE}", "--", "python3", "-c", code)
    return json.loads(out.strip().splitlines()[-1])


def value(query: str) -> float:
    """The first series' value of an instant query, 0 when there is none."""
    series = prometheus(query)
    return float(series[0]["value"][1]) if series else 0.0


def queue(namespace: str, state: str) -> float:
    """The queue's jobs in `state` as the workers last reported them (0 when no series)."""
    return value(f'max(saga_jobs{{namespace="{namespace}", service="{WORKER}", state="{state}"}})')


def ready_workers(namespace: str) -> list[dict[str, Any]]:
    return ready_pods(namespace, WORKER_SELECTOR)


def worker_replicas(namespace: str) -> int:
    """The workers the HPA currently asks for."""
    return int(kubectl_json("get", "deployment", "-n", namespace, WORKER)["spec"]["replicas"])


def timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def reconcile_every_minute(release: str) -> Iterator[float]:
    """The reconciliation CronJob on a one-minute schedule while this module runs (the
    release's own is every 15 minutes); yields when the schedule changed."""
    cronjob = kubectl_json("get", "cronjob", "-n", release, RECONCILE)
    schedule = cronjob["spec"]["schedule"]
    changed_at = time.time()
    kubectl("patch", "cronjob", "-n", release, RECONCILE, "--type=merge",
            "-p", json.dumps({"spec": {"schedule": "* * * * *"}}))  # fmt: skip
    try:
        yield changed_at
    finally:
        kubectl("patch", "cronjob", "-n", release, RECONCILE, "--type=merge",
                "-p", json.dumps({"spec": {"schedule": schedule}}))  # fmt: skip


def test_a_burst_scales_workers_out_a_lost_worker_loses_and_repeats_nothing_then_in(
    release: str, client: str, reconcile_every_minute: float
) -> None:
    wait_for(
        "one worker (the HPA's minimum) while the queue is idle",
        lambda: worker_replicas(release) == 1,
    )
    tag = f"jobs-{secrets.token_hex(3)}"
    placed = in_cluster(
        release,
        client,
        f"""
        call("PUT", "/stock/{tag}", {{"quantity": {BURST}}})
        orders = []
        for n in range({BURST}):
            _, body, _ = call("POST", "/orders", {{"customer_id": "{tag}-%d" % n, "items": [
                {{"sku": "{tag}", "quantity": 1, "unit_price_cents": 100}}]}})
            orders.append(body["order_id"])
        print(json.dumps(orders))
        """,
    )
    assert len(placed) == BURST
    placed_at = time.monotonic()

    # More waiting jobs than one worker's share: the HPA adds workers.
    wait_for(
        "the HPA to ask for more workers",
        lambda: worker_replicas(release) >= 2,
        timeout=180,
        every=1,
    )
    asked_after = time.monotonic() - placed_at
    scaled = wait_for(
        "a second Ready worker while jobs wait",
        lambda: len(ready_workers(release)) >= 2 and queue(release, "waiting") > 0,
        timeout=180,
        every=1,
    )
    assert scaled
    ready_after = time.monotonic() - placed_at
    # The oldest worker has been taking jobs since the burst began: it is mid-job. Its
    # process is SIGKILLed (a graceful stop would let the job finish), then its pod is
    # force-deleted, as a lost node's pods are.
    victim = min(ready_workers(release), key=lambda p: p["metadata"]["creationTimestamp"])
    assert queue(release, "waiting") > 0, "the queue drained before a worker could be lost"
    node, pid = container_pid(victim)
    on_node(node, "kill", "-KILL", str(pid))
    kubectl(
        "delete", "pod", "-n", release, victim["metadata"]["name"], "--grace-period=0", "--force"
    )

    documents_sql = (
        "SELECT count(*), count(DISTINCT d.order_id) FROM order_documents d"
        f" JOIN orders o USING (order_id) WHERE o.customer_id LIKE '{tag}-%'"
    )
    counts = wait_for(
        f"a document for each of the {BURST} orders",
        lambda: (rows := app_sql(release, documents_sql)) and rows[0][0] == BURST and rows,
        timeout=300,
        every=5,
    )
    drained_at = time.monotonic()
    assert counts == [[BURST, BURST]]
    confirmed = app_sql(
        release,
        f"SELECT count(*) FROM orders WHERE customer_id LIKE '{tag}-%' AND status = 'CONFIRMED'",
    )
    assert confirmed == [[BURST]]
    # The lost worker's jobs were handed back by a survivor's stall check, and run again
    # without a second document (the count above).
    stalled = f'sum(max_over_time(saga_jobs_stalled_total{{namespace="{release}"}}[10m]))'
    wait_for(
        "a surviving worker to report the lost worker's jobs as stalled",
        lambda: value(stalled) >= 1,
        timeout=120,
    )
    assert queue(release, "failed") == 0

    # Nothing waits any more: back to one worker.
    wait_for(
        "the workers to scale back in to one", lambda: worker_replicas(release) == 1, timeout=240
    )
    # The workers report the queue every few seconds and a scaled-in one's last report
    # lingers until Prometheus drops its target: the figure settles, it is not read once.
    wait_for(
        "the workers to report no job waiting",
        lambda: queue(release, "waiting") == 0,
        timeout=120,
    )
    figures = {
        "burst_jobs": BURST,
        "seconds_from_burst_to_more_workers_asked": round(asked_after, 1),
        "seconds_from_burst_to_second_worker_ready": round(ready_after, 1),
        "seconds_from_burst_to_every_document": round(drained_at - placed_at, 1),
        "seconds_from_last_document_to_one_worker": round(time.monotonic() - drained_at, 1),
        "stalled_jobs_handed_back": value(stalled),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "e2e-jobs.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))


def test_the_reconciliation_runs_on_schedule_and_the_workers_export_it(
    release: str, reconcile_every_minute: float
) -> None:
    def finished_run() -> dict[str, Any] | None:
        for job in kubectl_json("get", "jobs", "-n", release)["items"]:
            owners = job["metadata"].get("ownerReferences", [])
            started = job["status"].get("startTime")
            if not (
                any(o["kind"] == "CronJob" and o["name"] == RECONCILE for o in owners)
                and started
                and timestamp(started) >= reconcile_every_minute - 1
            ):
                continue
            if job["status"].get("failed"):
                name = job["metadata"]["name"]
                logs = kubectl("logs", "-n", release, f"job/{name}", "--tail=50", check=False)
                raise AssertionError(f"the scheduled reconciliation {name} failed:\n{logs}")
            if job["status"].get("succeeded"):
                return job  # type: ignore[no-any-return]
        return None

    run = wait_for("a scheduled reconciliation to succeed", finished_run, timeout=180, every=5)
    assert run["status"]["succeeded"] == 1
    query = f'max(saga_reconcile_last_run_timestamp_seconds{{namespace="{release}"}})'
    wait_for(
        "the workers to export the run's time",
        lambda: value(query) >= reconcile_every_minute - 1,
        timeout=120,
    )
    findings = prometheus(f'max by (rule) (saga_reconcile_findings{{namespace="{release}"}}) > 0')
    assert findings == [], f"the reconciliation found broken invariants: {findings}"
