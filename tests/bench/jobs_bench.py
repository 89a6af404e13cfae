"""Background jobs benchmark (a command, not a test).

    python -m tests.bench.jobs_bench [--jobs 1500] [--workers 1,2,4] [--concurrency 4]
                                     [--out bench-results]

Starts PostgreSQL, Redis and Kafka on loopback through the integration harness (Kafka only
because every command of the app wants its settings), stores `--jobs` confirmed orders,
then for each worker count: a fresh queue, one order-document job per order put on it in
one round trip, that many `saga-service worker` processes started together, and the clock
runs until every order has its document. Reports jobs/s (from the first document to the
last) and the queue-to-start latency of the jobs (p50/p95/p99, from the enqueue time
BullMQ stores with each job to the document's creation), the Redis round-trip ceiling
measured in the same run, and the ratio of the best run to one worker.

The workers' scale-out reaction time in a cluster is measured by the e2e tier
(tests/e2e/test_jobs.py, written to $SAGA_STACK_RESULTS/e2e-jobs.json).

Writes bench-results/jobs-bench.json and bench-results/jobs-bench.png. Everything stays on
loopback, bounded in time and count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from saga_loadgen.stats import percentile
from saga_service.adapters.job_queue import JobQueue
from saga_service.domain.jobs import order_document_job
from saga_service.settings import Settings

from tests.bench.saga_bench import redis_ops_per_s
from tests.integration import services
from tests.integration.app_processes import AppStack, make_stack

REPO = services.REPO_ROOT
RUN_TIMEOUT_SECONDS = 600


def store_confirmed_orders(stack: AppStack, count: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(order id, saga id) of `count` confirmed one-item orders, written straight into the
    tables the document job reads (the sagas themselves are the saga bench's subject)."""
    orders = [(uuid.uuid4(), uuid.uuid4()) for _ in range(count)]
    with stack.connect() as conn:
        conn.execute(
            "INSERT INTO orders (order_id, saga_id, customer_id, total_cents, status)"
            " SELECT o, s, 'bench-' || left(o::text, 8), 500, 'CONFIRMED'"
            " FROM unnest(%s::uuid[], %s::uuid[]) AS t (o, s)",
            ([o for o, _ in orders], [s for _, s in orders]),
        )
        conn.execute(
            "INSERT INTO order_items (order_id, sku, quantity, unit_price_cents)"
            " SELECT o, 'BENCH-SKU', 1, 500 FROM unnest(%s::uuid[]) AS t (o)",
            ([o for o, _ in orders],),
        )
    return orders


async def enqueue(env: dict[str, str], orders: list[tuple[uuid.UUID, uuid.UUID]]) -> float:
    """Puts one document job per order on the queue; the enqueue time (Unix seconds)."""
    queue = JobQueue(Settings(**{k.lower(): v for k, v in env.items()}))  # type: ignore[arg-type]
    try:
        started = time.time()
        await queue.add([order_document_job(order, saga) for order, saga in orders])
        return started
    finally:
        await queue.close()


