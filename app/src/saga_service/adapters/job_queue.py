"""The Redis job queue, in BullMQ's protocol (the `bullmq` package: the same Lua scripts
and key layout as the Node library, so Bull/BullMQ producers, workers and dashboards of a
NestJS stack can share the queue).

The only module that imports `bullmq`: the rest of the service sees `JobQueue` (enqueue,
counts), `JobWorker` (run a handler per job) and `JobRelay` (job outbox -> queue).

What the library gives and we rely on:
* a job id chosen by us is added once (a second add of the same id is a no-op);
* a worker holds a lock per active job (JOBS_LOCK_MS, renewed while it runs); a worker
  that vanished stops renewing, and the stall check of any live worker (every
  JOBS_STALLED_INTERVAL_MS) moves its job back to waiting, up to JOBS_MAX_STALLED_COUNT
  times, then to failed;
* a failed attempt is retried after exponential backoff (JOBS_BACKOFF_MS * 2^(n-1)) up to
  JOBS_ATTEMPTS attempts, then the job goes to the failed set with its reason; a job
  raising JobRejected goes there at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bullmq import Job, Queue, UnrecoverableError, Worker
from redis.asyncio import Redis
from redis.exceptions import RedisError

from saga_service.adapters.lock import make_redis
from saga_service.adapters.postgres import commands
from saga_service.adapters.postgres.db import Pool
from saga_service.domain.jobs import JobRejected, JobRequest
from saga_service.observability import metrics
from saga_service.settings import Settings

log = logging.getLogger(__name__)

RELAY_BATCH = 100
JOB_OUTBOX_RETENTION_SECONDS = 3600.0
# The worker's client also carries its blocking wait for the next job (BullMQ blocks up
# to 10 s), so its reads may take that long; the producer's never do, and it enqueues
# inside a database transaction that must not hang on a lost Redis.
WORKER_SOCKET_TIMEOUT = 30.0
PRODUCER_SOCKET_TIMEOUT = 5.0


def queue_redis(settings: Settings, socket_timeout: float) -> Redis:
    # BullMQ's scripts and job parsing expect str replies.
    return make_redis(settings, decode_responses=True, socket_timeout=socket_timeout)


@dataclass(frozen=True, slots=True)
class JobRun:
    """One attempt of a job, as a handler sees it."""

    job_id: str
    name: str
    data: Any
    attempt: int  # 1 for the first attempt
    enqueued_at: float  # Unix seconds
    started_at: float  # Unix seconds (this attempt)


Handler = Callable[[JobRun], Awaitable[str]]


class JobQueue:
    def __init__(self, settings: Settings) -> None:
        self.name = settings.jobs_queue
        self.redis = queue_redis(settings, PRODUCER_SOCKET_TIMEOUT)
        self._options = {
            "attempts": settings.jobs_attempts,
            "backoff": {"type": "exponential", "delay": settings.jobs_backoff_ms},
            "removeOnComplete": {"count": settings.jobs_keep_completed},
            "removeOnFail": {"count": settings.jobs_keep_failed},
        }
        self._queue = Queue(self.name, {"connection": self.redis, "prefix": settings.jobs_prefix})

    async def add(self, jobs: list[JobRequest]) -> None:
        """Add the jobs (one round trip); ids already on the queue are left as they are."""
        await self._queue.addBulk(
            [
                {
                    "name": job.name,
                    "data": job.payload,
                    "opts": {**self._options, "jobId": job.job_id},
                }
                for job in jobs
            ]
        )

    async def counts(self) -> dict[str, int]:
        counts = await self._queue.getJobCounts(*metrics.JOB_STATES)
        return {state: int(counts.get(state, 0)) for state in metrics.JOB_STATES}

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def close(self) -> None:
        await self._queue.close()


class JobWorker:
    """Runs `handler` for each job of the queue, JOBS_CONCURRENCY at a time."""

    def __init__(self, settings: Settings, handler: Handler, *, name: str) -> None:
        self.queue = settings.jobs_queue
        self.handler = handler
        self.ack_delay = settings.jobs_ack_delay_ms / 1000.0
        self._worker = Worker(
            settings.jobs_queue,
            self._process,
            {
                "connection": queue_redis(settings, WORKER_SOCKET_TIMEOUT),
                "prefix": settings.jobs_prefix,
                "name": name,
                "autorun": False,
                "concurrency": settings.jobs_concurrency,
                "lockDuration": settings.jobs_lock_ms,
                "stalledInterval": settings.jobs_stalled_interval_ms,
                "maxStalledCount": settings.jobs_max_stalled_count,
                # After a lost Redis connection, ask again within 2 s (the library's
                # default waits 15 s).
                "runRetryDelay": 2000,
            },
        )
        self._worker.on("stalled", self._on_stalled)
        self._worker.on("error", self._on_error)

    async def run(self, stopping: asyncio.Event) -> None:
        """Take jobs until closed; raises when the library's loop ends by itself, so the
        process reports itself dead (/healthz/live) rather than idling with jobs waiting."""
        delay = 0.5
        while not stopping.is_set():
            try:
                await self._worker.run()
            except (RedisError, OSError) as exc:
                # Redis away at start (the first command names the client): wait for it,
                # as the API does, instead of dying and crash-looping the pod.
                log.warning("queue not reachable yet", extra={"error": repr(exc)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=delay)
                delay = min(delay * 2, 10.0)
                continue
            if not stopping.is_set():
                raise RuntimeError("the queue worker's loop ended while not closing")
            return

    async def close(self, timeout: float) -> bool:
        """Stop taking jobs and wait for the ones running; True when they all finished.

        Past `timeout` the running jobs are cancelled: their database transaction rolls
        back (no effect) or had committed (the effect is there, and a second run is a
        no-op); their lock expires and the stall check of another worker hands them back.
        """
        try:
            await asyncio.wait_for(asyncio.shield(self._worker.close()), timeout)
            return True
        except TimeoutError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._worker.close(force=True), 2.0)
            return False

    async def _process(self, job: Job, token: str) -> str:
        now = time.time()
        run = JobRun(
            job_id=str(job.id),
            name=str(job.name),
            data=job.data,
            attempt=int(job.attemptsMade) + 1,
            enqueued_at=int(job.timestamp) / 1000.0,
            started_at=(int(job.processedOn) / 1000.0) or now,
        )
        if run.attempt == 1:
            metrics.JOB_WAIT.labels(self.queue, run.name).observe(
                max(0.0, run.started_at - run.enqueued_at)
            )
        started = time.monotonic()
        outcome = "completed"
        try:
            result = await self.handler(run)
            if self.ack_delay:
                # Test knob: a kill now lands after the effect and before the queue knows.
                await asyncio.sleep(self.ack_delay)
            return result
        except JobRejected as exc:
            outcome = "failed"
            log.warning("job rejected", extra={"job_id": run.job_id, "error": str(exc)})
            raise UnrecoverableError(str(exc)) from exc
        except Exception as exc:
            attempts = int(job.opts.get("attempts") or 1)
            outcome = "retried" if run.attempt < attempts else "failed"
            log.warning(
                "job attempt failed",
                extra={
                    "job_id": run.job_id,
                    "attempt": run.attempt,
                    "outcome": outcome,
                    "error": repr(exc),
                },
            )
            raise
        finally:
            metrics.JOB_RUN.labels(self.queue, run.name, outcome).observe(
                time.monotonic() - started
            )
            metrics.JOBS_PROCESSED.labels(self.queue, run.name, outcome).inc()

    def _on_stalled(self, job_id: str, *_: Any) -> None:
        metrics.JOBS_STALLED.labels(self.queue).inc()
        log.warning("stalled job handed back", extra={"job_id": job_id})

    def _on_error(self, error: Exception, *_: Any) -> None:
        log.warning("queue worker error", extra={"error": repr(error)})


class JobRelay:
    """Job outbox -> queue. Rows are taken FOR UPDATE SKIP LOCKED (every process may
    relay); a crash between the add and the commit adds the job again under the same id,
    which the queue ignores while the job is kept (JOBS_KEEP_COMPLETED), and whose effect
    is a no-op otherwise."""

    def __init__(self, pool: Pool, queue: JobQueue) -> None:
        self.pool = pool
        self.queue = queue
        self.wake = asyncio.Event()
        self._pruned_at = 0.0

    def notify(self) -> None:
        self.wake.set()

    async def enqueue_batch(self) -> int:
        async with self.pool.connection() as conn, conn.transaction():
            rows = await commands.lock_pending_jobs(conn, RELAY_BATCH)
            if not rows:
                return 0
            await self.queue.add([job for _, job in rows])
            await commands.mark_jobs_enqueued(conn, [row_id for row_id, _ in rows])
        metrics.JOB_OUTBOX_ENQUEUED.inc(len(rows))
        return len(rows)

    async def _prune(self) -> None:
        if time.monotonic() - self._pruned_at < 60.0:
            return
        self._pruned_at = time.monotonic()
        async with self.pool.connection() as conn:
            await commands.delete_enqueued_jobs_before(conn, JOB_OUTBOX_RETENTION_SECONDS)

    async def run(self, stopping: asyncio.Event) -> None:
        backoff = 0.1
        while not stopping.is_set():
            try:
                self.wake.clear()
                enqueued = await self.enqueue_batch()
                await self._prune()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("job relay failed; retrying", extra={"error": repr(exc)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if enqueued == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=0.25)
