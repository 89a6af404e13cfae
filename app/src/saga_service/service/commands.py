"""The commands the API takes: place an order (which starts its saga) and set a SKU's stock.

The saga's later steps are the orchestrator's; what the API reads is
adapters/postgres/queries.py.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from saga_service.adapters.lock import LockService
from saga_service.adapters.postgres import commands as writes
from saga_service.adapters.postgres.commands import FencingRejected
from saga_service.adapters.postgres.db import Pool, session_lost
from saga_service.domain import order as order_domain
from saga_service.domain.events import SagaEvent
from saga_service.domain.order import OrderItem
from saga_service.domain.saga import INITIAL_EVENT, SagaState
from saga_service.domain.stock import StockLevel
from saga_service.observability import metrics, tracing
from saga_service.service.event_headers import event_headers
from saga_service.service.fencing import FENCING_RETRIES, lift_token_floor

log = logging.getLogger(__name__)

# A PostgreSQL failover or switchover ends every session to the old primary, and the next
# statement on each pooled connection fails. An order is then stored again on a new
# connection (the pool waits for the new primary) for up to this long, so that a client
# sees a slower answer instead of a 503; a client's timeout is usually 10 s or more.
ORDER_STORE_RETRY_SECONDS = 8.0


class UnknownSku(Exception):
    def __init__(self, skus: list[str]) -> None:
        super().__init__("unknown sku: " + ", ".join(skus))
        self.skus = skus


@dataclass(frozen=True, slots=True)
class PlacedOrder:
    order_id: uuid.UUID
    saga_id: uuid.UUID


class OrderCommands:
    def __init__(
        self,
        pool: Pool,
        locks: LockService,
        *,
        instance_id: str,
        max_items: int,
        start_lease_seconds: float,
        on_outbox_write: Callable[[], None] = lambda: None,
    ) -> None:
        self.pool = pool
        self.locks = locks
        self.instance_id = instance_id
        self.max_items = max_items
        # a new saga may wait for its first step this long (SAGA_START_LEASE_SECONDS)
        self.start_lease_seconds = start_lease_seconds
        self.on_outbox_write = on_outbox_write

    async def place_order(self, customer_id: str, items: list[OrderItem]) -> PlacedOrder:
        """Validate, then store the order, its saga and the OrderPlaced event at once."""
        order_domain.validate_customer_id(customer_id)
        items = order_domain.validate_items(items, self.max_items)
        order_id, saga_id = uuid.uuid4(), uuid.uuid4()
        with tracing.bound(saga_id=str(saga_id), order_id=str(order_id)):
            deadline = time.monotonic() + ORDER_STORE_RETRY_SECONDS
            for attempt in itertools.count():
                try:
                    await self._store_order(order_id, saga_id, customer_id, items, attempt > 0)
                    break
                except Exception as exc:
                    if not session_lost(exc) or time.monotonic() >= deadline:
                        raise
                    log.warning(
                        "order store interrupted: the session ended; retrying",
                        extra={"error": repr(exc), "attempt": attempt + 1},
                    )
                    metrics.ORDER_STORE_RETRIES.inc()
                    await asyncio.sleep(min(0.1 * (attempt + 1), 1.0))
            metrics.SAGAS_STARTED.inc()
            log.info("order placed", extra={"items": len(items)})
        self.on_outbox_write()
        return PlacedOrder(order_id, saga_id)

    async def _store_order(
        self,
        order_id: uuid.UUID,
        saga_id: uuid.UUID,
        customer_id: str,
        items: list[OrderItem],
        retry: bool,
    ) -> None:
        async with self.pool.connection() as conn:
            # A session lost at COMMIT leaves it unknown whether the order was stored: a
            # retry looks first (on the new primary, which holds every acknowledged commit).
            if retry and await writes.order_exists(conn, order_id):
                return
            event = SagaEvent(
                uuid.uuid4(), INITIAL_EVENT, saga_id, order_id, SagaState.RESERVING_STOCK
            )
            unknown = await writes.insert_order(
                conn,
                order_id=order_id,
                saga_id=saga_id,
                customer_id=customer_id,
                items=items,
                total_cents=order_domain.order_total_cents(items),
                correlation_id=tracing.correlation_var.get(),
                traceparent=tracing.current_traceparent(),
                lease_seconds=self.start_lease_seconds,
                owner=self.instance_id,
                event=event,
                headers=event_headers(),
            )
        if unknown:
            raise UnknownSku(unknown)

    async def set_stock(self, sku: str, quantity: int) -> StockLevel:
        order_domain.validate_sku(sku)
        for attempt in range(FENCING_RETRIES):
            async with self.locks.hold([sku]) as tokens:
                try:
                    async with self.pool.connection() as conn, conn.transaction():
                        return await writes.set_stock(conn, sku, quantity, tokens[sku])
                except FencingRejected as exc:
                    await lift_token_floor(self.pool, self.locks, exc, attempt)
        raise RuntimeError(f"stock write for {sku} kept being fenced off")
