"""The query side: reads behind GET /orders, /sagas and /stock, and the database-wide gauges.
Nothing here locks or writes, so a read never waits on a saga step's row locks."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql

from saga_service.adapters.postgres.db import Conn
from saga_service.domain.saga import SagaState
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
        " traceparent, created_at, updated_at, finished_at FROM sagas WHERE saga_id = %s",
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


@dataclass(frozen=True, slots=True)
class SagaFilter:
    """Which sagas a listing shows; an empty `states` means every state."""

    states: frozenset[SagaState] = frozenset()
    customer_id: str | None = None
    since: datetime | None = None  # created_at >= since
    until: datetime | None = None  # created_at < until


@dataclass(frozen=True, slots=True)
class SagaPosition:
    """A row's place in the newest-first order: a page goes on after the last row shown."""

    created_at: datetime
    saga_id: uuid.UUID


_SAGA_SUMMARY = sql.SQL(
    "SELECT s.saga_id, s.order_id, o.customer_id, s.state, s.attempts, s.failed_step,"
    " s.last_error, s.created_at, s.finished_at,"
    " (EXTRACT(EPOCH FROM s.finished_at - s.created_at) * 1000)::bigint AS duration_ms"
    " FROM sagas s JOIN orders o ON o.order_id = s.order_id"
)


async def list_sagas(
    conn: Conn, where: SagaFilter, after: SagaPosition | None, limit: int
) -> list[dict[str, Any]]:
    """Up to `limit` sagas, newest first, strictly after `after`. Keyset paging on
    (created_at, saga_id): a page never shifts when new sagas arrive, which OFFSET would."""
    conditions: list[sql.Composable] = []
    params: list[Any] = []
    if where.states:
        conditions.append(sql.SQL("s.state = ANY(%s)"))
        params.append(sorted(str(state) for state in where.states))
    if where.customer_id is not None:
        conditions.append(sql.SQL("o.customer_id = %s"))
        params.append(where.customer_id)
    if where.since is not None:
        conditions.append(sql.SQL("s.created_at >= %s"))
        params.append(where.since)
    if where.until is not None:
        conditions.append(sql.SQL("s.created_at < %s"))
        params.append(where.until)
    if after is not None:
        # A row comparison, so that sagas_newest_idx serves it as one range.
        conditions.append(sql.SQL("(s.created_at, s.saga_id) < (%s, %s)"))
        params += [after.created_at, after.saga_id]
    query: sql.Composable = _SAGA_SUMMARY
    if conditions:
        query = query + sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)
    query = query + sql.SQL(" ORDER BY s.created_at DESC, s.saga_id DESC LIMIT %s")
    params.append(limit)
    cur = await conn.execute(query, params)
    return await cur.fetchall()


async def saga_counts(conn: Conn, since: datetime | None) -> dict[SagaState, int]:
    """Sagas per state (created at or after `since`, if given); every state, 0 when none."""
    query = "SELECT state, count(*) AS n FROM sagas"
    params: Sequence[Any] = ()
    if since is not None:
        query += " WHERE created_at >= %s"
        params = (since,)
    cur = await conn.execute(query + " GROUP BY state", params)
    counts = dict.fromkeys(SagaState, 0)
    for row in await cur.fetchall():
        counts[SagaState(row["state"])] = int(row["n"])
    return counts


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
