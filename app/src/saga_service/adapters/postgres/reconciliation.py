"""Reads and writes of the reconciliation: one consistent snapshot of the facts its rules
check, and the run's findings (the latest run is what the gauges export)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from saga_service.adapters.postgres.db import Conn
from saga_service.domain.jobs import order_document_job
from saga_service.domain.order import OrderStatus
from saga_service.domain.payment import PaymentStatus
from saga_service.domain.reconciliation import Finding, OrderFacts, Rule, SkuFacts
from saga_service.domain.saga import SagaState

RUN_RETENTION_DAYS = 30

_ORDERS = """
SELECT o.order_id, o.status, s.state, o.total_cents, p.status AS payment,
       p.amount_cents AS payment_cents, d.order_id IS NOT NULL AS has_document,
       EXTRACT(EPOCH FROM now() - s.finished_at) AS final_for_seconds,
       coalesce(r.counts, '{}'::jsonb) AS reservations
FROM orders o
JOIN sagas s ON s.saga_id = o.saga_id
LEFT JOIN payments p ON p.saga_id = s.saga_id
LEFT JOIN order_documents d ON d.order_id = o.order_id
LEFT JOIN LATERAL (
    SELECT jsonb_object_agg(status, n) AS counts
    FROM (SELECT status, count(*) AS n FROM stock_reservations
          WHERE saga_id = s.saga_id GROUP BY status) c
) r ON true
"""

_SKUS = """
SELECT st.sku, st.available, st.reserved,
       coalesce(sum(r.quantity) FILTER (WHERE r.status = 'RESERVED'), 0) AS reserved_by_sagas
FROM stock st LEFT JOIN stock_reservations r ON r.sku = st.sku
GROUP BY st.sku, st.available, st.reserved
"""


async def read_snapshot(conn: Conn) -> tuple[list[OrderFacts], list[SkuFacts]]:
    """Both reads in one REPEATABLE READ transaction: one moment of the database, so a
    saga step committing in between cannot show up as a broken invariant."""
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cur = await conn.execute(_ORDERS)
        orders = [
            OrderFacts(
                order_id=r["order_id"],
                status=OrderStatus(r["status"]),
                saga_state=SagaState(r["state"]),
                total_cents=int(r["total_cents"]),
                payment=PaymentStatus(r["payment"]) if r["payment"] else None,
                payment_cents=r["payment_cents"],
                reservations={k: int(v) for k, v in r["reservations"].items()},
                has_document=bool(r["has_document"]),
                final_for_seconds=(
                    float(r["final_for_seconds"]) if r["final_for_seconds"] is not None else None
                ),
            )
            for r in await cur.fetchall()
        ]
        cur = await conn.execute(_SKUS)
        skus = [
            SkuFacts(r["sku"], r["available"], r["reserved"], int(r["reserved_by_sagas"]))
            for r in await cur.fetchall()
        ]
    return orders, skus


async def save_run(
    conn: Conn,
    *,
    started_at: datetime,
    orders: int,
    skus: int,
    findings: list[Finding],
    counts: dict[Rule, int],
) -> int:
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO reconciliation_runs (started_at, orders, skus, findings, counts)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (started_at, orders, skus, len(findings), json.dumps(counts)),
        )
        row = await cur.fetchone()
        assert row is not None
        run_id = int(row["id"])
        await conn.execute(
            "INSERT INTO reconciliation_findings (run_id, rule, subject, detail)"
            " SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::text[])",
            (
                run_id,
                [f.rule.value for f in findings],
                [f.subject for f in findings],
                [f.detail for f in findings],
            ),
        )
        # Runs are history for operators, not state: a month is kept (findings cascade).
        await conn.execute(
            "DELETE FROM reconciliation_runs WHERE finished_at < now() - make_interval(days => %s)",
            (RUN_RETENTION_DAYS,),
        )
    return run_id


@dataclass(frozen=True, slots=True)
class LatestRun:
    run_id: int
    finished_at: datetime
    counts: dict[str, int]


async def latest_run(conn: Conn) -> LatestRun | None:
    cur = await conn.execute(
        "SELECT id, finished_at, counts FROM reconciliation_runs ORDER BY id DESC LIMIT 1"
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return LatestRun(
        int(row["id"]), row["finished_at"], {k: int(v) for k, v in row["counts"].items()}
    )


async def requeue_document_jobs(conn: Conn, order_ids: list[uuid.UUID]) -> int:
    """Ask again for the document jobs of these confirmed orders: a new job outbox row, or
    the old one armed again, for the relays to put on the queue. Same job id as the first
    time: a job still on the queue stays one job, and a second run's effect is a no-op."""
    cur = await conn.execute(
        "SELECT order_id, saga_id FROM orders WHERE order_id = ANY(%s) AND status = 'CONFIRMED'",
        (order_ids,),
    )
    jobs = [order_document_job(r["order_id"], r["saga_id"]) for r in await cur.fetchall()]
    if jobs:
        await conn.execute(
            "INSERT INTO job_outbox (job_id, job_name, payload)"
            " SELECT * FROM unnest(%s::text[], %s::text[], %s::jsonb[])"
            " ON CONFLICT (job_id) DO UPDATE SET enqueued_at = NULL",
            (
                [j.job_id for j in jobs],
                [j.name for j in jobs],
                [json.dumps(j.payload) for j in jobs],
            ),
        )
    return len(jobs)
