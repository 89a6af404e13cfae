"""Reconciliation: the saga's invariants, checked over a snapshot of orders, payments,
stock and documents. Pure: the snapshot is read elsewhere (in one repeatable-read
transaction), so every rule sees one consistent moment.

A finding names the rule it breaks and its subject (an order or a SKU). The rules hold at
every commit, not only at rest, because each saga step is one transaction; only the
document rule waits for a grace period, since its job runs after the saga's commit.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from saga_service.domain.order import OrderStatus
from saga_service.domain.payment import PaymentStatus
from saga_service.domain.saga import FINAL_STATES, SagaState


class Rule(enum.StrEnum):
    ORDER_MATCHES_SAGA = "order_status_matches_saga"
    CONFIRMED_CHARGED_ONCE = "confirmed_order_charged_once"
    CANCELLED_NOT_CHARGED = "cancelled_order_not_charged"
    FINAL_SAGA_SETTLED = "final_saga_reservations_settled"
    STOCK_MATCHES_RESERVATIONS = "stock_reserved_matches_reservations"
    STOCK_NOT_NEGATIVE = "stock_not_negative"
    CONFIRMED_HAS_DOCUMENT = "confirmed_order_has_document"
    DOCUMENT_ONLY_IF_CONFIRMED = "document_only_for_confirmed_order"


@dataclass(frozen=True, slots=True)
class OrderFacts:
    order_id: uuid.UUID
    status: OrderStatus
    saga_state: SagaState
    total_cents: int
    payment: PaymentStatus | None = None
    payment_cents: int | None = None
    # reservation rows of the saga by status (RESERVED, COMMITTED, RELEASED)
    reservations: dict[str, int] = field(default_factory=dict)
    has_document: bool = False
    # seconds since the saga reached its final state; None while it runs
    final_for_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class SkuFacts:
    sku: str
    available: int
    reserved: int
    reserved_by_sagas: int  # units in RESERVED reservation rows


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    rule: Rule
    subject: str
    detail: str


_ORDER_STATUS_OF_SAGA = {
    SagaState.COMPLETED: OrderStatus.CONFIRMED,
    SagaState.COMPENSATED: OrderStatus.CANCELLED,
}


def check_order(order: OrderFacts, document_grace_seconds: float) -> list[Finding]:
    found: list[Finding] = []
    subject = f"order:{order.order_id}"

    def add(rule: Rule, detail: str) -> None:
        found.append(Finding(rule, subject, detail))

    expected = _ORDER_STATUS_OF_SAGA.get(order.saga_state, OrderStatus.PENDING)
    if order.status is not expected:
        add(Rule.ORDER_MATCHES_SAGA, f"order {order.status}, saga {order.saga_state}")

    if order.status is OrderStatus.CONFIRMED and not (
        order.payment is PaymentStatus.CHARGED and order.payment_cents == order.total_cents
    ):
        add(
            Rule.CONFIRMED_CHARGED_ONCE,
            f"payment {order.payment or 'missing'} of {order.payment_cents} cents,"
            f" order total {order.total_cents}",
        )
    if order.status is OrderStatus.CANCELLED and order.payment is PaymentStatus.CHARGED:
        add(Rule.CANCELLED_NOT_CHARGED, f"payment CHARGED {order.payment_cents} cents")

    if order.saga_state in FINAL_STATES:
        held = order.reservations.get("RESERVED", 0)
        wrong = "RELEASED" if order.saga_state is SagaState.COMPLETED else "COMMITTED"
        if held or order.reservations.get(wrong, 0):
            add(
                Rule.FINAL_SAGA_SETTLED,
                f"saga {order.saga_state} has {held} RESERVED and"
                f" {order.reservations.get(wrong, 0)} {wrong} reservation rows",
            )

    late = order.final_for_seconds is not None and order.final_for_seconds > document_grace_seconds
    if order.saga_state is SagaState.COMPLETED and late and not order.has_document:
        add(
            Rule.CONFIRMED_HAS_DOCUMENT,
            f"confirmed {order.final_for_seconds:.0f} s ago, no document",
        )
    if order.has_document and order.status is not OrderStatus.CONFIRMED:
        add(Rule.DOCUMENT_ONLY_IF_CONFIRMED, f"document for an order {order.status}")
    return found


def check_sku(sku: SkuFacts) -> list[Finding]:
    found: list[Finding] = []
    subject = f"sku:{sku.sku}"
    if sku.available < 0 or sku.reserved < 0:
        found.append(
            Finding(
                Rule.STOCK_NOT_NEGATIVE,
                subject,
                f"available {sku.available}, reserved {sku.reserved}",
            )
        )
    if sku.reserved != sku.reserved_by_sagas:
        found.append(
            Finding(
                Rule.STOCK_MATCHES_RESERVATIONS,
                subject,
                f"reserved {sku.reserved}, open reservations hold {sku.reserved_by_sagas}",
            )
        )
    return found


def check(
    orders: Iterable[OrderFacts], skus: Iterable[SkuFacts], *, document_grace_seconds: float
) -> list[Finding]:
    """Every finding of the snapshot, sorted (rule, subject)."""
    found = [f for order in orders for f in check_order(order, document_grace_seconds)]
    found += [f for sku in skus for f in check_sku(sku)]
    return sorted(found)


def count_by_rule(findings: Iterable[Finding]) -> dict[Rule, int]:
    """Findings per rule, every rule present (0 when it holds), for gauges and reports."""
    counts = dict.fromkeys(Rule, 0)
    for finding in findings:
        counts[finding.rule] += 1
    return counts


def orders_without_document(findings: list[Finding]) -> list[uuid.UUID]:
    """The orders whose document job went missing (confirmed past the grace, no document):
    the reconciliation asks for their jobs again."""
    return sorted(
        uuid.UUID(f.subject.removeprefix("order:"))
        for f in findings
        if f.rule is Rule.CONFIRMED_HAS_DOCUMENT
    )
