"""Background jobs benchmark (a command, not a test).

    python -m tests.bench.jobs_bench [--jobs 3000] [--workers 1,2,4] [--concurrency 4]
                                     [--rate 50] [--out bench-results]

Starts PostgreSQL, Redis and Kafka on loopback through the integration harness (Kafka only
because every command of the app wants its settings) and stores `--jobs` confirmed orders.

1. Throughput, for each worker count: a fresh queue holding one order-document job per
   order (added in one round trip, with no worker running), then that many
   `saga-service worker` processes; documents per second while they drain the backlog,
   from the first document to the last (no process start counted).
2. Latency: one worker; jobs added one at a time at `--rate` per second; from each add to
   its document (the wait in the queue plus the job's one short transaction), p50/p95/p99.

Also the Redis round-trip ceiling measured in the same run, and the best throughput's
ratio to one worker's.

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
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from saga_loadgen.stats import percentile
from saga_service.adapters.job_queue import JobQueue
from saga_service.domain.jobs import order_document_job
from saga_service.settings import Settings

from tests.bench.machine import load_average, machine
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


def job_queue(env: dict[str, str]) -> JobQueue:
    return JobQueue(Settings(**{k.lower(): v for k, v in env.items()}))  # type: ignore[arg-type]


async def enqueue_all(env: dict[str, str], orders: list[tuple[uuid.UUID, uuid.UUID]]) -> float:
    """Puts one document job per order on the queue, in one round trip; jobs added/s."""
    queue = job_queue(env)
    try:
        started = time.monotonic()
        await queue.add([order_document_job(order, saga) for order, saga in orders])
        return len(orders) / (time.monotonic() - started)
    finally:
        await queue.close()


async def trickle(
    env: dict[str, str], orders: list[tuple[uuid.UUID, uuid.UUID]], rate: float
) -> dict[uuid.UUID, float]:
    """Adds the jobs one by one at `rate` per second; the time each went on the queue."""
    queue = job_queue(env)
    added: dict[uuid.UUID, float] = {}
    try:
        start = time.monotonic()
        for n, (order, saga) in enumerate(orders):
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            added[order] = time.time()
            await queue.add([order_document_job(order, saga)])
        return added
    finally:
        await queue.close()


def documents(stack: AppStack) -> dict[uuid.UUID, float]:
    rows = stack.query(
        "SELECT order_id, extract(epoch FROM created_at)::float8 AS at FROM order_documents"
    )
    return {r["order_id"]: float(r["at"]) for r in rows}


def wait_documents(stack: AppStack, count: int, workers: int) -> None:
    services.wait_until(
        lambda: stack.scalar("SELECT count(*) FROM order_documents") >= count,
        timeout=RUN_TIMEOUT_SECONDS,
        what=f"{count} documents from {workers} worker(s)",
        interval=0.2,
    )


@contextlib.contextmanager
def workers_on_a_fresh_queue(
    stack: AppStack, workers: int, concurrency: int, *, start: bool = True
) -> Iterator[tuple[dict[str, str], Callable[[], None]]]:
    """(environment naming the queue, a function that starts the workers)."""
    with stack.connect() as conn:
        conn.execute("TRUNCATE order_documents")
    overrides = {
        "JOBS_QUEUE": f"bench-jobs-{uuid.uuid4().hex[:8]}",
        "JOBS_CONCURRENCY": str(concurrency),
    }
    started: list[Any] = []

    def start_workers() -> None:
        started.extend(stack.start_workers(workers, **overrides))

    try:
        if start:
            start_workers()
        yield {**stack.env, **overrides}, start_workers
    finally:
        for process in started:
            process.process.stop(timeout=20.0)
        stack.processes = [p for p in stack.processes if p not in started]


def throughput(
    stack: AppStack, orders: list[tuple[uuid.UUID, uuid.UUID]], workers: int, concurrency: int
) -> dict[str, Any]:
    """A backlog of every job first, then the workers: documents per second while they
    drain it (first document to last, so no process start is counted)."""
    with workers_on_a_fresh_queue(stack, workers, concurrency, start=False) as (env, start):
        added_per_s = asyncio.run(enqueue_all(env, orders))
        start()
        wait_documents(stack, len(orders), workers)
        done = sorted(documents(stack).values())
    span = done[-1] - done[0]
    return {
        "workers": workers,
        "concurrency_per_worker": concurrency,
        "jobs": len(done),
        "seconds": round(span, 2),
        "jobs_per_s": round((len(done) - 1) / span, 1) if span > 0 else None,
        "enqueue_jobs_per_s": round(added_per_s, 1),
    }


def latency(
    stack: AppStack, orders: list[tuple[uuid.UUID, uuid.UUID]], rate: float, concurrency: int
) -> dict[str, Any]:
    """One worker, jobs added one at a time at `rate`: from a job's add to its document
    (the wait in the queue plus the job's one short transaction)."""
    with workers_on_a_fresh_queue(stack, 1, concurrency) as (env, _):
        added = asyncio.run(trickle(env, orders, rate))
        wait_documents(stack, len(orders), 1)
        done = documents(stack)
    waits_ms = sorted((done[order] - at) * 1000 for order, at in added.items())
    return {
        "workers": 1,
        "jobs": len(waits_ms),
        "rate_per_s": rate,
        "add_to_document_ms": {
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
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=(3, 2))
    ax1.plot(xs, [r["jobs_per_s"] for r in runs], marker="o", label="jobs/s")
    ax1.plot(
        xs,
        [runs[0]["jobs_per_s"] * n / xs[0] for n in xs],
        "--",
        color="grey",
        label="linear from one worker",
    )
    ax1.set(xlabel="worker processes", ylabel="jobs/s", title="Document jobs per second")
    lat = report["latency"]
    keys = ["p50", "p95", "p99"]
    ax2.bar(keys, [lat["add_to_document_ms"][k] for k in keys], color="#3366cc")
    ax2.set(
        ylabel="ms",
        title=f"Add to document, 1 worker, {lat['rate_per_s']:g} jobs/s",
    )
    ax1.set_xticks(xs)
    ax1.legend(fontsize=8)
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
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per run (default 3000)")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts (default 1,2,4)")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="JOBS_CONCURRENCY of each worker (default 4)"
    )
    parser.add_argument(
        "--rate", type=float, default=50.0, help="jobs/s of the latency run (default 50)"
    )
    parser.add_argument("--out", default=str(REPO / "bench-results"))
    args = parser.parse_args(argv)
    if not 1 <= args.rate <= 1000:
        parser.error("--rate must be between 1 and 1000")
    if not 1 <= args.jobs <= 100_000:
        parser.error("--jobs must be between 1 and 100000")
    worker_counts = [int(x) for x in args.workers.split(",")]
    if not worker_counts or min(worker_counts) < 1 or max(worker_counts) > 16:
        parser.error("--workers takes counts between 1 and 16, e.g. 1,2,4")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_before = load_average()
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
            runs.append(throughput(stack, orders, workers, args.concurrency))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
        # Ten seconds of trickle at the most, so the run stays short at any rate.
        sample = orders[: max(1, min(len(orders), int(args.rate * 10)))]
        print(f"latency: {len(sample)} jobs at {args.rate:g}/s", file=sys.stderr, flush=True)
        lat = latency(stack, sample, args.rate, args.concurrency)
    best = max(runs, key=lambda r: r["jobs_per_s"] or 0)
    report = {
        "id": str(uuid.uuid4()),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(load_before),
        "ceilings": {
            "redis_ops_per_s": round(redis_ceiling, 1),
            "redis_method": "redis-benchmark -t set -c 50, no pipelining",
        },
        "runs": runs,
        "best": best,
        "latency": lat,
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
