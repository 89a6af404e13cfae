"""Kafka consumer of saga events (one consumer group across all processes).

Each message names the state its saga entered; the consumer runs that state's step. The
processed-event row is written in the step's own transaction, so redelivery (after a
rebalance, a crash before the offset commit, a relay retry) has no second effect.
Messages of one saga (one key) run in order; different sagas run concurrently, without a
batch barrier; offsets are committed up to the first message not yet finished.

Two topics, two priorities: the events topic carries the next step of sagas under way, the
starts topic new sagas' first events. A free slot takes a waiting step first and a new
saga only when no step waits, so under overload the sagas already started finish at the
speed of the steps themselves while new orders wait, stored and acknowledged, on the
starts topic (the backlog that makes the autoscaler add pods).

A message that can never be processed goes to the dead-letter topic with the reason in
its headers, its offset is committed, and consumption goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque

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
from saga_service.domain.saga import INITIAL_EVENT
from saga_service.observability import metrics, spans, tracing
from saga_service.service.orchestrator import RunResult, SagaExecutor, SagaNotFound

log = logging.getLogger(__name__)

STEP_RETRIES = 3
POSTPONE_TIMEOUT = 5.0
# How often the backlog gauge (the autoscaling signal) is measured.
BACKLOG_INTERVAL_SECONDS = 1.0
# Steps fetched and waiting for a slot before the events partitions are paused; new sagas
# are fetched only to fill the slots (the rest wait on the starts topic, not in memory).
MAX_WAITING_STEPS = 500

Received = tuple[TopicPartition, ConsumerRecord[bytes, bytes]]


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
        events_topic: str,
        starts_topic: str,
        dead_letter_topic: str,
        group: str,
        concurrency: int,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.executor = executor
        self.events_topic = events_topic
        self.starts_topic = starts_topic
        self.dead_letter_topic = dead_letter_topic
        self.group = group
        self.slots = concurrency
        self.running = 0
        self.stopping = asyncio.Event()
        self._steps: deque[Received] = deque()
        self._starts: deque[Received] = deque()
        self._chains: dict[bytes | None, asyncio.Task[None]] = {}
        # per partition: offsets received and not yet finished (waiting or running)
        self._unfinished: dict[TopicPartition, set[int]] = {}
        self._received: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        metrics.CONSUMER_SLOTS.set(concurrency)

    async def run(self, stopping: asyncio.Event) -> None:
        """Fetch continuously into the two waiting queues; each record runs as soon as a
        slot is free and the one before it with the same key is done (no batch barrier);
        offsets are committed in the background up to the first record not yet finished
        on each partition."""
        self.stopping = stopping
        self.consumer.subscribe([self.events_topic, self.starts_topic], listener=_Rebalance(self))
        committer = asyncio.create_task(self._commit_loop(stopping))
        reporter = asyncio.create_task(self._backlog_loop(stopping))
        try:
            while not stopping.is_set():
                self._pause_full_queues()
                try:
                    batches = await self.consumer.getmany(
                        timeout_ms=100, max_records=MAX_WAITING_STEPS
                    )
                except KafkaError as exc:
                    log.warning("kafka fetch failed", extra={"error": repr(exc)})
                    await asyncio.sleep(0.5)
                    continue
                for tp, records in batches.items():
                    self._receive(tp, records)
                self._fill_slots()
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            # Finish what was started (its effects commit in Postgres), then commit offsets;
            # what waits for a slot is left to the partitions' next owner.
            self._steps.clear()
            self._starts.clear()
            if self._chains:
                await asyncio.wait(list(self._chains.values()), timeout=5.0)
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
            await self._commit()

    def _receive(self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        queue = self._starts if tp.topic == self.starts_topic else self._steps
        unfinished = self._unfinished.setdefault(tp, set())
        for record in records:
            unfinished.add(record.offset)
            queue.append((tp, record))
        if records:
            self._received[tp] = max(self._received.get(tp, -1), records[-1].offset)

    def _pause_full_queues(self) -> None:
        """Fetch steps until MAX_WAITING_STEPS wait, new sagas until a slot's worth waits
        (a slot that frees finds one here, not a fetch away): a paused partition keeps its
        records in Kafka, where they stay the backlog of whichever process owns it."""
        full = {
            self.events_topic: len(self._steps) >= MAX_WAITING_STEPS,
            self.starts_topic: len(self._starts) >= self.slots,
        }
        assigned = self.consumer.assignment()
        paused = self.consumer.paused()
        pause = [tp for tp in assigned if full.get(tp.topic, False) and tp not in paused]
        resume = [tp for tp in assigned if not full.get(tp.topic, False) and tp in paused]
        if pause:
            self.consumer.pause(*pause)
        if resume:
            self.consumer.resume(*resume)

    def _next_waiting(self) -> Received | None:
        """A waiting step of a saga under way before any new saga."""
        if self._steps:
            return self._steps.popleft()
        if self._starts:
            return self._starts.popleft()
        return None

    def _fill_slots(self) -> None:
        assigned = self.consumer.assignment()
        while self.running < self.slots and not self.stopping.is_set():
            waiting = self._next_waiting()
            if waiting is None:
                return
            tp, record = waiting
            if tp not in assigned:
                # Revoked while it waited: the partition's new owner starts from the
                # committed offset, so running it here would only duplicate work.
                self._unfinished.get(tp, set()).discard(record.offset)
                continue
            self.running += 1
            previous = self._chains.get(record.key)
            task = asyncio.create_task(self._run_after(previous, tp, record))
            self._chains[record.key] = task
            task.add_done_callback(functools.partial(self._forget_chain, record.key))

    def _forget_chain(self, key: bytes | None, task: asyncio.Task[None]) -> None:
        if self._chains.get(key) is task:
            del self._chains[key]

    def forget_partitions(self, revoked: list[TopicPartition]) -> None:
        """Drop what waits on partitions that moved (their new owner reads it again)."""
        gone = set(revoked)
        for queue in (self._steps, self._starts):
            kept = []
            for tp, record in queue:
                if tp in gone:  # never started: no offset of it may hold commits back
                    self._unfinished.get(tp, set()).discard(record.offset)
                else:
                    kept.append((tp, record))
            queue.clear()
            queue.extend(kept)
        for tp in gone:
            self._received.pop(tp, None)
            self._committed.pop(tp, None)

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
            self._unfinished[tp].discard(record.offset)
            self.running -= 1
            self._fill_slots()

    def _commit_offsets(self) -> dict[TopicPartition, int]:
        offsets: dict[TopicPartition, int] = {}
        assigned = self.consumer.assignment()
        for tp, last in self._received.items():
            if tp not in assigned:
                continue
            unfinished = self._unfinished.get(tp)
            offset = min(unfinished) if unfinished else last + 1
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
            for tp in list(self._received):
                if tp not in self.consumer.assignment():
                    self._received.pop(tp, None)
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
        error = ""
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
                error = repr(exc)
                log.warning(
                    "saga step failed",
                    extra={"attempt": attempt, "error": repr(exc), "event_type": event.event_type},
                )
                if attempt == STEP_RETRIES or self.stopping.is_set():
                    break
                await asyncio.sleep(delay)
                delay *= 4
        # The saga's lease expires and the recovery sweep takes it from here.
        if event.event_type == INITIAL_EVENT:
            await self._shorten_start_lease(event, error)
        return "retry_later"

    async def _shorten_start_lease(self, event: SagaEvent, error: str) -> None:
        """A new saga's lease is long (SAGA_START_LEASE_SECONDS: it may wait on the starts
        topic), so a first step that failed gets a step's lease, for the sweep to retry it
        as soon as any other step. The database may be what failed: the slot keeps trying
        until it takes the write, or the process stops."""
        delay = 0.1
        while True:
            try:
                await asyncio.wait_for(
                    self.executor.retry_later(event.saga_id, event.state, error),
                    POSTPONE_TIMEOUT,
                )
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.stopping.is_set():  # its start lease still expires, only later
                    log.warning("new saga's lease left long", extra={"error": repr(exc)})
                    return
                log.warning("could not shorten a new saga's lease", extra={"error": repr(exc)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, POSTPONE_TIMEOUT)

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
        """Messages on this process's partitions not yet started: those fetched and waiting
        for a slot, and from the next one to fetch to the partition's end as the broker
        reports it now. The work gauge adds the messages running."""
        try:
            assigned = list(self.consumer.assignment())
            ends = await self.consumer.end_offsets(assigned) if assigned else {}
            backlog = len(self._steps) + len(self._starts)
            for tp in assigned:
                received = self._received.get(tp)
                if received is not None:
                    next_up = received + 1
                else:  # nothing received here since the assignment: it resumes where committed
                    committed = await self.consumer.committed(tp)
                    if committed is None:
                        committed = (await self.consumer.beginning_offsets([tp]))[tp]
                    next_up = committed
                backlog += max(0, ends.get(tp, next_up) - next_up)
        except (KafkaError, AssertionError, ValueError):
            return  # partitions moved meanwhile; the next round measures again
        metrics.CONSUMER_BACKLOG.set(backlog)
        metrics.CONSUMER_WORK.set(backlog + self.running)


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
        self.owner.forget_partitions(revoked)

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
