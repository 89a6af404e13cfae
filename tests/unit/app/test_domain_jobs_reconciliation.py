"""The pure parts of the background jobs: job ids and payloads, the confirmation document,
and every reconciliation rule on in-memory facts (each rule breaks on its own input and
holds on a consistent one)."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from saga_service.domain import jobs
from saga_service.domain.order import OrderItem, OrderStatus
from saga_service.domain.payment import PaymentStatus
from saga_service.domain.reconciliation import (
    Finding,
    OrderFacts,
    Rule,
    SkuFacts,
    check,
    check_order,
    check_sku,
    count_by_rule,
    orders_without_document,
)
from saga_service.domain.saga import SagaState

ORDER = uuid.UUID("11111111-2222-3333-4444-555555555555")
SAGA = uuid.UUID("66666666-7777-8888-9999-000000000000")
GRACE = 60.0

CONFIRMED = OrderFacts(
    order_id=ORDER,
    status=OrderStatus.CONFIRMED,
    saga_state=SagaState.COMPLETED,
    total_cents=500,
    payment=PaymentStatus.CHARGED,
    payment_cents=500,
    reservations={"COMMITTED": 1},
    has_document=True,
    final_for_seconds=10.0,
)
CANCELLED = OrderFacts(
    order_id=ORDER,
    status=OrderStatus.CANCELLED,
    saga_state=SagaState.COMPENSATED,
    total_cents=500,
    payment=PaymentStatus.REFUNDED,
    payment_cents=500,
    reservations={"RELEASED": 1},
    final_for_seconds=10.0,
)
RUNNING = OrderFacts(
    order_id=ORDER,
    status=OrderStatus.PENDING,
    saga_state=SagaState.CHARGING_PAYMENT,
    total_cents=500,
    reservations={"RESERVED": 1},
)


def rules(order: OrderFacts) -> set[Rule]:
    return {f.rule for f in check_order(order, GRACE)}


# --- jobs -----------------------------------------------------------------------------


def test_the_document_job_id_names_its_order_and_has_no_key_separator() -> None:
    job = jobs.order_document_job(ORDER, SAGA)
    assert job.job_id == f"order-document-{ORDER}"
    assert ":" not in job.job_id
    assert job.name == jobs.ORDER_DOCUMENT
    assert jobs.parse_order_document(job.payload) == (ORDER, SAGA)


@pytest.mark.parametrize(
    "payload",
    [None, [], {}, {"order_id": str(ORDER)}, {"order_id": "nope", "saga_id": str(SAGA)}],
)
def test_a_malformed_document_payload_is_rejected_for_good(payload: object) -> None:
    with pytest.raises(jobs.JobRejected):
        jobs.parse_order_document(payload)


def test_the_confirmation_document_is_the_same_for_the_same_order() -> None:
    items = [OrderItem("SKU-B", 2, 150), OrderItem("SKU-A", 1, 1999)]
    body = jobs.render_confirmation(ORDER, "alice", items, 2299)
    assert body == jobs.render_confirmation(ORDER, "alice", list(reversed(items)), 2299)
    assert f"order: {ORDER}" in body
    assert body.index("SKU-A") < body.index("SKU-B")
    assert "3.00" in body  # 2 x 1.50
    assert "total: 22.99" in body


# --- reconciliation -------------------------------------------------------------------


@pytest.mark.parametrize("order", [CONFIRMED, CANCELLED, RUNNING], ids=["done", "undone", "open"])
def test_consistent_orders_break_no_rule(order: OrderFacts) -> None:
    assert check_order(order, GRACE) == []


def test_a_cancelled_order_may_have_no_payment_or_a_declined_one() -> None:
    assert rules(replace(CANCELLED, payment=None, payment_cents=None)) == set()
    assert rules(replace(CANCELLED, payment=PaymentStatus.DECLINED)) == set()


@pytest.mark.parametrize(
    ("order", "rule"),
    [
        (replace(CONFIRMED, saga_state=SagaState.CONFIRMING), Rule.ORDER_MATCHES_SAGA),
        (replace(RUNNING, status=OrderStatus.CANCELLED), Rule.ORDER_MATCHES_SAGA),
        (replace(CONFIRMED, payment=None, payment_cents=None), Rule.CONFIRMED_CHARGED_ONCE),
        (replace(CONFIRMED, payment=PaymentStatus.REFUNDED), Rule.CONFIRMED_CHARGED_ONCE),
        (replace(CONFIRMED, payment_cents=499), Rule.CONFIRMED_CHARGED_ONCE),
        (replace(CANCELLED, payment=PaymentStatus.CHARGED), Rule.CANCELLED_NOT_CHARGED),
        (replace(CONFIRMED, reservations={"RESERVED": 1}), Rule.FINAL_SAGA_SETTLED),
        (replace(CONFIRMED, reservations={"RELEASED": 1}), Rule.FINAL_SAGA_SETTLED),
        (replace(CANCELLED, reservations={"COMMITTED": 1}), Rule.FINAL_SAGA_SETTLED),
        (replace(CANCELLED, has_document=True), Rule.DOCUMENT_ONLY_IF_CONFIRMED),
        (replace(RUNNING, has_document=True), Rule.DOCUMENT_ONLY_IF_CONFIRMED),
        (
            replace(CONFIRMED, has_document=False, final_for_seconds=GRACE + 1),
            Rule.CONFIRMED_HAS_DOCUMENT,
        ),
    ],
)
def test_each_broken_invariant_is_found_with_its_rule(order: OrderFacts, rule: Rule) -> None:
    (finding,) = check_order(order, GRACE)
    assert finding.rule is rule
    assert finding.subject == f"order:{ORDER}"
    assert finding.detail


def test_a_missing_document_is_only_a_finding_after_the_grace_period() -> None:
    # The job runs after the saga's commit; within the grace it may still be queued.
    assert rules(replace(CONFIRMED, has_document=False, final_for_seconds=GRACE - 1)) == set()


def test_stock_rules() -> None:
    assert check_sku(SkuFacts("S", available=5, reserved=2, reserved_by_sagas=2)) == []
    (mismatch,) = check_sku(SkuFacts("S", available=5, reserved=5, reserved_by_sagas=2))
    assert mismatch == Finding(
        Rule.STOCK_MATCHES_RESERVATIONS, "sku:S", "reserved 5, open reservations hold 2"
    )
    (negative,) = check_sku(SkuFacts("S", available=-1, reserved=0, reserved_by_sagas=0))
    assert negative.rule is Rule.STOCK_NOT_NEGATIVE


def test_check_sorts_findings_and_counts_every_rule() -> None:
    findings = check(
        [replace(CONFIRMED, payment=None), CANCELLED],
        [SkuFacts("S", 1, 3, 0), SkuFacts("T", 1, 0, 0)],
        document_grace_seconds=GRACE,
    )
    assert [f.rule for f in findings] == sorted(f.rule for f in findings)
    counts = count_by_rule(findings)
    assert set(counts) == set(Rule)
    assert counts[Rule.CONFIRMED_CHARGED_ONCE] == 1
    assert counts[Rule.STOCK_MATCHES_RESERVATIONS] == 1
    assert sum(counts.values()) == 2


def test_the_orders_without_their_document_are_the_ones_asked_for_again() -> None:
    first, second = uuid.UUID(int=1), uuid.UUID(int=2)
    findings = [
        Finding(Rule.CONFIRMED_HAS_DOCUMENT, f"order:{second}", "confirmed 400 s ago, no document"),
        Finding(Rule.CONFIRMED_CHARGED_ONCE, f"order:{uuid.UUID(int=3)}", "payment missing"),
        Finding(Rule.CONFIRMED_HAS_DOCUMENT, f"order:{first}", "confirmed 900 s ago, no document"),
        Finding(Rule.STOCK_NOT_NEGATIVE, "sku:A", "available -1"),
    ]
    assert orders_without_document(findings) == [first, second]
    assert orders_without_document([]) == []