def run_workers(
    stack: AppStack, orders: list[tuple[uuid.UUID, uuid.UUID]], workers: int, concurrency: int
) -> dict[str, Any]:
    queue_name = f"bench-jobs-{uuid.uuid4().hex[:8]}"
    with stack.connect() as conn:
        conn.execute("TRUNCATE order_documents")
    env = {**stack.env, "JOBS_QUEUE": queue_name, "JOBS_CONCURRENCY": str(concurrency)}
    # Workers first (start_workers waits until each is ready), so the latency below is the
    # queue's and not a process start.
    processes = stack.start_workers(
        workers, JOBS_QUEUE=queue_name, JOBS_CONCURRENCY=str(concurrency)
    )
    try:
        enqueued_at = asyncio.run(enqueue(env, orders))
        services.wait_until(
            lambda: stack.scalar("SELECT count(*) FROM order_documents") >= len(orders),
            timeout=RUN_TIMEOUT_SECONDS,
            what=f"{len(orders)} documents from {workers} worker(s)",
            interval=0.2,
        )
        rows = stack.query(
            "SELECT extract(epoch FROM created_at)::float8 AS at FROM order_documents ORDER BY 1"
        )
    finally:
        for process in processes:
            process.process.stop(timeout=20.0)
        stack.processes = [p for p in stack.processes if p not in processes]
    done = [float(r["at"]) for r in rows]
    span = done[-1] - done[0]
    # Each document is written in its job's first moments (the handler's one transaction),
    # so enqueue -> document is the wait in the queue plus one short job.
    waits_ms = sorted((at - enqueued_at) * 1000 for at in done)
    return {
        "workers": workers,
        "concurrency_per_worker": concurrency,
        "jobs": len(done),
        "seconds": round(span, 2),
        "jobs_per_s": round((len(done) - 1) / span, 1) if span > 0 else None,
        "queue_to_document_ms": {
            q: round(percentile(waits_ms, n) or 0.0, 1)
            for q, n in (("p50", 50), ("p95", 95), ("p99", 99))
        },
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    xs = [r["workers"] for r in runs]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot(xs, [r["jobs_per_s"] for r in runs], marker="o", label="jobs/s")
    ax1.plot(
        xs,
        [runs[0]["jobs_per_s"] * n / xs[0] for n in xs],
        "--",
        color="grey",
        label="linear from one worker",
    )
    ax1.set(xlabel="worker processes", ylabel="jobs/s", title="Document jobs per second")
    for key, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
        ax2.plot(xs, [r["queue_to_document_ms"][key] for r in runs], style, marker="o", label=key)
    ax2.set(
        xlabel="worker processes",
        ylabel="ms",
        yscale="log",
        title=f"Enqueue to document, a burst of {runs[0]['jobs']} jobs",
    )
    for ax in (ax1, ax2):
        ax.set_xticks(xs)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"saga-service worker on {report['machine']['cpus']} CPUs "
        f"(load before run {report['machine']['loadavg_1m_before']})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.jobs_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=1500, help="jobs per run (default 1500)")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts (default 1,2,4)")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="JOBS_CONCURRENCY of each worker (default 4)"
    )
    parser.add_argument("--out", default=str(REPO / "bench-results"))
    args = parser.parse_args(argv)
    if not 1 <= args.jobs <= 100_000:
        parser.error("--jobs must be between 1 and 100000")
    worker_counts = [int(x) for x in args.workers.split(",")]
    if not worker_counts or min(worker_counts) < 1 or max(worker_counts) > 16:
        parser.error("--workers takes counts between 1 and 16, e.g. 1,2,4")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_before = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="jobs-bench-") as tmp, contextlib.ExitStack() as es:
        base = Path(tmp)
        pg = es.enter_context(services.start_postgres(base / "postgres"))
        rd = es.enter_context(services.start_redis(base / "redis"))
        kf = es.enter_context(services.start_kafka(base / "kafka"))
        print("services up; measuring the Redis ceiling", file=sys.stderr, flush=True)
        redis_ceiling = redis_ops_per_s(rd, requests=200_000, clients=50)
        stack = es.enter_context(make_stack(pg, kf, rd.env(), base / "stack"))
        orders = store_confirmed_orders(stack, args.jobs)
        runs = []
        for workers in worker_counts:
            print(f"{args.jobs} jobs, {workers} worker(s)", file=sys.stderr, flush=True)
            runs.append(run_workers(stack, orders, workers, args.concurrency))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    best = max(runs, key=lambda r: r["jobs_per_s"] or 0)
    report = {
        "id": str(uuid.uuid4()),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_1m_before": load_before,
            "loadavg_1m_after": round(os.getloadavg()[0], 2),
            "note": "load average includes everything else running on the machine",
        },
        "ceilings": {
            "redis_ops_per_s": round(redis_ceiling, 1),
            "redis_method": "redis-benchmark -t set -c 50, no pipelining",
        },
        "runs": runs,
        "best": best,
        "ratios": {
            "best_vs_one_worker": round(best["jobs_per_s"] / runs[0]["jobs_per_s"], 2)
            if runs[0]["jobs_per_s"]
            else None,
        },
    }
    (out / "jobs-bench.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, out / "jobs-bench.png")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
