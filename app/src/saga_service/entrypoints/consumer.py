"""Kafka consumer of saga events (one consumer group across all processes).

Each message names the state its saga entered; the consumer runs that state's step. The
processed-event row is written in the step's own transaction, so redelivery (after a
rebalance, a crash before the offset commit, a relay retry) has no second effect.
Messages of one saga (one key) run in order; different sagas run concurrently, without a
batch barrier; offsets are committed up to the first message still in flight.
A message that can never be processed goes to the dead-letter topic with the reason in
its headers, its offset is committed, and consumption goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import CommitFailedError, KafkaError
from opentelemetry.trace import SpanKind

from saga_service.domain.events import MalformedEvent, SagaEvent, parse_event
from saga_service.observability import metrics, spans, tracing
from saga_service.service.orchestrator import RunResult, SagaExecutor, SagaNotFound

log = logging.getLogger(__name__)

STEP_RETRIES = 3
# How often the backlog gauge (the autoscaling signal) is measured.
BACKLOG_INTERVAL_SECONDS = 1.0


def _header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            try:
                return str(value.decode())
            except UnicodeDecodeError:
                return None
    return None


class SagaConsumer:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        executor: SagaExecutor,
        *,
        topic: str,
        dead_letter_topic: str,
        group: str,
        concurrency: int,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.executor = executor
        self.topic = topic
        self.dead_letter_topic = dead_letter_topic
        self.group = group
        self.limit = asyncio.Semaphore(concurrency)
        self.stopping = asyncio.Event()
        self._chains: dict[tuple[TopicPartition, bytes | None], asyncio.Task[None]] = {}
        self._in_flight: dict[TopicPartition, set[int]] = {}
        self._dispatched: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    async def run(self, stopping: asyncio.Event) -> None:
        """Fetch continuously; each record runs as soon as the one before it with the same
        key is done (no batch barrier); offsets are committed in the background up to the
        first record still in flight on each partition."""
        self.stopping = stopping
        self.consumer.subscribe([self.topic], listener=_Rebalance(self))
        committer = asyncio.create_task(self._commit_loop(stopping))
        reporter = asyncio.create_task(self._backlog_loop(stopping))
        try:
            while not stopping.is_set():
                try:
                    batches = await self.consumer.getmany(timeout_ms=100, max_records=500)
                except KafkaError as exc:
                    log.warning("kafka fetch failed", extra={"error": repr(exc)})
                    await asyncio.sleep(0.5)
                    continue
                for tp, records in batches.items():
                    for record in records:
                        await self._dispatch(tp, record)
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            # Finish what was started (its effects commit in Postgres), then commit offsets.
            if self._chains:
                await asyncio.wait(list(self._chains.values()), timeout=5.0)
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
            await self._commit()

    async def _dispatch(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        await self.limit.acquire()  # back-pressure: at most `concurrency` records in flight
        if tp not in self.consumer.assignment():
            # Revoked while this batch waited for a slot: the partition's new owner starts
            # from the committed offset, so running it here would only duplicate work (and
            # leave a stale position behind if the partition came back later).
            self.limit.release()
            return
        self._in_flight.setdefault(tp, set()).add(record.offset)
        self._dispatched[tp] = max(self._dispatched.get(tp, -1), record.offset)
        chain_key = (tp, record.key)
        previous = self._chains.get(chain_key)
        task = asyncio.create_task(self._run_after(previous, tp, record))
        self._chains[chain_key] = task
        task.add_done_callback(functools.partial(self._forget_chain, chain_key))

    def _forget_chain(
        self, key: tuple[TopicPartition, bytes | None], task: asyncio.Task[None]
    ) -> None:
        if self._chains.get(key) is task:
            del self._chains[key]

    async def _run_after(
        self,
        previous: asyncio.Task[None] | None,
        tp: TopicPartition,
        record: ConsumerRecord[bytes, bytes],
    ) -> None:
        try:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(previous)
            await self.handle(record)
        except Exception as exc:  # handle() keeps its own errors; this is a last resort
            log.error("event handling crashed", extra={"error": repr(exc)})
        finally:
            self._in_flight[tp].discard(record.offset)
            self.limit.release()

    def _commit_offsets(self) -> dict[TopicPartition, int]:
        offsets: dict[TopicPartition, int] = {}
        assigned = self.consumer.assignment()
        for tp, last in self._dispatched.items():
            if tp not in assigned:
                continue
            pending = self._in_flight.get(tp)
            offset = min(pending) if pending else last + 1
            if self._committed.get(tp) != offset:
                offsets[tp] = offset
        return offsets

    async def _commit(self) -> None:
        offsets = self._commit_offsets()
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
            self._committed.update(offsets)
        except (CommitFailedError, KafkaError, AssertionError, ValueError) as exc:
            # A rebalance moved the partition; its new owner sees these again (no-ops).
            log.warning("offset commit failed", extra={"error": repr(exc)})
            for tp in list(self._dispatched):
                if tp not in self.consumer.assignment():
                    self._dispatched.pop(tp, None)
                    self._committed.pop(tp, None)

    async def _commit_loop(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            await asyncio.sleep(0.2)
            await self._commit()

    async def handle(self, record: ConsumerRecord[bytes, bytes]) -> str:
        correlation = _header(record, "correlation_id")
        with (
            spans.started(
                f"{record.topic} process",
                tracing.parse_traceparent(_header(record, "traceparent")),
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": record.topic,
                    "messaging.destination.partition.id": str(record.partition),
                    "messaging.kafka.offset": record.offset,
                    "messaging.consumer.group.name": self.group,
                },
            ) as span,
            tracing.bound(correlation_id=correlation),
        ):
            try:
                event = parse_event(record.value, record.key)
            except MalformedEvent as exc:
                await self.dead_letter(record, f"malformed: {exc}")
                metrics.EVENTS_CONSUMED.labels("dead_lettered").inc()
                span.fail(f"malformed event: {exc}")
                return "dead_lettered"
            span.rename(f"{event.event_type} process")
            span.set({"saga.id": str(event.saga_id), "saga.event_type": event.event_type})
            with tracing.bound(saga_id=str(event.saga_id), order_id=str(event.order_id)):
                outcome = await self._run(record, event)
            span.set({"saga.outcome": outcome})
            if outcome in ("dead_lettered", "retry_later"):
                span.fail(outcome)
        metrics.EVENTS_CONSUMED.labels(outcome).inc()
        return outcome

    async def _run(self, record: ConsumerRecord[bytes, bytes], event: SagaEvent) -> str:
        delay = 0.05
        for attempt in range(1, STEP_RETRIES + 1):
            try:
                result = await self.executor.run_step(
                    event.saga_id, event.state, event_id=event.event_id, source="consumer"
                )
                return str(RunResult(result).value)
            except SagaNotFound:
                await self.dead_letter(record, "unknown saga_id")
                return "dead_lettered"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "saga step failed",
                    extra={"attempt": attempt, "error": repr(exc), "event_type": event.event_type},
                )
                if attempt == STEP_RETRIES or self.stopping.is_set():
                    break
                await asyncio.sleep(delay)
                delay *= 4
        # The saga's lease expires and the recovery sweep takes it from here.
        return "retry_later"

    async def dead_letter(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        headers = list(record.headers or ())
        headers += [
            ("dlq.reason", reason.encode()[:1000]),
            ("dlq.source.topic", record.topic.encode()),
            ("dlq.source.partition", str(record.partition).encode()),
            ("dlq.source.offset", str(record.offset).encode()),
            ("dlq.consumer.group", self.group.encode()),
        ]
        delay = 0.1
        while True:
            try:
                await self.producer.send_and_wait(
                    self.dead_letter_topic, value=record.value, key=record.key, headers=headers
                )
                break
            except KafkaError as exc:
                log.warning("dead-letter publish failed; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        metrics.DEAD_LETTERED.labels(reason.split(":", 1)[0]).inc()
        log.error(
            "message dead-lettered",
            extra={"reason": reason, "partition": record.partition, "offset": record.offset},
        )

    async def _backlog_loop(self, stopping: asyncio.Event) -> None:
        """Measure the backlog on its own clock: the fetch loop blocks while all slots are
        busy, which is exactly when the backlog grows and the autoscaler needs to see it."""
        while not stopping.is_set():
            try:
                # a round that stalls (a broker away) or fails is skipped, never the loop:
                # a metric must not stop, nor take the consumer with it
                await asyncio.wait_for(self._update_backlog(), timeout=5 * BACKLOG_INTERVAL_SECONDS)
            except Exception as exc:
                log.warning("backlog not measured this round", extra={"error": repr(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), BACKLOG_INTERVAL_SECONDS)

    async def _update_backlog(self) -> None:
        """Messages on this process's partitions not yet started: from the next one to
        dispatch (records fetched but waiting for a slot count too) to the partition's end
        as the broker reports it now."""
        try:
            assigned = list(self.consumer.assignment())
            ends = await self.consumer.end_offsets(assigned) if assigned else {}
            backlog = 0
            for tp in assigned:
                dispatched = self._dispatched.get(tp)
                if dispatched is not None:
                    next_up = dispatched + 1
                else:  # nothing started here since the assignment: it resumes where committed
                    committed = await self.consumer.committed(tp)
                    if committed is None:
                        committed = (await self.consumer.beginning_offsets([tp]))[tp]
                    next_up = committed
                backlog += max(0, ends.get(tp, next_up) - next_up)
        except (KafkaError, AssertionError, ValueError):
            return  # partitions moved meanwhile; the next round measures again
        metrics.CONSUMER_BACKLOG.set(backlog)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commit what is done before partitions move; forget the offsets of moved ones; measure
    how long consumption stood still."""

    def __init__(self, owner: SagaConsumer) -> None:
        self.owner = owner
        self.joined = False
        self.revoked_at: float | None = None

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.revoked_at = time.monotonic()
        await self.owner._commit()
        for tp in revoked:
            self.owner._dispatched.pop(tp, None)
            self.owner._committed.pop(tp, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        partitions = sorted(tp.partition for tp in assigned)
        if self.joined and self.revoked_at is not None:
            pause = time.monotonic() - self.revoked_at
            metrics.CONSUMER_REBALANCE_PAUSE.observe(pause)
            log.info(
                "consumer group rebalanced",
                extra={"pause_seconds": round(pause, 3), "partitions": partitions},
            )
        else:
            log.info("consumer group joined", extra={"partitions": partitions})
        self.joined = True
        self.revoked_at = None
