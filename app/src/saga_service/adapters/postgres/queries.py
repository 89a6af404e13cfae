"""The query side: reads behind GET /orders, /sagas and /stock, and the database-wide gauges.
Nothing here locks or writes, so a read never waits on a saga step's row locks."""

from __future__ import annotations

import uuid
from typing import Any

from saga_service.adapters.postgres.db import Conn
from saga_service.domain.stock import StockLevel


async def get_order(conn: Conn, order_id: uuid.UUID) -> dict[str, Any] | None:
    cur = await conn.execute(
        "SELECT order_id, saga_id, customer_id, total_cents, status FROM orders"
        " WHERE order_id = %s",
        (order_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    cur = await conn.execute(
        "SELECT sku, quantity, unit_price_cents FROM order_items WHERE order_id = %s ORDER BY sku",
        (order_id,),
    )
    row["items"] = await cur.fetchall()
    return row


async def saga_view(conn: Conn, saga_id: uuid.UUID) -> dict[str, Any] | None:
    cur = await conn.execute(
        "SELECT saga_id, order_id, state, attempts, failed_step, last_error, lease_owner,"
        " created_at, updated_at, finished_at FROM sagas WHERE saga_id = %s",
        (saga_id,),
    )
    saga = await cur.fetchone()
    if saga is None:
        return None
    cur = await conn.execute(
        "SELECT step, outcome, from_state, to_state, detail, executed_by, created_at"
        " FROM saga_steps WHERE saga_id = %s ORDER BY id",
        (saga_id,),
    )
    saga["steps"] = await cur.fetchall()
    return saga


async def get_stock(conn: Conn, sku: str) -> StockLevel | None:
    cur = await conn.execute("SELECT sku, available, reserved FROM stock WHERE sku = %s", (sku,))
    row = await cur.fetchone()
    return StockLevel(row["sku"], row["available"], row["reserved"]) if row else None


async def backlog_stats(conn: Conn) -> tuple[int, float, int]:
    """(unpublished outbox rows, age of the oldest in seconds, sagas in flight)."""
    cur = await conn.execute(
        "SELECT count(*) AS n,"
        " COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)), 0) AS lag"
        " FROM outbox WHERE published_at IS NULL"
    )
    row = await cur.fetchone()
    assert row is not None
    cur = await conn.execute(
        "SELECT count(*) AS n FROM sagas WHERE state NOT IN ('COMPLETED', 'COMPENSATED')"
    )
    inflight = await cur.fetchone()
    assert inflight is not None
    return int(row["n"]), float(row["lag"]), int(inflight["n"])


async def pending_jobs(conn: Conn) -> int:
    """Job outbox rows not yet on the queue (the job relay's backlog)."""
    cur = await conn.execute("SELECT count(*) AS n FROM job_outbox WHERE enqueued_at IS NULL")
    row = await cur.fetchone()
    return int(row["n"]) if row else 0
