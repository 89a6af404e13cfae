"""`saga-service worker`: runs the queue's background jobs, JOBS_CONCURRENCY at a time, and
serves /metrics and health on $PORT.

Every JOBS_METRICS_INTERVAL_SECONDS it samples the queue's job counts from Redis (the
signal for queue-driven scaling), the job outbox backlog and the latest reconciliation
run from Postgres. On SIGTERM it stops taking jobs at once, lets the running ones finish
within the grace period (a job is one short transaction), and exits; a job cut off by the
hard timer is handed back by another worker's stall check once its lock expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from saga_service.adapters.job_queue import JobQueue, JobWorker
from saga_service.adapters.postgres import queries
from saga_service.adapters.postgres.db import Pool, open_pool
from saga_service.domain.jobs import JOB_NAMES
from saga_service.observability import metrics
from saga_service.observability.tasks import BackgroundTasks
from saga_service.runtime import instance_id
from saga_service.service import reconciliation
from saga_service.service.jobs import JobHandlers
from saga_service.settings import Settings

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 2.0


class WorkerProcess(BackgroundTasks):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.instance_id = instance_id()
        self.stopping = asyncio.Event()
        self.shutting_down = False
        self.pool: Pool | None = None
        self.queue = JobQueue(settings)
        self.worker: JobWorker | None = None
        self.dead_tasks: list[str] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._closing: asyncio.Task[bool] | None = None
        queue = settings.jobs_queue
        # Series from the start, so rate() and increase() see the first job.
        for name in JOB_NAMES:
            for outcome in metrics.JOB_OUTCOMES:
                metrics.JOBS_PROCESSED.labels(queue, name, outcome)
        metrics.JOBS_STALLED.labels(queue)

    async def start(self) -> None:
        self.pool = await open_pool(self.settings)
        handlers = JobHandlers(self.pool, instance_id=self.instance_id)
        self.worker = JobWorker(self.settings, handlers.handle, name=self.instance_id)
        self._spawn(self.worker.run(self.stopping), "worker")
        self._spawn(self._sample(), "queue-metrics")
        log.info(
            "worker started",
            extra={"instance": self.instance_id, "queue": self.settings.jobs_queue},
        )

    async def _sample(self) -> None:
        assert self.pool is not None
        while not self.stopping.is_set():
            try:
                counts = await self.queue.counts()
                for state, n in counts.items():
                    metrics.JOBS.labels(self.settings.jobs_queue, state).set(n)
                async with self.pool.connection() as conn:
                    metrics.JOB_OUTBOX_PENDING.set(await queries.pending_jobs(conn))
                await reconciliation.export_latest(self.pool)
            except Exception as exc:
                log.warning("queue metrics not sampled", extra={"error": repr(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.stopping.wait(), self.settings.jobs_metrics_interval_seconds
                )

    async def check_dependencies(self) -> dict[str, str]:
        results = await asyncio.gather(_probe(self._check_postgres()), _probe(self._check_redis()))
        checks = dict(zip(("postgres", "redis"), results, strict=True))
        for name, result in checks.items():
            metrics.DEPENDENCY_UP.labels(name).set(1 if result == "ok" else 0)
        return checks

    async def _check_postgres(self) -> None:
        assert self.pool is not None
        async with self.pool.connection(timeout=PROBE_TIMEOUT) as conn:
            await conn.execute("SELECT 1")

    async def _check_redis(self) -> None:
        if not await self.queue.ping():
            raise RuntimeError("no PONG")

    def begin_shutdown(self) -> None:
        """Stop taking jobs at once; the running ones go on until `stop`'s deadline.

        Called from the signal handler, which may interrupt the event loop anywhere: it
        only sets a flag and asks the loop, thread-safely, to start closing."""
        if self.shutting_down:
            return
        self.shutting_down = True
        asyncio.get_running_loop().call_soon_threadsafe(self._start_closing)

    def _start_closing(self) -> None:
        if self._closing is not None:
            return
        log.info("shutdown requested")
        self.stopping.set()
        if self.worker is not None:
            self._closing = asyncio.ensure_future(
                self.worker.close(self.settings.shutdown_grace_seconds * 0.7)
            )

    async def stop(self) -> None:
        self.shutting_down = True
        self._start_closing()
        if self._closing is not None:
            finished = await self._closing
            log.info("worker closed", extra={"jobs_finished": finished})
        _, pending = await asyncio.wait(self._tasks, timeout=2.0)
        for task in pending:
            task.cancel()
        await _quietly(self.queue.close())
        if self.pool is not None:
            await _quietly(self.pool.close(timeout=1.0))
        log.info("worker stopped")


def create_worker_app(process: WorkerProcess) -> FastAPI:
    app = FastAPI(title="saga-service worker", openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/healthz/live")
    async def live() -> JSONResponse:
        if process.dead_tasks:
            return JSONResponse(
                status_code=500, content={"status": "dead", "tasks": process.dead_tasks}
            )
        return JSONResponse(content={"status": "ok"})

    @app.get("/healthz/ready")
    async def ready() -> JSONResponse:
        if process.shutting_down:
            return JSONResponse(status_code=503, content={"status": "shutting_down"})
        checks = await process.check_dependencies()
        failing = [name for name, result in checks.items() if result != "ok"]
        # A worker needs both to do anything, unlike the API (which serves reads without
        # Redis); not ready only tells the rollout, since no Service routes to workers.
        status_code = 503 if failing else 200
        return JSONResponse(
            status_code=status_code,
            content={"status": "unavailable" if failing else "ok", "checks": checks},
        )

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


async def _probe(coro: Any) -> str:
    try:
        await asyncio.wait_for(coro, PROBE_TIMEOUT)
        return "ok"
    except TimeoutError:
        return "timeout"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:200]


async def _quietly(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception as exc:
        log.debug("ignored during cleanup", extra={"error": repr(exc)})
