"""Saga throughput and latency benchmark (a command, not a test).

    python -m tests.bench.saga_bench [--levels 4,16,64] [--seconds 8] [--out bench-results]

Starts PostgreSQL, Redis and Kafka on loopback through the integration harness, then:

1. ceilings: the Postgres commit rate with pgbench (one-row INSERT transactions) and the
   Redis round-trip rate with redis-benchmark (SET, no pipelining);
2. a lock microbenchmark: acquire + release cycles of saga_service.adapters.lock (2 round trips a
   cycle) from 2 worker processes of 32 coroutines, and the cycle's p50/p99 there and alone
   (one coroutine);
3. the saga service with 1 and then 2 `saga-service serve` processes, driven closed-loop at
   each concurrency level (that many orders in flight, each waits for its saga's final
   state); sagas/s and p50/p95/p99 end-to-end latency (from the database's own
   created_at/finished_at), the Postgres commits per saga (pg_stat_database), the
   statements per saga (pg_stat_statements, BEGIN and COMMIT included: each is a round
   trip) and the CPU milliseconds the app processes spent per saga (/proc);
4. what Kafka's SASL costs: one process at one level (--transport-level) over the broker's
   PLAINTEXT and its SASL_PLAINTEXT (SCRAM-SHA-512) listener, alternated twice;
5. with --baseline-src, this tree's service against another checkout's (its app/src, e.g.
   a `git worktree` of main), one process at each level, alternated twice, so that both
   meet the same machine: the before/after ratios of a change, measured in one run;

and reports the ratios the roadmap asks for:
  saga throughput / (commit ceiling / commits per saga)      target 60 %
  lock cycles / (Redis ops / round trips per cycle)           target 50 %
Writes bench-results/saga-bench.json and bench-results/saga-bench.png.
Everything stays on loopback, bounded in time and count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import os
import random
import re
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from saga_loadgen.stats import percentile

from tests.bench.machine import load_average, machine
from tests.bench.order_client import OrderConnection
from tests.integration import services
from tests.integration.app_processes import AppStack, make_stack

REPO = services.REPO_ROOT
SKUS = [f"BENCH-{i:03d}" for i in range(64)]
# The Kafka SASL user of the transport comparison.
BENCH_USER = "bench"
LOCK_ROUND_TRIPS_PER_CYCLE = 2  # one EVALSHA to acquire (SET NX PX + INCR), one to release


# --- ceilings -----------------------------------------------------------------------------


def pgbench_commits_per_s(pg: services.PostgresInstance, clients: int, seconds: int) -> float:
    with psycopg.connect(pg.superuser_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_commit")
        conn.execute("CREATE TABLE bench_commit (id bigserial PRIMARY KEY, v integer NOT NULL)")
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write("INSERT INTO bench_commit (v) VALUES (1);\n")
    env = {**os.environ, "PGPASSWORD": pg.superuser_password}
    pgbench = str(services.postgres_bindir() / "pgbench")
    if not Path(pgbench).exists():
        pgbench = "pgbench"
    out = subprocess.run(
        [
            pgbench,
            "-n",
            "-h",
            pg.host,
            "-p",
            str(pg.port),
            "-U",
            pg.superuser,
            "-c",
            str(clients),
            "-j",
            "2",
            "-T",
            str(seconds),
            "-f",
            script.name,
            "postgres",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    os.unlink(script.name)
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out) or re.search(
        r"tps = ([0-9.]+)", out
    )
    assert match, out
    return float(match.group(1))


def redis_ops_per_s(rd: services.RedisInstance, requests: int, clients: int) -> float:
    out = subprocess.run(
        [
            "redis-benchmark",
            "-h",
            rd.host,
            "-p",
            str(rd.port),
            "-a",
            rd.password,
            "-n",
            str(requests),
            "-c",
            str(clients),
            "-t",
            "set",
            "--csv",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    rows = [r for r in csv.reader(io.StringIO(out)) if r and r[0].upper() == "SET"]
    assert rows, out
    return float(rows[0][1])


# --- lock microbenchmark ------------------------------------------------------------------


async def _lock_worker(seconds: float, concurrency: int, prefix: str) -> dict[str, Any]:
    from saga_service.adapters.lock import LockService, make_redis
    from saga_service.settings import load_settings

    settings = load_settings()
    redis = make_redis(settings)
    locks = LockService(redis, ttl_ms=5000, acquire_timeout_ms=5000)
    deadline = time.monotonic() + seconds
    latencies_us: list[int] = []

    async def loop(i: int) -> None:
        sku = f"{prefix}-{i}"
        while (started := time.monotonic()) < deadline:
            lease = await locks.acquire(sku, started + 5)
            await locks.release(lease)
            latencies_us.append(round((time.monotonic() - started) * 1e6))

    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    await redis.aclose()
    return {"cycles": len(latencies_us), "latencies_us": latencies_us}


def lock_cycles(
    env: dict[str, str], seconds: float, processes: int = 2, concurrency: int = 32
) -> dict[str, Any]:
    """Acquire + release cycles/s from `processes` processes of `concurrency` coroutines,
    each on its own SKU (no contention: the cost of the cycle itself), and the cycle's
    latency percentiles (a loaded run queues in the client's event loop; a run of one
    coroutine shows the cycle alone)."""
    cycles = 0
    latencies_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="lock-bench-") as tmp:
        results = [Path(tmp) / f"worker{i}.json" for i in range(processes)]
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.bench.saga_bench",
                    "lock-worker",
                    "--seconds",
                    str(seconds),
                    "--concurrency",
                    str(concurrency),
                    "--prefix",
                    f"lockbench{i}",
                    "--result",
                    str(result),
                ],
                env=env,
                cwd=str(REPO),
            )
            for i, result in enumerate(results)
        ]
        for proc, result in zip(procs, results, strict=True):
            if proc.wait(timeout=seconds + 60) != 0:
                raise RuntimeError(f"lock worker exited with {proc.returncode}")
            measured = json.loads(result.read_text())
            cycles += measured["cycles"]
            latencies_ms += [us / 1000 for us in measured["latencies_us"]]
    latencies_ms.sort()

    def pct(q: float) -> float | None:
        value = percentile(latencies_ms, q)
        return None if value is None else round(value, 3)

    return {
        "processes": processes,
        "coroutines_per_process": concurrency,
        "cycles_per_s": round(cycles / seconds, 1),
        "p50_ms": pct(50),
        "p99_ms": pct(99),
    }


# --- saga load ----------------------------------------------------------------------------


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def _drive(
    stack: AppStack, concurrency: int, seconds: float, max_sagas: int
) -> dict[str, Any]:
    """Closed loop: `concurrency` orders in flight; each waits for its saga's final state."""
    urls = [p.url for p in stack.processes]
    waiting: dict[str, asyncio.Future[None]] = {}
    started_at = time.monotonic()
    stop_at = started_at + seconds
    placed: list[str] = []
    done = asyncio.Event()
    watcher_queries = 0

    async def watch() -> None:
        nonlocal watcher_queries
        conn = await psycopg.AsyncConnection.connect(stack.dsn, autocommit=True)
        try:
            while not done.is_set():
                if waiting:
                    watcher_queries += 1
                    cur = await conn.execute(
                        "SELECT saga_id::text FROM sagas WHERE saga_id = ANY(%s::uuid[])"
                        " AND state IN ('COMPLETED', 'COMPENSATED')",
                        (list(waiting),),
                    )
                    for (saga_id,) in await cur.fetchall():
                        fut = waiting.pop(saga_id, None)
                        if fut is not None and not fut.done():
                            fut.set_result(None)
                await asyncio.sleep(0.005)
        finally:
            await conn.close()

    async def worker(index: int) -> None:
        connections = [OrderConnection(url) for url in urls]
        n = 0
        try:
            while time.monotonic() < stop_at and len(placed) < max_sagas:
                connection = connections[(index + n) % len(connections)]
                n += 1
                sku = random.choice(SKUS)
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                status, answer = await connection.post_json(
                    "/orders",
                    {
                        "customer_id": f"bench-{index}",
                        "items": [{"sku": sku, "quantity": 1, "unit_price_cents": 100}],
                    },
                )
                assert status == 202, answer
                saga_id = answer["saga_id"]
                placed.append(saga_id)
                waiting[saga_id] = fut
                await asyncio.wait_for(fut, timeout=120)
        finally:
            for connection in connections:
                await connection.close()

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    finally:
        done.set()
        await watcher
    wall = time.monotonic() - started_at
    rows = stack.query(
        "SELECT EXTRACT(EPOCH FROM finished_at - created_at) AS s FROM sagas"
        " WHERE saga_id = ANY(%s::uuid[]) AND state = 'COMPLETED'",
        (placed,),
    )
    latencies = sorted(float(r["s"]) * 1000 for r in rows)

    def pct_ms(q: float) -> float | None:
        value = percentile(latencies, q)
        return None if value is None else round(value, 1)

    return {
        "concurrency": concurrency,
        "sagas": len(placed),
        "completed": len(latencies),
        "seconds": round(wall, 3),
        "sagas_per_s": round(len(latencies) / wall, 1),
        "p50_ms": pct_ms(50),
        "p95_ms": pct_ms(95),
        "p99_ms": pct_ms(99),
        "driver_queries": watcher_queries,
    }


