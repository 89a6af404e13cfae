"""Lease sweep: resumes sagas whose lease expired (their process died, or their event was
lost in a retry), with backoff; a forward step that still cannot progress after
SAGA_MAX_ATTEMPTS gives up and the saga is compensated, so no saga stays in flight.

Also refreshes the database-wide gauges (outbox lag, sagas in flight) and prunes
published outbox rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from saga_service.adapters.postgres import commands, queries
from saga_service.adapters.postgres.db import Pool
from saga_service.domain.saga import FORWARD_STATES, retry_delay_seconds
from saga_service.observability import metrics, spans, tracing
from saga_service.service.orchestrator import SagaExecutor

log = logging.getLogger(__name__)

OUTBOX_RETENTION_SECONDS = 3600.0


class RecoverySweeper:
    def __init__(
        self,
        pool: Pool,
        executor: SagaExecutor,
        *,
        instance_id: str,
        lease_seconds: float,
        max_attempts: int,
        batch: int = 50,
    ) -> None:
        self.pool = pool
        self.executor = executor
        self.instance_id = instance_id
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.batch = batch
        self.interval = max(0.2, min(2.0, lease_seconds / 5))

    async def sweep_once(self) -> int:
        async with self.pool.connection() as conn, conn.transaction():
            claimed = await commands.claim_expired_sagas(
                conn, owner=self.instance_id, limit=self.batch, lease_seconds=self.lease_seconds
            )
        for saga_id, state, attempts, traceparent in claimed:
            # in the saga's own trace, under the request that placed it
            with (
                spans.started(
                    "saga recovery",
                    tracing.parse_traceparent(traceparent),
                    attributes={"saga.id": str(saga_id), "saga.state": state.value},
                ) as span,
                tracing.bound(saga_id=str(saga_id)),
            ):
                metrics.RECOVERY_RESUMED.inc()
                log.info(
                    "resuming saga after lease expiry",
                    extra={"state": state.value, "attempts": attempts},
                )
                try:
                    if state in FORWARD_STATES and attempts > self.max_attempts:
                        await self.executor.give_up(saga_id, state, attempts)
                    else:
                        await self.executor.run_step(saga_id, state, source="recovery")
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    delay = retry_delay_seconds(attempts, cap=self.lease_seconds)
                    span.fail(f"resumed step failed: {exc!r}")
                    log.warning(
                        "resumed step failed; backing off",
                        extra={"error": repr(exc), "retry_in_s": delay},
                    )
                    try:
                        async with self.pool.connection() as conn:
                            await commands.postpone_saga(conn, saga_id, state, delay, repr(exc))
                    except Exception as exc2:  # the lease we set expires on its own
                        log.warning("could not postpone saga", extra={"error": repr(exc2)})
        return len(claimed)

    async def refresh_gauges(self) -> None:
        async with self.pool.connection() as conn:
            pending, lag, inflight = await queries.backlog_stats(conn)
        metrics.OUTBOX_PENDING.set(pending)
        metrics.OUTBOX_LAG.set(lag)
        metrics.SAGAS_IN_FLIGHT.set(inflight)

    async def run(self, stopping: asyncio.Event) -> None:
        last_prune = 0.0
        while not stopping.is_set():
            try:
                claimed = await self.sweep_once()
                await self.refresh_gauges()
                if time.monotonic() - last_prune > 60:
                    async with self.pool.connection() as conn:
                        await commands.delete_published_before(conn, OUTBOX_RETENTION_SECONDS)
                    last_prune = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("recovery sweep failed", extra={"error": repr(exc)})
                claimed = 0
            if claimed < self.batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=self.interval)
