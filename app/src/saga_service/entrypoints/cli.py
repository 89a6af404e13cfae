"""`saga-service serve | worker | reconcile | migrate | create-topics | loadgen` (see
docs/app-contract.md)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Coroutine, Generator
from types import FrameType
from typing import Any

import uvicorn
from pydantic import ValidationError

from saga_loadgen import cli as loadgen
from saga_service import __version__
from saga_service.adapters.diagnosis import Diagnosis, diagnose
from saga_service.observability import logs, spans
from saga_service.settings import (
    RuntimeConfigError,
    Settings,
    load_runtime_config,
    load_settings,
)

log = logging.getLogger("saga_service")

DESCRIPTION = """\
Reference order-saga service of the saga-stack chart.
Configuration comes from environment variables (see docs/app-contract.md):
DATABASE_*, REDIS_*, KAFKA_*, LOCK_TTL_MS, SAGA_LEASE_SECONDS, SHUTDOWN_GRACE_SECONDS,
JOBS_*, ...
With SAGA_RUNTIME_CONFIG, a JSON file whose LOG_LEVEL, SAGA_STEP_DELAY_MS, LOCK_TTL_MS and
LOCK_ACQUIRE_TIMEOUT_MS win over the environment's and are reloaded while serving.
"""

RECONCILE_FOUND = 1
RECONCILE_UNAVAILABLE = 3


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saga-service",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser(
        "serve",
        help="run the HTTP API, outbox and job relays, Kafka consumer and recovery sweep (default)",
        description="Serve HTTP on $PORT and run the background loops until SIGTERM; then "
        "stop intake, finish or hand back in-flight work, release locks and exit within "
        "$SHUTDOWN_GRACE_SECONDS.",
    )
    sub.add_parser(
        "worker",
        help="run the background jobs of $JOBS_QUEUE; /metrics and health on $PORT",
        description="Take jobs from the Redis queue $JOBS_QUEUE (BullMQ protocol), "
        "$JOBS_CONCURRENCY at a time, until SIGTERM; then stop taking jobs, finish the "
        "running ones and exit within $SHUTDOWN_GRACE_SECONDS.",
    )
    sub.add_parser(
        "reconcile",
        help="check the saga invariants once, store and print the findings; exit 1 if any",
        description="Check orders, payments, stock and documents against the saga's "
        "invariants in one database snapshot, store the run (workers export it as "
        "saga_reconcile_findings), print a JSON report on stdout. Exit 0: none broken; "
        f"{RECONCILE_FOUND}: findings; 2: bad configuration; {RECONCILE_UNAVAILABLE}: "
        "the database could not be read.",
    )
    sub.add_parser(
        "migrate",
        help="apply database migrations and exit (idempotent)",
        description="Apply the Alembic migrations up to head; safe to run concurrently.",
    )
    sub.add_parser(
        "create-topics",
        help="create the Kafka topics if missing and exit (idempotent)",
        description="Create $KAFKA_TOPIC_EVENTS, $KAFKA_TOPIC_STARTS and "
        "$KAFKA_TOPIC_DEAD_LETTER with $KAFKA_TOPIC_PARTITIONS partitions, replication "
        "$KAFKA_TOPIC_REPLICATION_FACTOR and min.insync.replicas "
        "$KAFKA_TOPIC_MIN_INSYNC_REPLICAS.",
    )
    loadgen.add_arguments(
        sub.add_parser(
            "loadgen",
            help="send orders at a fixed rate to a running service and report (no settings)",
            description=loadgen.DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    command = args.command or "serve"
    if command == "loadgen":
        # A client of the HTTP API only: none of the service's settings apply.
        return loadgen.main(vars(args), os.environ, _run_fast)
    try:
        environment = load_settings()
        # A bad file at start is refused like a bad variable: a process that started
        # anyway would run with settings other than the ones configured.
        settings, runtime_config = load_runtime_config(environment)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']).upper() or 'settings'}: {e['msg']}"
            for e in exc.errors()
        )
        print(f"saga-service: bad configuration: {problems}", file=sys.stderr)
        return 2
    except RuntimeConfigError as exc:
        print(
            f"saga-service: bad configuration in {environment.saga_runtime_config}: {exc}",
            file=sys.stderr,
        )
        return 2
    logs.configure(settings.log_level)
    if command == "migrate":
        return _migrate(settings)
    if command == "create-topics":
        return _create_topics(settings)
    if command == "reconcile":
        return asyncio.run(reconcile(settings))
    if settings.otel_exporter_otlp_endpoint:
        spans.configure(
            settings.otel_exporter_otlp_endpoint,
            service=settings.otel_service_name,
            resource={"host.name": socket.gethostname(), "service.version": __version__},
        )
    try:
        if command == "worker":
            return _run_fast(work(settings))
        return _run_fast(serve(settings, environment=environment, runtime_config=runtime_config))
    finally:
        spans.shutdown()


def _migrate(settings: Settings) -> int:
    from psycopg import OperationalError as ConnectionFailed
    from sqlalchemy.exc import OperationalError

    from saga_service.adapters.postgres.db import run_migrations
    from saga_service.adapters.postgres.roles import RoleProvisioningError, grant_service_role

    target = f"PostgreSQL at {settings.database_host}:{settings.database_port}"
    try:
        run_migrations(settings)
        log.info("migrations applied")
        if settings.database_owner_user:
            grant_service_role(settings)
    except (OperationalError, ConnectionFailed) as exc:
        return _cannot("migrate", target, diagnose(exc))
    except RoleProvisioningError as exc:
        print(f"saga-service migrate: {exc}", file=sys.stderr)
        log.error("migrate failed", extra={"target": target, "error": str(exc)})
        return 1
    return 0


def _create_topics(settings: Settings) -> int:
    from aiokafka.errors import KafkaConnectionError

    from saga_service.adapters.kafka import connection_problem, create_topics

    try:
        created = asyncio.run(create_topics(settings))
    except KafkaConnectionError as exc:
        # Its text is "Unable to bootstrap from [...]"; one connection by hand says why.
        cause = asyncio.run(connection_problem(settings))
        tls = settings.kafka_security_protocol in ("SSL", "SASL_SSL")
        target = f"Kafka at {settings.kafka_bootstrap_servers}"
        diagnosis = diagnose(cause or exc, tls_handshake=cause is not None and tls)
        return _cannot("create-topics", target, diagnosis)
    log.info("topics ready", extra={"topics_changed": "; ".join(created) or "none"})
    return 0


def _cannot(command: str, target: str, diagnosis: Diagnosis) -> int:
    """One line on stderr (what a Job's failed pod shows) and one in the JSON log."""
    print(f"saga-service {command}: cannot connect to {target}: {diagnosis}", file=sys.stderr)
    log.error(f"{command} failed", extra={"target": target, "error": str(diagnosis)})
    return 1


def _run_fast(coro: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed (it is, in the image), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def serve(
    settings: Settings,
    *,
    environment: Settings | None = None,
    runtime_config: bytes | None = None,
) -> int:
    from saga_service.entrypoints.api import create_app
    from saga_service.runtime import Runtime

    runtime = Runtime(settings, environment=environment, runtime_config=runtime_config)
    await runtime.start()
    app = create_app(runtime)
    # The grace period is shared: the drain first, then the server's own graceful close,
    # then the runtime handing back its work.
    after_drain = settings.shutdown_grace_seconds - settings.drain_seconds()
    config = uvicorn.Config(
        app,
        host="0.0.0.0",
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=max(1, int(after_drain * 0.3)),
        timeout_keep_alive=settings.http_keep_alive_seconds,
    )
    loop = asyncio.get_running_loop()
    server = _Server(
        config,
        on_signal=runtime.begin_shutdown,
        drain_seconds=settings.drain_seconds(),
        loop=loop,
    )
    server.on_first_signal = lambda: loop.call_later(
        max(0.5, settings.shutdown_grace_seconds - 0.5), _hard_exit
    )
    await server.serve()
    await runtime.stop(timeout=after_drain * 0.6)
    return 0


async def work(settings: Settings) -> int:
    from saga_service.entrypoints.worker import WorkerProcess, create_worker_app

    process = WorkerProcess(settings)
    await process.start()
    config = uvicorn.Config(
        create_worker_app(process),
        host="0.0.0.0",
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=settings.http_keep_alive_seconds,
    )
    loop = asyncio.get_running_loop()
    # Only probes and scrapes reach a worker's HTTP: nothing to drain.
    server = _Server(config, on_signal=process.begin_shutdown, drain_seconds=0, loop=loop)
    server.on_first_signal = lambda: loop.call_later(
        max(0.5, settings.shutdown_grace_seconds - 0.5), _hard_exit
    )
    await server.serve()
    await process.stop()
    return 0


async def reconcile(settings: Settings) -> int:
    from saga_service.adapters.postgres.db import open_pool
    from saga_service.service.reconciliation import reconcile as run

    pool = await open_pool(settings)
    try:
        # Without jobs no order gets a document, so missing ones are no finding.
        grace = settings.reconcile_document_grace_seconds if settings.jobs_enabled else math.inf
        report = await run(pool, document_grace_seconds=grace)
    except Exception as exc:
        log.error("reconciliation failed", extra={"error": repr(exc)})
        return RECONCILE_UNAVAILABLE
    finally:
        await pool.close(timeout=1.0)
    # stdout also carries the JSON log lines; the type names the report among them.
    summary = {
        "type": "reconcile-report",
        "ok": report.ok,
        "run_id": report.run_id,
        "orders": report.orders,
        "skus": report.skus,
        "counts": {rule.value: n for rule, n in report.counts.items()},
        "findings": [
            {"rule": f.rule.value, "subject": f.subject, "detail": f.detail}
            for f in report.findings
        ],
        "document_jobs_requeued": report.requeued,
    }
    print(json.dumps(summary), flush=True)
    return 0 if report.ok else RECONCILE_FOUND


def _hard_exit() -> None:
    """Last resort so the process never outlives SHUTDOWN_GRACE_SECONDS."""
    log.error("graceful shutdown overran the grace period; exiting")
    logging.shutdown()
    os._exit(1)


class _Server(uvicorn.Server):
    """uvicorn.Server that, on the first signal, flips readiness, arms the hard-exit timer
    and keeps serving for the drain (answers then close their connections) before it
    closes; a second signal closes at once. It does not re-raise the signal after serving
    (the runtime still has to stop)."""

    def __init__(
        self,
        config: uvicorn.Config,
        on_signal: Callable[[], None],
        drain_seconds: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(config)
        self.on_signal = on_signal
        self.drain_seconds = drain_seconds
        self.loop = loop
        self.draining = False
        self.on_first_signal: Callable[[], object] = lambda: None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not (self.draining or self.should_exit):
            self.draining = True
            self.on_signal()
            self.on_first_signal()
            if self.drain_seconds > 0:
                # A signal handler may run between any two bytecodes of the loop's own code.
                self.loop.call_soon_threadsafe(self._close_after_drain, sig)
                return
        super().handle_exit(sig, frame)

    def _close_after_drain(self, sig: int) -> None:
        self.loop.call_later(self.drain_seconds, self._close, sig)

    def _close(self, sig: int) -> None:
        if not self.should_exit:
            super().handle_exit(sig, None)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
