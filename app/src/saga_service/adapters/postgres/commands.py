"""The command side: the SQL of every write, and of the reads a write decides on (the saga
row taken FOR UPDATE, the SKUs an order may name, the items to reserve). Each function runs
on a connection the caller owns, so a step's effect, the saga's state change and its outbox
row share one transaction.

Every statement is a round trip, and round trips are most of a saga's CPU (the psycopg
calls in a profile of the service): a step therefore rides in as few statements as its
decisions allow, as data-modifying CTEs. One records the event and locks the saga; the
reads a decision needs follow (stock levels under their fencing token); one last writes
the step's effects (`Effect`: the writes whose result decides nothing), the step row, the
saga's new state and the next event. Placing an order is one statement, with no explicit
transaction around it."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from saga_service.adapters.postgres.db import Conn
from saga_service.domain.events import SagaEvent
from saga_service.domain.jobs import JobRequest
from saga_service.domain.order import OrderItem, OrderStatus
from saga_service.domain.payment import PaymentStatus
from saga_service.domain.saga import FINAL_STATES, SagaState, Transition
from saga_service.domain.stock import StockLevel


class FencingRejected(Exception):
    """A stock write carried a fencing token not newer than the last one that wrote."""

    def __init__(self, sku: str, token: int) -> None:
        super().__init__(f"fencing token {token} for {sku} is stale")
        self.sku = sku
        self.token = token


@dataclass(frozen=True, slots=True)
class SagaRow:
    saga_id: uuid.UUID
    order_id: uuid.UUID
    state: SagaState
    attempts: int
    customer_id: str
    total_cents: int
    correlation_id: str | None
    traceparent: str | None
    age_seconds: float


def _saga_row(row: dict[str, Any]) -> SagaRow:
    return SagaRow(
        saga_id=row["saga_id"],
        order_id=row["order_id"],
        state=SagaState(row["state"]),
        attempts=row["attempts"],
        customer_id=row["customer_id"],
        total_cents=row["total_cents"],
        correlation_id=row["correlation_id"],
        traceparent=row["traceparent"],
        age_seconds=float(row["age_seconds"]),
    )


@dataclass(frozen=True, slots=True)
class Effect:
    """A step's write whose result the step does not need: it rides in the statement that
    advances the saga, as one more data-modifying CTE (one round trip fewer)."""

    sql: str
    params: tuple[Any, ...]


async def apply(conn: Conn, effect: Effect) -> None:
    """Run an effect on its own (outside a step)."""
    await conn.execute(effect.sql, effect.params)


_SAGA_SELECT = """
SELECT s.saga_id, s.order_id, s.state, s.attempts, s.correlation_id, s.traceparent,
       o.customer_id, o.total_cents,
       EXTRACT(EPOCH FROM clock_timestamp() - s.created_at) AS age_seconds
