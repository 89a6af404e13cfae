"""``python -m tests.integration.services up``: the services for a developer's
shell, and the app-contract variables that point the app at them."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.integration.services.kafka import KafkaInstance, start_kafka
from tests.integration.services.postgres import PostgresInstance, start_postgres
from tests.integration.services.process import ManagedProcess, ServiceError
from tests.integration.services.redis import (
    RedisInstance,
    SentinelGroup,
    start_redis,
    start_redis_sentinel_group,
)


def app_env(
    *,
    postgres: PostgresInstance | None = None,
    redis: RedisInstance | None = None,
    sentinel_group: SentinelGroup | None = None,
    kafka: KafkaInstance | None = None,
) -> dict[str, str]:
    """The app-contract variables (docs/app-contract.md) for these services.

    With both ``redis`` and ``sentinel_group``, the Sentinel group wins.
    """
    env: dict[str, str] = {}
    if postgres is not None:
        env.update(postgres.env())
    if redis is not None:
        env.update(redis.env())
    if sentinel_group is not None:
        env.update(sentinel_group.env())
    if kafka is not None:
        env.update(kafka.env())
    return env


def _shell_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


def _cmd_up(args: argparse.Namespace) -> int:
    wanted = set(args.only.split(",")) if args.only else {"postgres", "redis", "sentinel", "kafka"}
    unknown = wanted - {"postgres", "redis", "sentinel", "kafka"}
    if unknown:
        print(f"unknown service(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    keep = args.workdir is not None
    base = Path(args.workdir) if keep else Path(tempfile.mkdtemp(prefix="saga-services-"))
    base.mkdir(parents=True, exist_ok=True)
    timings: list[str] = []
    try:
        with contextlib.ExitStack() as stack:
            pg = rd = sg = kf = None
            if "postgres" in wanted:
                t0 = time.monotonic()
                pg = stack.enter_context(start_postgres(base / "postgres"))
                timings.append(f"postgres {time.monotonic() - t0:.1f}s")
            if "redis" in wanted:
                t0 = time.monotonic()
                rd = stack.enter_context(start_redis(base / "redis", args.redis_password))
                timings.append(f"redis {time.monotonic() - t0:.1f}s")
            if "sentinel" in wanted:
                t0 = time.monotonic()
                sg = stack.enter_context(
                    start_redis_sentinel_group(base / "sentinel", args.redis_password)
                )
                timings.append(f"sentinel group {time.monotonic() - t0:.1f}s")
            if "kafka" in wanted:
                t0 = time.monotonic()
                sasl_users = dict(u.split(":", 1) for u in args.kafka_sasl_user)
                kf = stack.enter_context(start_kafka(base / "kafka", sasl_users=sasl_users))
                timings.append(f"kafka {time.monotonic() - t0:.1f}s")
            print(f"# services up in {base} ({', '.join(timings)})")
            env = app_env(postgres=pg, redis=rd, kafka=kf)
            for key, value in env.items():
                print(f"export {key}={_shell_quote(value)}")
            if sg is not None:
                print("# Redis through Sentinel instead of standalone:")
                for key, value in sg.env().items():
                    print(f"# export {key}={_shell_quote(value)}")
            if kf is not None and kf.sasl_users:
                user = next(iter(kf.sasl_users))
                print("# Kafka over SASL_PLAINTEXT (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512):")
                for key, value in kf.sasl_env(user).items():
                    print(f"# export {key}={_shell_quote(value)}")
            print("# Ctrl-C or SIGTERM stops everything.", flush=True)
            while not stop.wait(1.0):
                for proc in _processes(pg, rd, sg, kf):
                    if not proc.alive():
                        print(
                            f"# {proc.name} (pid {proc.pid}) exited; stopping",
                            file=sys.stderr,
                        )
                        stop.set()
            print("# stopping ...", file=sys.stderr, flush=True)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


def _processes(
    pg: PostgresInstance | None,
    rd: RedisInstance | None,
    sg: SentinelGroup | None,
    kf: KafkaInstance | None,
) -> list[ManagedProcess]:
    procs: list[ManagedProcess] = []
    if pg:
        procs.append(pg.process)
    if rd:
        procs.append(rd.process)
    if sg:
        procs += [s.process for s in sg.servers if s not in sg.killed]
        procs += [s.process for s in sg.sentinels]
    if kf:
        procs.append(kf.process)
    return procs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.integration.services",
        description="Run the integration-test services "
        "(PostgreSQL, Redis, Sentinel, Kafka) locally.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the services, print their env vars, wait for Ctrl-C")
    up.add_argument(
        "--only",
        help="comma-separated subset of postgres,redis,sentinel,kafka (default: all)",
    )
    up.add_argument("--workdir", help="keep data here instead of a temp dir removed on exit")
    up.add_argument("--redis-password", default="redis-test-password")
    up.add_argument(
        "--kafka-sasl-user",
        action="append",
        default=[],
        metavar="NAME:PASSWORD",
        help="add a SASL_PLAINTEXT listener with this user (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.command == "up" and any(":" not in u for u in args.kafka_sasl_user):
        parser.error("--kafka-sasl-user takes NAME:PASSWORD")
    if args.command == "up":
        return _cmd_up(args)
    parser.error(f"unknown command {args.command}")
    return 2
