"""Background jobs of the order system: their names, ids and the document they render.

A job's id is derived from what it is about (one order-document job per order), so that
enqueueing the same job twice adds it once, and so that the effect's idempotency key (the
order id) can be read back from the job.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from saga_service.domain.order import OrderItem

ORDER_DOCUMENT = "order-document"
JOB_NAMES = frozenset({ORDER_DOCUMENT})


class JobRejected(Exception):
    """A job that can never succeed however often it runs (malformed, unknown name):
    it goes to the failed set at once instead of using up its attempts."""


@dataclass(frozen=True, slots=True)
class JobRequest:
    job_id: str
    name: str
    payload: dict[str, str]


def order_document_job(
    order_id: uuid.UUID, saga_id: uuid.UUID, traceparent: str | None = None
) -> JobRequest:
    """`traceparent`, the step that queues the job, puts the job in the saga's trace."""
    payload = {"order_id": str(order_id), "saga_id": str(saga_id)}
    if traceparent:
        payload["traceparent"] = traceparent
    # No ':' in the id: BullMQ's Node producer refuses custom ids with its key separator,
    # and the user's Node tooling must be able to handle the same jobs.
    return JobRequest(job_id=f"{ORDER_DOCUMENT}-{order_id}", name=ORDER_DOCUMENT, payload=payload)


def parse_order_document(payload: object) -> tuple[uuid.UUID, uuid.UUID]:
    """The (order id, saga id) of an order-document job; JobRejected when malformed."""
    if not isinstance(payload, dict):
        raise JobRejected("payload is not an object")
    try:
        return uuid.UUID(str(payload["order_id"])), uuid.UUID(str(payload["saga_id"]))
    except (KeyError, ValueError) as exc:
        raise JobRejected(f"payload needs order_id and saga_id as UUIDs: {exc!r}") from exc


def render_confirmation(
    order_id: uuid.UUID,
    customer_id: str,
    items: Sequence[OrderItem],
    total_cents: int,
) -> str:
    """The order confirmation document: plain text, the same bytes for the same order."""
    lines = [
        "ORDER CONFIRMATION",
        f"order: {order_id}",
        f"customer: {customer_id}",
        "",
    ]
    for item in sorted(items, key=lambda i: i.sku):
        lines.append(
            f"{item.quantity:>6} x {item.sku:<64} {_money(item.unit_price_cents):>14}"
            f" {_money(item.line_total_cents):>16}"
        )
    lines += ["", f"total: {_money(total_cents)}", ""]
    return "\n".join(lines)


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"
