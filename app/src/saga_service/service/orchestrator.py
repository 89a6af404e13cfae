"""Runs the order saga's steps against Postgres (and Redis locks for stock).

Every step is one transaction: [processed-event row] + the step's effect + the saga's new
state + a saga_steps row + the next event in the outbox. Whoever runs a step (a consumer
of the previous event, or the recovery sweep after a lease expired) locks the saga row
and checks the state first, so a step applies at most once however often it is asked.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from collections.abc import Callable

from saga_service.adapters.lock import LockService
from saga_service.adapters.postgres import commands
from saga_service.adapters.postgres.commands import Effect, FencingRejected, SagaRow
from saga_service.adapters.postgres.db import Conn, Pool
from saga_service.domain.events import SagaEvent
from saga_service.domain.jobs import order_document_job
from saga_service.domain.order import OrderItem, OrderStatus
from saga_service.domain.payment import PaymentStatus, decide_confirmation, decide_payment
from saga_service.domain.saga import (
    SagaState,
    Step,
    StepOutcome,
    Transition,
    give_up,
    is_final,
    step_for,
    transition,
)
from saga_service.domain.stock import StockLevel, decide_reservation
from saga_service.observability import metrics, tracing
from saga_service.service.event_headers import event_headers
from saga_service.service.fencing import FENCING_RETRIES, lift_token_floor

log = logging.getLogger(__name__)


class SagaNotFound(Exception):
    pass


class RunResult(enum.StrEnum):
    ADVANCED = "processed"
    DUPLICATE = "duplicate"
    STALE = "stale"


class SagaExecutor:
    def __init__(
        self,
        pool: Pool,
        locks: LockService,
        *,
        instance_id: str,
        consumer_name: str,
        lease_seconds: float,
        step_delay_ms: int = 0,
        jobs_enabled: bool = False,
        on_outbox_write: Callable[[], None] = lambda: None,
        on_job_write: Callable[[], None] = lambda: None,
    ) -> None:
        self.pool = pool
        self.locks = locks
        self.instance_id = instance_id
        self.consumer_name = consumer_name
        self.lease_seconds = lease_seconds
        self.step_delay = step_delay_ms / 1000.0
        self.jobs_enabled = jobs_enabled
        self.on_outbox_write = on_outbox_write
        # only the confirming step writes a job: the job relay is woken for that alone
        self.on_job_write = on_job_write

    async def run_step(
        self,
        saga_id: uuid.UUID,
        expected: SagaState,
        *,
        event_id: uuid.UUID | None = None,
        source: str = "consumer",
    ) -> RunResult:
        """Run the step due in `expected` if the saga is still there.

        With `event_id` the processed-event row is written in the same transaction, so a
        redelivered event is a no-op (DUPLICATE). A saga that has moved on gives STALE.
        Raises on transient trouble (database, locks): the caller retries or leaves it to
        the recovery sweep.
        """
        step = step_for(expected)
        if step is None:
            if event_id is not None:
                async with self.pool.connection() as conn:  # one statement, one transaction
                    dup = not await commands.mark_processed(conn, self.consumer_name, event_id)
                return RunResult.DUPLICATE if dup else RunResult.STALE
            return RunResult.STALE
        # Which process runs which step, and from where (consumer or recovery): the trail
        # to follow when a saga is taken over.
        with tracing.bound(saga_id=str(saga_id)):
            log.debug(
                "saga step starting",
                extra={
                    "step": step.value,
                    "source": source,
                    "step_delay_ms": round(self.step_delay * 1000),
                },
            )
        if self.step_delay:
            await asyncio.sleep(self.step_delay)
        started = time.monotonic()
        outcome = "error"
        try:
            if step is Step.RESERVE_STOCK:
                result, outcome = await self._run_reserve(saga_id, expected, event_id, source)
            else:
                result, outcome = await self._run_simple(saga_id, expected, step, event_id, source)
            return result
        finally:
            if outcome not in (RunResult.DUPLICATE, RunResult.STALE):
                metrics.STEP_DURATION.labels(step.value, outcome).observe(
                    time.monotonic() - started
                )

    async def retry_later(self, saga_id: uuid.UUID, expected: SagaState, error: str) -> None:
        """A step that failed for now: the recovery sweep retries it once a step's lease has
        passed (a new saga's own lease, SAGA_START_LEASE_SECONDS, would be much longer)."""
        async with self.pool.connection() as conn:
            await commands.postpone_saga(conn, saga_id, expected, self.lease_seconds, error)

    async def give_up(self, saga_id: uuid.UUID, expected: SagaState, attempts: int) -> RunResult:
        """A forward step that could not progress: go to compensation instead."""
        async with self.pool.connection() as conn, conn.transaction():
            saga = await commands.get_saga(conn, saga_id, for_update=True)
            if saga is None or saga.state is not expected:
                return RunResult.STALE
            tr = give_up(expected)
            await self._advance(conn, saga, tr, f"gave up after {attempts} attempts", "recovery")
        metrics.RECOVERY_GAVE_UP.inc()
        self._after_commit(saga, tr)
        return RunResult.ADVANCED

    async def _begin(
        self, conn: Conn, saga_id: uuid.UUID, expected: SagaState, event_id: uuid.UUID | None
    ) -> tuple[SagaRow | None, RunResult | None]:
        first, saga = await commands.begin_step(conn, self.consumer_name, event_id, saga_id)
        if not first:
            return None, RunResult.DUPLICATE
        if saga is None:
            raise SagaNotFound(str(saga_id))
        if saga.state is not expected:
            return None, RunResult.STALE
        return saga, None

    async def _run_simple(
        self,
        saga_id: uuid.UUID,
        expected: SagaState,
        step: Step,
        event_id: uuid.UUID | None,
        source: str,
    ) -> tuple[RunResult, str]:
        async with self.pool.connection() as conn, conn.transaction():
            saga, early = await self._begin(conn, saga_id, expected, event_id)
            if saga is None:
                assert early is not None
                return early, early.value
            outcome, detail, effects = await self._effect(conn, saga, step)
            tr = transition(expected, outcome)
            await self._advance(conn, saga, tr, detail, source, effects)
        self._after_commit(saga, tr)
        return RunResult.ADVANCED, outcome.value

    async def _run_reserve(
        self, saga_id: uuid.UUID, expected: SagaState, event_id: uuid.UUID | None, source: str
    ) -> tuple[RunResult, str]:
        async with self.pool.connection() as conn:
            found = await commands.saga_and_items(conn, saga_id)
        if found is None:
            raise SagaNotFound(str(saga_id))
        seen, items = found
        if seen.state is not expected:
            # Moved on already; still record the event so a redelivery is a cheap no-op.
            if event_id is not None:
                async with self.pool.connection() as conn:  # one statement, one transaction
                    new = await commands.mark_processed(conn, self.consumer_name, event_id)
                return (RunResult.STALE, "stale") if new else (RunResult.DUPLICATE, "duplicate")
            return RunResult.STALE, "stale"
        for attempt in range(FENCING_RETRIES):
            async with self.locks.hold([i.sku for i in items]) as tokens:
                try:
                    async with self.pool.connection() as conn, conn.transaction():
                        saga, early = await self._begin(conn, saga_id, expected, event_id)
                        if saga is None:
                            assert early is not None
                            return early, early.value
                        levels: dict[str, StockLevel] = {}
                        for item in items:  # sorted by SKU: row locks in one order
                            level = await commands.fence_stock(conn, item.sku, tokens[item.sku])
                            if level is not None:
                                levels[item.sku] = level
                        decision = decide_reservation(levels, items)
                        effects: tuple[Effect, ...] = ()
                        if decision.ok:
                            effects = (
                                *map(commands.stock_level, decision.new_levels.values()),
                                commands.reservations(saga_id, items, tokens),
                            )
                            outcome, detail = StepOutcome.SUCCEEDED, _describe(items)
                        else:
                            outcome, detail = StepOutcome.FAILED, decision.reason
                        tr = transition(expected, outcome)
                        await self._advance(conn, saga, tr, detail, source, effects)
                except FencingRejected as exc:
                    await lift_token_floor(self.pool, self.locks, exc, attempt)
                    continue
            self._after_commit(saga, tr)
            return RunResult.ADVANCED, outcome.value
        raise LockLost(f"stock writes for saga {saga_id} kept being fenced off")

    async def _effect(
        self, conn: Conn, saga: SagaRow, step: Step
    ) -> tuple[StepOutcome, str, tuple[Effect, ...]]:
        """The step's outcome and its detail; writes whose result decides nothing are given
        back as effects, for the statement that advances the saga to carry."""
        if step is Step.CHARGE_PAYMENT:
            decision = decide_payment(saga.customer_id, saga.total_cents)
            status = PaymentStatus.CHARGED if decision.approved else PaymentStatus.DECLINED
            charge = (commands.payment(saga, status, decision.reason),)
            if decision.approved:
                return StepOutcome.SUCCEEDED, f"charged {saga.total_cents} cents", charge
            return StepOutcome.FAILED, f"payment declined: {decision.reason}", charge
        if step is Step.CONFIRM_ORDER:
            decision = decide_confirmation(saga.customer_id)
            if not decision.approved:
                return StepOutcome.FAILED, f"confirmation refused: {decision.reason}", ()
            units = await commands.settle_reservations(conn, saga.saga_id, release=False)
            confirm = commands.order_status(saga.order_id, OrderStatus.CONFIRMED)
            # In the confirming transaction: the document job exists iff the order is
            # confirmed (the job relay puts it on the queue after the commit).
            document = order_document_job(
                saga.order_id, saga.saga_id, tracing.current_traceparent()
            )
            effects = (confirm, commands.job(document)) if self.jobs_enabled else (confirm,)
            return StepOutcome.SUCCEEDED, f"{units} units shipped", effects
        if step is Step.REFUND_PAYMENT:
            cents = await commands.refund_payment(conn, saga.saga_id)
            return StepOutcome.SUCCEEDED, f"refunded {cents} cents", ()
        if step is Step.RELEASE_STOCK:
            units = await commands.settle_reservations(conn, saga.saga_id, release=True)
            return StepOutcome.SUCCEEDED, f"released {units} units", ()
        if step is Step.CANCEL_ORDER:
            cancel = commands.order_status(saga.order_id, OrderStatus.CANCELLED)
            return StepOutcome.SUCCEEDED, "order cancelled", (cancel,)
        raise AssertionError(f"no effect for {step}")

    async def _advance(
        self,
        conn: Conn,
        saga: SagaRow,
        tr: Transition,
        detail: str,
        source: str,
        effects: tuple[Effect, ...] = (),
    ) -> None:
        event = SagaEvent(uuid.uuid4(), tr.event_type, saga.saga_id, saga.order_id, tr.target)
        await commands.advance_saga(
            conn,
            saga,
            tr,
            detail=detail,
            executed_by=f"{self.instance_id}/{source}",
            lease_seconds=self.lease_seconds,
            event=event,
            headers=event_headers(saga),
            effects=effects,
        )

    def _after_commit(self, saga: SagaRow, tr: Transition) -> None:
        self.on_outbox_write()
        confirmed = tr.step is Step.CONFIRM_ORDER and tr.outcome is StepOutcome.SUCCEEDED
        if self.jobs_enabled and confirmed:  # the step's transaction wrote the document job
            self.on_job_write()
        if tr.outcome is StepOutcome.FAILED:
            metrics.STEP_FAILURES.labels(tr.step.value).inc()
        with tracing.bound(saga_id=str(saga.saga_id), order_id=str(saga.order_id)):
            log.info(
                "saga step done",
                extra={
                    "step": tr.step.value,
                    "outcome": tr.outcome.value,
                    "state": tr.target.value,
                },
            )
        if is_final(tr.target):
            metrics.SAGA_DURATION.labels(tr.target.value).observe(saga.age_seconds)
            if tr.target is SagaState.COMPLETED:
                metrics.SAGAS_COMPLETED.inc()
            else:
                metrics.SAGAS_COMPENSATED.inc()


class LockLost(Exception):
    pass


def _describe(items: list[OrderItem]) -> str:
    return "reserved " + ", ".join(f"{i.quantity} x {i.sku}" for i in items)
