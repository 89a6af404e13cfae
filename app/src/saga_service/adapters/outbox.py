"""Transactional outbox relay: publishes unpublished outbox rows to Kafka (key = saga id).

A new saga's first event goes to the starts topic, every later one to the events topic:
consumers take a new saga only when no step of a saga under way is waiting, so sagas
already started never queue behind a burst of new orders (see entrypoints/consumer.py).

Rows are claimed (locked with SKIP LOCKED and marked published, one statement) in a
transaction that commits only after Kafka has acknowledged them, so every process can relay
at once without publishing a row twice in the normal case; a failed publish rolls the mark
back, and a crash between the Kafka ack and the commit publishes a row again, which the
idempotent consumer absorbs (at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer

from saga_service.adapters.postgres import commands
from saga_service.adapters.postgres.db import Pool
from saga_service.domain.saga import INITIAL_EVENT
from saga_service.observability import metrics

log = logging.getLogger(__name__)

BATCH = 200


def kafka_headers(row: commands.OutboxRow) -> list[tuple[str, bytes]]:
    headers = [(k, v.encode()) for k, v in row.headers.items()]
    headers.append(("event_type", row.event_type.encode()))
    headers.append(("event_id", str(row.event_id).encode()))
    return headers


class OutboxRelay:
    def __init__(
        self, pool: Pool, producer: AIOKafkaProducer, *, events_topic: str, starts_topic: str
    ) -> None:
        self.pool = pool
        self.producer = producer
        self.events_topic = events_topic
        self.starts_topic = starts_topic
        self.wake = asyncio.Event()

    def topic_of(self, row: commands.OutboxRow) -> str:
        return self.starts_topic if row.event_type == INITIAL_EVENT else self.events_topic

    def notify(self) -> None:
        self.wake.set()

    async def publish_batch(self) -> int:
        async with self.pool.connection() as conn, conn.transaction():
            rows = await commands.claim_unpublished(conn, BATCH)
            if not rows:
                return 0
            pending = [
                await self.producer.send(
                    self.topic_of(row),
                    value=row.payload.encode(),
                    key=str(row.saga_id).encode(),
                    headers=kafka_headers(row),
                )
                for row in rows
            ]
            await asyncio.gather(*pending)
        metrics.OUTBOX_PUBLISHED.inc(len(rows))
        return len(rows)

    async def run(self, stopping: asyncio.Event) -> None:
        backoff = 0.1
        while not stopping.is_set():
            try:
                self.wake.clear()
                published = await self.publish_batch()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay failed; retrying", extra={"error": repr(exc)})
                published = 0
                await _sleep_or_stop(stopping, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if published == 0:
                # Our own writes wake us at once; rows of other processes within 250 ms.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=0.25)


async def _sleep_or_stop(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