FROM sagas s JOIN orders o ON o.order_id = s.order_id
WHERE s.saga_id = %s
"""


# --- orders and sagas -------------------------------------------------------------------


async def order_exists(conn: Conn, order_id: uuid.UUID) -> bool:
    cur = await conn.execute("SELECT 1 FROM orders WHERE order_id = %s", (order_id,))
    return await cur.fetchone() is not None


async def insert_order(
    conn: Conn,
    *,
    order_id: uuid.UUID,
    saga_id: uuid.UUID,
    customer_id: str,
    items: list[OrderItem],
    total_cents: int,
    correlation_id: str | None,
    traceparent: str | None,
    lease_seconds: float,
    owner: str,
    event: SagaEvent,
    headers: dict[str, str],
) -> list[str]:
    """The order, its items, its saga and the saga's first event, when every SKU exists:
    one statement, so one round trip and its own transaction (foreign keys are checked at
    its end, when every row is in). Returns the SKUs that do not exist (sorted; nothing
    was written then)."""
    cur = await conn.execute(
        "WITH unknown AS ("
        "  SELECT w.sku FROM unnest(%s::text[]) AS w (sku)"
        "  WHERE NOT EXISTS (SELECT 1 FROM stock WHERE stock.sku = w.sku)"
        "), go AS (SELECT NOT EXISTS (SELECT 1 FROM unknown) AS ahead"
        "), o AS ("
        "  INSERT INTO orders (order_id, saga_id, customer_id, total_cents, status)"
        "  SELECT %s, %s, %s, %s, 'PENDING' FROM go WHERE ahead"
        "), i AS ("
        "  INSERT INTO order_items (order_id, sku, quantity, unit_price_cents)"
        "  SELECT %s, r.* FROM unnest(%s::text[], %s::integer[], %s::bigint[]) AS r, go"
        "  WHERE ahead"
        "), s AS ("
        "  INSERT INTO sagas (saga_id, order_id, state, lease_owner, lease_expires_at,"
        "   correlation_id, traceparent)"
        "  SELECT %s, %s, %s, %s, now() + make_interval(secs => %s), %s, %s FROM go WHERE ahead"
        "), e AS (" + _INSERT_OUTBOX_SELECT + " FROM go WHERE ahead"
        ") SELECT coalesce(array_agg(DISTINCT sku ORDER BY sku), '{}') AS unknown FROM unknown",
        (
            [i.sku for i in items],
            order_id,
            saga_id,
            customer_id,
            total_cents,
            order_id,
            [i.sku for i in items],
            [i.quantity for i in items],
            [i.unit_price_cents for i in items],
            saga_id,
            order_id,
            SagaState.RESERVING_STOCK.value,
            owner,
            lease_seconds,
            correlation_id,
            traceparent,
            *_outbox_params(event, headers),
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return list(row["unknown"])


async def order_items(conn: Conn, order_id: uuid.UUID) -> list[OrderItem]:
    cur = await conn.execute(
        "SELECT sku, quantity, unit_price_cents FROM order_items WHERE order_id = %s ORDER BY sku",
        (order_id,),
    )
    return [OrderItem(r["sku"], r["quantity"], r["unit_price_cents"]) for r in await cur.fetchall()]


async def get_saga(conn: Conn, saga_id: uuid.UUID, *, for_update: bool = False) -> SagaRow | None:
    sql = _SAGA_SELECT + (" FOR UPDATE OF s" if for_update else "")
    cur = await conn.execute(sql, (saga_id,))
    row = await cur.fetchone()
    return _saga_row(row) if row else None


async def saga_and_items(conn: Conn, saga_id: uuid.UUID) -> tuple[SagaRow, list[OrderItem]] | None:
    """The saga and its order's items (sorted by SKU): one statement, so one snapshot."""
    cur = await conn.execute(
        "SELECT saga.*, coalesce((SELECT json_agg("
        "   json_build_array(i.sku, i.quantity, i.unit_price_cents) ORDER BY i.sku)"
        "  FROM order_items i WHERE i.order_id = saga.order_id), '[]') AS items"
        " FROM (" + _SAGA_SELECT + ") AS saga",
        (saga_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return _saga_row(row), [OrderItem(sku, qty, price) for sku, qty, price in row["items"]]


async def advance_saga(
    conn: Conn,
    saga: SagaRow,
    tr: Transition,
    *,
    detail: str,
    executed_by: str,
    lease_seconds: float,
    event: SagaEvent,
    headers: dict[str, str],
    effects: tuple[Effect, ...] = (),
) -> None:
    """The step's remaining writes (`effects`), its saga_steps row, the saga's new state and
    its next event in the outbox: one statement, one round trip (the caller holds the saga
    row lock)."""
    failed = tr.outcome.value == "FAILED"
    await conn.execute(
        "WITH " + "".join(f"effect{n} AS ({e.sql}), " for n, e in enumerate(effects)) + "step AS ("
        "  INSERT INTO saga_steps (saga_id, step, outcome, from_state, to_state, detail,"
        "   executed_by) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        "), moved AS ("
        "  UPDATE sagas SET state = %s, attempts = 0, updated_at = now(),"
        "   lease_owner = %s, lease_expires_at = now() + make_interval(secs => %s),"
        "   failed_step = CASE WHEN %s THEN %s ELSE failed_step END,"
        "   last_error = CASE WHEN %s THEN %s ELSE last_error END,"
        "   finished_at = CASE WHEN %s THEN now() ELSE NULL END"
        "  WHERE saga_id = %s"
        ") " + _INSERT_OUTBOX,
        (
            *(param for e in effects for param in e.params),
            saga.saga_id,
            tr.step.value,
            tr.outcome.value,
            tr.source.value,
            tr.target.value,
            detail or None,
            executed_by,
            tr.target.value,
            executed_by,
            lease_seconds,
            failed,
            tr.step.value,
            failed,
            detail or None,
            tr.target in FINAL_STATES,
            saga.saga_id,
            *_outbox_params(event, headers),
        ),
    )


def order_status(order_id: uuid.UUID, status: OrderStatus) -> Effect:
    return Effect(
        "UPDATE orders SET status = %s, updated_at = now() WHERE order_id = %s",
        (status.value, order_id),
    )


async def postpone_saga(
    conn: Conn, saga_id: uuid.UUID, state: SagaState, delay_seconds: float, error: str
) -> None:
    await conn.execute(
        "UPDATE sagas SET lease_expires_at = now() + make_interval(secs => %s), last_error = %s"
        " WHERE saga_id = %s AND state = %s",
        (delay_seconds, error[:500], saga_id, state.value),
    )


async def claim_expired_sagas(
    conn: Conn, *, owner: str, limit: int, lease_seconds: float
) -> list[tuple[uuid.UUID, SagaState, int, str | None]]:
    """Take over sagas whose lease expired (other processes skip the rows we lock): each
    one's id, state, attempts and the traceparent it started with."""
    cur = await conn.execute(
        "UPDATE sagas SET attempts = attempts + 1, lease_owner = %s,"
        " lease_expires_at = now() + make_interval(secs => %s)"
        " WHERE saga_id IN ("
        "   SELECT saga_id FROM sagas"
        "   WHERE state NOT IN ('COMPLETED', 'COMPENSATED') AND lease_expires_at < now()"
        "   ORDER BY lease_expires_at LIMIT %s FOR UPDATE SKIP LOCKED)"
        " RETURNING saga_id, state, attempts, traceparent",
        (owner, lease_seconds, limit),
    )
    return [
        (r["saga_id"], SagaState(r["state"]), r["attempts"], r["traceparent"])
        for r in await cur.fetchall()
    ]


# --- idempotency ------------------------------------------------------------------------


async def mark_processed(conn: Conn, consumer: str, event_id: uuid.UUID) -> bool:
    """Record the event as handled; False when it already was (a duplicate delivery)."""
    cur = await conn.execute(
        "INSERT INTO processed_events (consumer, event_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (consumer, event_id),
    )
    return cur.rowcount == 1


async def begin_step(
    conn: Conn, consumer: str, event_id: uuid.UUID | None, saga_id: uuid.UUID
) -> tuple[bool, SagaRow | None]:
    """Record the event as processed and lock the saga row, in one statement.

    Returns (first delivery?, saga). Without an event id the first value is True.
    """
    if event_id is None:
        return True, await get_saga(conn, saga_id, for_update=True)
    # Every step's statement takes the two in the same order, so two deliveries of one
    # event cannot deadlock; a saga row changed since the statement's snapshot is read in
    # its newest version (READ COMMITTED row locking), as a separate SELECT would.
    cur = await conn.execute(
        "WITH processed AS ("
        "  INSERT INTO processed_events (consumer, event_id) VALUES (%s, %s)"
        "  ON CONFLICT DO NOTHING RETURNING 1"
        "), saga AS (" + _SAGA_SELECT + " FOR UPDATE OF s)"
        " SELECT EXISTS (SELECT 1 FROM processed) AS first, saga.*"
        " FROM (VALUES (1)) AS one LEFT JOIN saga ON true",
        (consumer, event_id, saga_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return bool(row["first"]), _saga_row(row) if row["saga_id"] is not None else None


# --- stock ------------------------------------------------------------------------------


async def fence_stock(conn: Conn, sku: str, token: int) -> StockLevel | None:
    """Lock the SKU's row and record `token` as its newest writer.

    Returns None for an unknown SKU; raises FencingRejected when a token at least as new
    has already written (the caller's lock expired and someone else took it).
    """
    cur = await conn.execute(
        "UPDATE stock SET fence_token = %s, updated_at = now()"
        " WHERE sku = %s AND fence_token < %s RETURNING sku, available, reserved",
        (token, sku, token),
    )
    row = await cur.fetchone()
    if row is not None:
        return StockLevel(row["sku"], row["available"], row["reserved"])
    cur = await conn.execute("SELECT 1 FROM stock WHERE sku = %s", (sku,))
    if await cur.fetchone() is None:
        return None
    raise FencingRejected(sku, token)


async def stock_fence_token(conn: Conn, sku: str) -> int:
    cur = await conn.execute("SELECT fence_token FROM stock WHERE sku = %s", (sku,))
    row = await cur.fetchone()
    return int(row["fence_token"]) if row else 0


def stock_level(level: StockLevel) -> Effect:
    """The SKU's new level (its row is already locked by fence_stock)."""
    return Effect(
        "UPDATE stock SET available = %s, reserved = %s, updated_at = now() WHERE sku = %s",
        (level.available, level.reserved, level.sku),
    )


async def set_stock(conn: Conn, sku: str, quantity: int, token: int) -> StockLevel:
    cur = await conn.execute(
        "INSERT INTO stock (sku, available, reserved, fence_token) VALUES (%s, %s, 0, %s)"
        " ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available,"
        "   fence_token = EXCLUDED.fence_token, updated_at = now()"
        " WHERE stock.fence_token < EXCLUDED.fence_token"
        " RETURNING sku, available, reserved",
        (sku, quantity, token),
    )
    row = await cur.fetchone()
    if row is None:
        raise FencingRejected(sku, token)
    return StockLevel(row["sku"], row["available"], row["reserved"])


def reservations(saga_id: uuid.UUID, items: list[OrderItem], tokens: dict[str, int]) -> Effect:
    return Effect(
        "INSERT INTO stock_reservations (saga_id, sku, quantity, status, fence_token)"
        " SELECT %s, sku, quantity, 'RESERVED', fence_token"
        " FROM unnest(%s::text[], %s::integer[], %s::bigint[]) AS r (sku, quantity, fence_token)",
        (
            saga_id,
            [i.sku for i in items],
            [i.quantity for i in items],
            [tokens[i.sku] for i in items],
        ),
    )


async def settle_reservations(conn: Conn, saga_id: uuid.UUID, *, release: bool) -> int:
    """Release (compensation) or commit (confirmation) the saga's reservations.

    Only rows still RESERVED move, so running it twice changes nothing the second time.
    Returns the number of units moved.
    """
    new_status = "RELEASED" if release else "COMMITTED"
    cur = await conn.execute(
        "UPDATE stock_reservations SET status = %s, updated_at = now()"
        " WHERE saga_id = %s AND status = 'RESERVED' RETURNING sku, quantity",
        (new_status, saga_id),
    )
    moved = sorted((r["sku"], r["quantity"]) for r in await cur.fetchall())
    for sku, quantity in moved:
        if release:
            sql = (
                "UPDATE stock SET available = available + %s, reserved = reserved - %s,"
                " updated_at = now() WHERE sku = %s"
            )
            await conn.execute(sql, (quantity, quantity, sku))
        else:
            await conn.execute(
                "UPDATE stock SET reserved = reserved - %s, updated_at = now() WHERE sku = %s",
                (quantity, sku),
            )
    return sum(q for _, q in moved)


# --- payments ---------------------------------------------------------------------------


def payment(saga: SagaRow, status: PaymentStatus, reason: str) -> Effect:
    """The payment's outcome; a second one for the saga changes nothing."""
    return Effect(
        "INSERT INTO payments (saga_id, order_id, customer_id, amount_cents, status, reason)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (saga_id) DO NOTHING",
        (saga.saga_id, saga.order_id, saga.customer_id, saga.total_cents, status.value, reason),
    )


async def refund_payment(conn: Conn, saga_id: uuid.UUID) -> int:
    cur = await conn.execute(
        "UPDATE payments SET status = 'REFUNDED', updated_at = now()"
        " WHERE saga_id = %s AND status = 'CHARGED' RETURNING amount_cents",
        (saga_id,),
    )
    row = await cur.fetchone()
    return int(row["amount_cents"]) if row else 0


# --- outbox -----------------------------------------------------------------------------


_OUTBOX_COLUMNS = "INSERT INTO outbox (event_id, saga_id, event_type, payload, headers)"
_INSERT_OUTBOX = _OUTBOX_COLUMNS + " VALUES (%s, %s, %s, %s, %s)"
# the same row from a SELECT, which a WHERE can make conditional
_INSERT_OUTBOX_SELECT = _OUTBOX_COLUMNS + " SELECT %s, %s, %s, %s, %s::jsonb"


def _outbox_params(event: SagaEvent, headers: dict[str, str]) -> tuple[Any, ...]:
    return (
        event.event_id,
        event.saga_id,
        event.event_type,
        event.to_json().decode(),
        json.dumps(headers),
    )


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    saga_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    payload: str
    headers: dict[str, str]
    created_at: datetime


async def claim_unpublished(conn: Conn, limit: int) -> list[OutboxRow]:
    """Lock up to `limit` unpublished rows and mark them published, in id order, in one
    statement. The caller publishes them before its transaction commits: a failed publish
    rolls the mark back, and the row locks keep other relays off them meanwhile."""
    cur = await conn.execute(
        "UPDATE outbox SET published_at = now() WHERE id IN ("
        " SELECT id FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT %s"
        " FOR UPDATE SKIP LOCKED)"
        " RETURNING id, saga_id, event_id, event_type, payload, headers, created_at",
        (limit,),
    )
    return sorted((OutboxRow(**row) for row in await cur.fetchall()), key=lambda r: r.id)


async def delete_published_before(conn: Conn, age_seconds: float) -> int:
    cur = await conn.execute(
        "DELETE FROM outbox WHERE published_at < now() - make_interval(secs => %s)",
        (age_seconds,),
    )
    return cur.rowcount


# --- background jobs --------------------------------------------------------------------


def job(request: JobRequest) -> Effect:
    """Ask for a job in the step's transaction; the same job id twice is one job."""
    return Effect(
        "INSERT INTO job_outbox (job_id, job_name, payload) VALUES (%s, %s, %s)"
        " ON CONFLICT (job_id) DO NOTHING",
        (request.job_id, request.name, json.dumps(request.payload)),
    )


async def lock_pending_jobs(conn: Conn, limit: int) -> list[tuple[int, JobRequest]]:
    cur = await conn.execute(
        "SELECT id, job_id, job_name, payload FROM job_outbox WHERE enqueued_at IS NULL"
        " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
        (limit,),
    )
    return [
        (r["id"], JobRequest(r["job_id"], r["job_name"], dict(r["payload"])))
        for r in await cur.fetchall()
    ]


async def mark_jobs_enqueued(conn: Conn, ids: list[int]) -> None:
    await conn.execute("UPDATE job_outbox SET enqueued_at = now() WHERE id = ANY(%s)", (ids,))


async def delete_enqueued_jobs_before(conn: Conn, age_seconds: float) -> int:
    cur = await conn.execute(
        "DELETE FROM job_outbox WHERE enqueued_at < now() - make_interval(secs => %s)",
        (age_seconds,),
    )
    return cur.rowcount


@dataclass(frozen=True, slots=True)
class DocumentSource:
    order_id: uuid.UUID
    saga_id: uuid.UUID
    customer_id: str
    total_cents: int
    status: OrderStatus
    items: list[OrderItem]


async def document_source(conn: Conn, order_id: uuid.UUID) -> DocumentSource | None:
    """The order as its document needs it; the row is share-locked so its status cannot
    change before the document is written in the same transaction."""
    cur = await conn.execute(
        "SELECT order_id, saga_id, customer_id, total_cents, status FROM orders"
        " WHERE order_id = %s FOR SHARE",
        (order_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return DocumentSource(
        order_id=row["order_id"],
        saga_id=row["saga_id"],
        customer_id=row["customer_id"],
        total_cents=row["total_cents"],
        status=OrderStatus(row["status"]),
        items=await order_items(conn, order_id),
    )


async def insert_document(
    conn: Conn,
    source: DocumentSource,
    *,
    body: str,
    job_id: str,
    rendered_by: str,
) -> bool:
    """Store the order's document; False when it already exists (the job ran before)."""
    cur = await conn.execute(
        "INSERT INTO order_documents (order_id, saga_id, body, job_id, rendered_by)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (order_id) DO NOTHING",
        (source.order_id, source.saga_id, body, job_id, rendered_by),
    )
    return cur.rowcount == 1