def _commits(stack: AppStack) -> int:
    return int(
        stack.scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    )


def _statements(pg: services.PostgresInstance, dbname: str) -> int:
    """Statements run in `dbname` so far (read from another database, so not counted)."""
    with psycopg.connect(pg.superuser_dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s"
            " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s",
            (dbname,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes (fields 14 and 15 of /proc/PID/stat)."""
    ticks = 0
    for pid in pids:
        after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(after_name[11]) + int(after_name[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def run_saga_levels(
    pg: services.PostgresInstance,
    kf: services.KafkaInstance,
    rd: services.RedisInstance,
    workdir: Path,
    processes: int,
    levels: list[int],
    seconds: float,
    max_sagas: int,
    overrides: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Sagas/s and latency at each level; `overrides` change the app's environment (how it
    reaches Kafka, which code it runs)."""
    results = []
    with make_stack(
        pg,
        kf,
        rd.env(),
        workdir / f"p{processes}-{secrets.token_hex(3)}",
        LOG_LEVEL="WARNING",
        SAGA_LEASE_SECONDS="30",
        DATABASE_POOL_SIZE="16",
        **(overrides or {}),
    ) as stack:
        stack.start(processes)
        with psycopg.connect(stack.dsn, autocommit=True) as conn:
            for sku in SKUS:
                conn.execute("INSERT INTO stock (sku, available) VALUES (%s, 1000000000)", (sku,))
        _run(_drive(stack, 4, 2.0, 200))  # warm-up: connections, JIT-less caches
        dbname = stack.env["DATABASE_NAME"]
        pids = [p.pid for p in stack.processes]
        for level in levels:
            before = _commits(stack)
            statements_before, cpu_before = _statements(pg, dbname), _cpu_seconds(pids)
            driver_cpu_before = time.process_time()
            result = _run(_drive(stack, level, seconds, max_sagas))
            driver_cpu = time.process_time() - driver_cpu_before
            statements_after, cpu_after = _statements(pg, dbname), _cpu_seconds(pids)
            # pg_stat counters are flushed asynchronously; let them settle.
            time.sleep(1.2)
            after = _commits(stack)
            result["processes"] = processes
            # The driver's own completion polls commit too (autocommit); they are not the
            # service's, and neither is the final query above.
            driver = result.pop("driver_queries") + 1
            sagas = max(1, result["sagas"])
            result["commits_per_saga"] = round((after - before - driver) / sagas, 2)
            result["statements_per_saga"] = round(
                (statements_after - statements_before - driver) / sagas, 2
            )
            result["app_cpu_ms_per_saga"] = round((cpu_after - cpu_before) * 1000 / sagas, 2)
            # the load driver shares the cores with the system under test
            result["driver_cpu_ms_per_saga"] = round(driver_cpu * 1000 / sagas, 2)
            print(json.dumps(result), file=sys.stderr, flush=True)
            results.append(result)
    return results


def compare_kafka_transports(
    pg: services.PostgresInstance,
    kf: services.KafkaInstance,
    rd: services.RedisInstance,
    workdir: Path,
    level: int,
    seconds: float,
    max_sagas: int,
    rounds: int = 2,
) -> dict[str, Any]:
    """What SASL (SCRAM-SHA-512, as the chart's bundled Kafka runs it) costs in sagas/s:
    one app process at one level over the PLAINTEXT and the SASL_PLAINTEXT listener of the
    same broker, alternated `rounds` times so that drift in the machine's load hits both."""
    transports = {"PLAINTEXT": None, "SASL_PLAINTEXT SCRAM-SHA-512": kf.sasl_env(BENCH_USER)}
    rates: dict[str, list[float]] = {name: [] for name in transports}
    for _ in range(rounds):
        for name, env in transports.items():
            (run,) = run_saga_levels(pg, kf, rd, workdir, 1, [level], seconds, max_sagas, env)
            rates[name].append(run["sagas_per_s"])
    mean = {name: sum(values) / len(values) for name, values in rates.items()}
    plain, sasl = mean.values()
    return {
        "processes": 1,
        "concurrency": level,
        "rounds": rates,
        "sagas_per_s": {name: round(value, 1) for name, value in mean.items()},
        "sasl_vs_plaintext": round(sasl / plain, 3),
    }


COMPARED = ("app_cpu_ms_per_saga", "statements_per_saga", "p50_ms", "p99_ms", "sagas_per_s")


def compare_with_baseline(
    pg: services.PostgresInstance,
    kf: services.KafkaInstance,
    rd: services.RedisInstance,
    workdir: Path,
    baseline_src: Path,
    levels: list[int],
    seconds: float,
    max_sagas: int,
    rounds: int = 2,
) -> dict[str, Any]:
    """This tree's service against the one in `baseline_src`, one process at each level,
    alternated `rounds` times; per level the mean of each figure and this / baseline."""
    trees = {
        "baseline": str(baseline_src.resolve()),
        "this tree": os.environ.get("PYTHONPATH", str(REPO / "app" / "src")),
    }
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {name: {} for name in trees}
    for _ in range(rounds):
        for name, src in trees.items():
            for run in run_saga_levels(
                pg, kf, rd, workdir, 1, levels, seconds, max_sagas, {"PYTHONPATH": src}
            ):
                runs[name].setdefault(run["concurrency"], []).append(run)
    per_level = []
    for level in levels:
        row: dict[str, Any] = {"concurrency": level}
        for name in trees:
            row[name] = {
                key: round(sum(r[key] or 0 for r in runs[name][level]) / rounds, 2)
                for key in COMPARED
            }
        row["this / baseline"] = {
            key: round(row["this tree"][key] / row["baseline"][key], 3)
            for key in COMPARED
            if row["baseline"][key]
        }
        per_level.append(row)
    return {"baseline_src": trees["baseline"], "rounds": rounds, "levels": per_level}


# --- report -------------------------------------------------------------------------------


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for processes in sorted({r["processes"] for r in report["runs"]}):
        runs = [r for r in report["runs"] if r["processes"] == processes]
        xs = [r["concurrency"] for r in runs]
        ax1.plot(xs, [r["sagas_per_s"] for r in runs], marker="o", label=f"{processes} process(es)")
        for key, style in (("p50_ms", "-"), ("p95_ms", "--"), ("p99_ms", ":")):
            ax2.plot(
                xs, [r[key] for r in runs], style, marker="o", label=f"{key[:-3]} x{processes}"
            )
    ceiling = report["ceilings"]["saga_ceiling_per_s"]
    ax1.axhline(ceiling, color="grey", linestyle="--", label="commit ceiling / commits per saga")
    ax1.axhline(0.6 * ceiling, color="grey", linestyle=":", label="target: 60 % of it")
    ratios = report["ratios"]
    ax1.set(
        xscale="log",
        yscale="log",
        xlabel="orders in flight",
        ylabel="sagas/s",
        title=f"Saga throughput ({ratios['saga_throughput_vs_commit_ceiling']:.1%} of ceiling)",
    )
    ax2.set(
        xscale="log",
        yscale="log",
        xlabel="orders in flight",
        ylabel="ms",
        title="End-to-end latency (p50 solid, p95 dashed, p99 dotted)",
    )
    levels = sorted({r["concurrency"] for r in report["runs"]})
    for ax in (ax1, ax2):
        ax.set_xticks(levels)
        ax.set_xticklabels([str(level) for level in levels])
        ax.minorticks_off()
    load = report["machine"].get("loadavg_1m_before")
    title = [
        f"saga-service on {report['machine']['cpus']} CPUs (load before run {load})",
        f"lock cycles {ratios['lock_cycles_vs_redis_ceiling']:.1%} of Redis ceiling",
    ]
    if transport := report["kafka_transport"]:
        title.append(
            f"Kafka SASL/SCRAM at {transport['concurrency']} in flight: "
            f"{transport['sasl_vs_plaintext']:.0%} of PLAINTEXT sagas/s"
        )
    if baseline := report["baseline"]:
        title.append(
            "sagas/s vs baseline: "
            + ", ".join(
                f"x{level['this / baseline'].get('sagas_per_s', 0):.2f} at {level['concurrency']}"
                for level in baseline["levels"]
            )
        )
    fig.suptitle("; ".join(title), fontsize=8)
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.saga_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command")
    worker = sub.add_parser("lock-worker", help="internal: one process of the lock benchmark")
    worker.add_argument("--seconds", type=float, default=5)
    worker.add_argument("--concurrency", type=int, default=32)
    worker.add_argument("--prefix", default="lockbench")
    # every cycle's latency: more than a pipe takes in one write from the worker's loop
    worker.add_argument("--result", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--levels", default="4,16,64", help="orders in flight (default 4,16,64)")
    parser.add_argument("--processes", default="1,2", help="app process counts (default 1,2)")
    parser.add_argument("--seconds", type=float, default=8.0, help="per level (default 8)")
    parser.add_argument(
        "--transport-level",
        type=int,
        default=16,
        help="orders in flight for the PLAINTEXT vs SASL comparison (default 16; 0 skips it)",
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="another checkout's app/src to compare this tree's service with (see 5. above)",
    )
    parser.add_argument("--max-sagas", type=int, default=5000, help="per level (default 5000)")
    parser.add_argument("--out", default=str(REPO / "bench-results"))
    args = parser.parse_args(argv)
    if args.command == "lock-worker":
        result = _run(_lock_worker(args.seconds, args.concurrency, args.prefix))
        args.result.write_text(json.dumps(result))
        return 0

    levels = [int(x) for x in args.levels.split(",")]
    process_counts = [int(x) for x in args.processes.split(",")]
    if min(levels) < 1 or min(process_counts) < 1 or args.transport_level < 0:
        parser.error("--levels and --processes take counts of 1 or more, --transport-level 0+")
    if args.baseline_src and not (args.baseline_src / "saga_service").is_dir():
        parser.error(f"--baseline-src {args.baseline_src}: no saga_service package in it")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="saga-bench-") as tmp, contextlib.ExitStack() as es:
        base = Path(tmp)
        pg = es.enter_context(
            services.start_postgres(
                base / "postgres", extra_settings={"shared_preload_libraries": "pg_stat_statements"}
            )
        )
        with psycopg.connect(pg.superuser_dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        rd = es.enter_context(services.start_redis(base / "redis"))
        kf = es.enter_context(
            services.start_kafka(base / "kafka", sasl_users={BENCH_USER: secrets.token_hex(16)})
        )
        print("services up; measuring ceilings", file=sys.stderr, flush=True)
        commit_ceiling = pgbench_commits_per_s(pg, clients=16, seconds=8)
        redis_ceiling = redis_ops_per_s(rd, requests=200_000, clients=50)
        lock_env = {**os.environ, **pg.env(), **rd.env(), **kf.env()}
        lock = lock_cycles(lock_env, seconds=5.0)
        lock_alone = lock_cycles(lock_env, seconds=2.0, processes=1, concurrency=1)
        lock_rate = lock["cycles_per_s"]
        print(
            json.dumps(
                {
                    "pg_commits_per_s": commit_ceiling,
                    "redis_ops_per_s": redis_ceiling,
                    "lock_cycles_per_s": lock_rate,
                }
            ),
            file=sys.stderr,
            flush=True,
        )
        runs: list[dict[str, Any]] = []
        for processes in process_counts:
            runs += run_saga_levels(
                pg, kf, rd, base, processes, levels, args.seconds, args.max_sagas
            )
        transport = None
        if args.transport_level:
            transport = compare_kafka_transports(
                pg, kf, rd, base, args.transport_level, args.seconds, args.max_sagas
            )
            print(json.dumps({"kafka_transport": transport}), file=sys.stderr, flush=True)
        baseline = None
        if args.baseline_src:
            baseline = compare_with_baseline(
                pg, kf, rd, base, args.baseline_src, levels, args.seconds, args.max_sagas
            )
            print(json.dumps({"baseline": baseline}), file=sys.stderr, flush=True)

    commits_per_saga = sum(r["commits_per_saga"] for r in runs) / len(runs)
    one_process = [r for r in runs if r["processes"] == 1] or runs
    saga_ceiling = commit_ceiling / commits_per_saga
    best = max(runs, key=lambda r: r["sagas_per_s"])
    lock_ceiling = redis_ceiling / LOCK_ROUND_TRIPS_PER_CYCLE
    report = {
        "id": str(uuid.uuid4()),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(load_before),
        "ceilings": {
            "pg_commits_per_s": round(commit_ceiling, 1),
            "pg_commit_method": "pgbench -c 16 -j 2, one-row INSERT per transaction",
            "redis_ops_per_s": round(redis_ceiling, 1),
            "redis_method": "redis-benchmark -t set -c 50, no pipelining",
            "commits_per_saga": round(commits_per_saga, 2),
            "saga_ceiling_per_s": round(saga_ceiling, 1),
            "lock_round_trips_per_cycle": LOCK_ROUND_TRIPS_PER_CYCLE,
            "lock_ceiling_cycles_per_s": round(lock_ceiling, 1),
        },
        "lock": {
            **lock,
            "alone": lock_alone,
            "method": "saga_service.adapters.lock acquire+release, one SKU per coroutine",
            "p99_target_ms": 2.0,
        },
        "runs": runs,
        "best": best,
        # Where a saga's cost goes: the mean over the one-process levels.
        "cost_per_saga": {
            "statements": round(
                sum(r["statements_per_saga"] for r in one_process) / len(one_process), 2
            ),
            "app_cpu_ms": round(
                sum(r["app_cpu_ms_per_saga"] for r in one_process) / len(one_process), 2
            ),
            "commits": round(sum(r["commits_per_saga"] for r in one_process) / len(one_process), 2),
        },
        "kafka_transport": transport,
        "baseline": baseline,
        "ratios": {
            "saga_throughput_vs_commit_ceiling": round(best["sagas_per_s"] / saga_ceiling, 3),
            "saga_target": 0.60,
            "lock_cycles_vs_redis_ceiling": round(lock_rate / lock_ceiling, 3),
            "lock_target": 0.50,
        },
    }
    (out / "saga-bench.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, out / "saga-bench.png")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
