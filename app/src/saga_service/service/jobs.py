"""The handlers of the background jobs: what a job does to the database.

Exactly-once effect: the queue delivers a job at least once (a worker killed after the
effect and before its acknowledgement makes it run again), so each effect is one
transaction guarded by a unique key in the database, and a second run finds it and
changes nothing.
"""

from __future__ import annotations

import logging

from opentelemetry.trace import SpanKind

from saga_service.adapters.job_queue import JobRun
from saga_service.adapters.postgres import commands
from saga_service.adapters.postgres.db import Pool
from saga_service.domain import jobs
from saga_service.domain.order import OrderStatus
from saga_service.observability import spans, tracing

log = logging.getLogger(__name__)


class OrderNotReady(Exception):
    """The order is missing or not confirmed: retried with backoff, then failed."""


class JobHandlers:
    def __init__(self, pool: Pool, *, instance_id: str) -> None:
        self.pool = pool
        self.instance_id = instance_id

    async def handle(self, run: JobRun) -> str:
        if run.name == jobs.ORDER_DOCUMENT:
            return await self.order_document(run)
        raise jobs.JobRejected(f"unknown job name {run.name!r}")

    async def order_document(self, run: JobRun) -> str:
        order_id, saga_id = jobs.parse_order_document(run.data)
        traceparent = run.data.get("traceparent") if isinstance(run.data, dict) else None
        with (
            spans.started(
                f"{run.name} job",
                tracing.parse_traceparent(traceparent if isinstance(traceparent, str) else None),
                kind=SpanKind.CONSUMER,
                attributes={
                    "job.id": run.job_id,
                    "job.attempt": run.attempt,
                    "saga.id": str(saga_id),
                },
            ),
            tracing.bound(saga_id=str(saga_id), order_id=str(order_id)),
        ):
            async with self.pool.connection() as conn, conn.transaction():
                source = await commands.document_source(conn, order_id)
                # A job exists only once its saga confirmed the order, so neither case can
                # come from our own outbox; retrying is harmless and leaves the decision
                # to the failed set, where an operator sees the reason.
                if source is None:
                    raise OrderNotReady(f"order {order_id} not found")
                if source.status is not OrderStatus.CONFIRMED:
                    raise OrderNotReady(f"order {order_id} is {source.status}, not CONFIRMED")
                body = jobs.render_confirmation(
                    source.order_id, source.customer_id, source.items, source.total_cents
                )
                created = await commands.insert_document(
                    conn,
                    source,
                    body=body,
                    job_id=run.job_id,
                    rendered_by=f"{self.instance_id}/attempt-{run.attempt}",
                )
            result = "created" if created else "exists"
            log.info(
                "order document %s", result, extra={"job_id": run.job_id, "attempt": run.attempt}
            )
            return result
