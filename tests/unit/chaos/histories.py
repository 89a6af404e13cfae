"""A small hand-made campaign history that breaks no invariant, for the chaos unit tests,
and the helpers to break it one rule at a time.

Times are T0 plus quarter seconds, exact in binary floating point, so the figures can be
compared with == rather than approximately.

Timeline (seconds after T0; the load runs 0..60; fault 0 is a pod kill, window 20..35):

    op1  1.00..1.25  ok   SKU-A x2  o1 confirmed
    op2  3.00..3.25  ok   SKU-B x1  o2 declined (charge failed), cancelled
    op3  5.00..5.25  ok   SKU-A x1  o3 confirmation failed, refunded, cancelled
    fault 0: start 20, effect 21, heal 25, recovered 30 -> window 20..35
    op4 22.00..22.50 fail SKU-B x1  (503, during the fault)
    op5 23.00..23.50 ok   SKU-B x4  o5 confirmed, finished 28
    op7 31.00..31.25 ok   SKU-A x1  o7 confirmed
    op6 40.00..40.50 ok   SKU-A x1  o6 confirmed, finished 41
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tests.chaos.history import (
    Fault,
    FinalOrder,
    FinalStock,
    History,
    Op,
    Outcome,
    SagaStep,
    Sample,
    StockSample,
)

T0 = 1_700_000_000.0

CONFIRMED_FLOW = (
    ("reserve_stock", "SUCCEEDED"),
    ("charge_payment", "SUCCEEDED"),
    ("confirm_order", "SUCCEEDED"),
)
DECLINED_FLOW = (
    ("reserve_stock", "SUCCEEDED"),
    ("charge_payment", "FAILED"),
    ("release_stock", "SUCCEEDED"),
    ("cancel_order", "SUCCEEDED"),
)
FAIL_CONFIRM_FLOW = (
    ("reserve_stock", "SUCCEEDED"),
    ("charge_payment", "SUCCEEDED"),
    ("confirm_order", "FAILED"),
    ("refund_payment", "SUCCEEDED"),
    ("release_stock", "SUCCEEDED"),
    ("cancel_order", "SUCCEEDED"),
)


def steps(flow: tuple[tuple[str, str], ...], start: float) -> tuple[SagaStep, ...]:
    return tuple(
        SagaStep(step=name, outcome=outcome, executed_by="app-0", at=start + 0.25 * (i + 1))
        for i, (name, outcome) in enumerate(flow)
    )


def ok_op(seq: int, start: float, end: float, sku: str, quantity: int) -> Op:
    return Op(
        seq=seq,
        start=T0 + start,
        end=T0 + end,
        outcome=Outcome.OK,
        sku=sku,
        quantity=quantity,
        customer_id=f"c{seq}",
        status=202,
        order_id=f"o{seq}",
        saga_id=f"s{seq}",
        served_by="app-0",
    )


def bad_op(seq: int, start: float, end: float, sku: str, quantity: int, outcome: Outcome) -> Op:
    return Op(
        seq=seq,
        start=T0 + start,
        end=T0 + end,
        outcome=outcome,
        sku=sku,
        quantity=quantity,
        customer_id=f"c{seq}",
        status=503 if outcome is Outcome.FAIL else None,
        error="unavailable" if outcome is Outcome.FAIL else "ReadTimeout",
    )


def order(
    seq: int,
    flow: tuple[tuple[str, str], ...],
    placed: float,
    finished: float | None,
) -> FinalOrder:
    confirmed = flow is CONFIRMED_FLOW
    return FinalOrder(
        order_id=f"o{seq}",
        saga_id=f"s{seq}",
        status="CONFIRMED" if confirmed else "CANCELLED",
        saga_state="COMPLETED" if confirmed else "COMPENSATED",
        steps=steps(flow, T0 + placed),
        finished_at=None if finished is None else T0 + finished,
    )


def pod_kill(index: int = 0) -> Fault:
    return Fault(
        index=index,
        kind="pod-kill",
        target="app",
        start=T0 + 20,
        effect_at=T0 + 21,
        heal_at=T0 + 25,
        recovered_at=T0 + 30,
        detail="deleted app-0",
    )


def baseline() -> History:
    """The valid history described in the module docstring."""
    return History(
        run_id="run-test",
        seed=42,
        load_started=T0,
        load_ended=T0 + 60,
        ops=[
            ok_op(1, 1.0, 1.25, "SKU-A", 2),
            ok_op(2, 3.0, 3.25, "SKU-B", 1),
            ok_op(3, 5.0, 5.25, "SKU-A", 1),
            bad_op(4, 22.0, 22.5, "SKU-B", 1, Outcome.FAIL),
            ok_op(5, 23.0, 23.5, "SKU-B", 4),
            ok_op(7, 31.0, 31.25, "SKU-A", 1),
            ok_op(6, 40.0, 40.5, "SKU-A", 1),
        ],
        orders=[
            order(1, CONFIRMED_FLOW, 1.0, 2.0),
            order(2, DECLINED_FLOW, 3.0, 4.0),
            order(3, FAIL_CONFIRM_FLOW, 5.0, 6.0),
            order(5, CONFIRMED_FLOW, 23.0, 28.0),
            order(7, CONFIRMED_FLOW, 31.0, 32.0),
            order(6, CONFIRMED_FLOW, 40.0, 41.0),
        ],
        faults=[pod_kill()],
        stock=[
            # SKU-A: o1 (2), o7 (1), o6 (1) confirmed; o3 released. SKU-B: o5 (4).
            FinalStock(sku="SKU-A", initial=100, available=96, reserved=0),
            FinalStock(sku="SKU-B", initial=50, available=46, reserved=0),
        ],
        stock_samples=[
            StockSample(at=T0 + 10, sku="SKU-A", available=98, reserved=0),
            StockSample(at=T0 + 24, sku="SKU-B", available=45, reserved=4),
            StockSample(at=T0 + 50, sku="SKU-A", available=96, reserved=0),
        ],
        samples=[
            Sample(at=T0 + 0, ready_pods=3, backlog=0.0),
            Sample(at=T0 + 10, ready_pods=3, backlog=1.0),
            Sample(at=T0 + 20, ready_pods=3, backlog=2.0),
            Sample(at=T0 + 25, ready_pods=1, backlog=40.0),
            Sample(at=T0 + 30, ready_pods=2, backlog=12.5),
            Sample(at=T0 + 35, ready_pods=3, backlog=None),
            Sample(at=T0 + 45, ready_pods=3, backlog=0.0),
        ],
    )


def change_order(history: History, order_id: str, **changes: Any) -> History:
    history.orders = [
        replace(o, **changes) if o.order_id == order_id else o for o in history.orders
    ]
    return history


def change_stock(history: History, sku: str, **changes: Any) -> History:
    history.stock = [replace(s, **changes) if s.sku == sku else s for s in history.stock]
    return history


def change_steps(history: History, order_id: str, flow: tuple[tuple[str, str], ...]) -> History:
    placed = next(o.steps[0].at for o in history.orders if o.order_id == order_id)
    return change_order(history, order_id, steps=steps(flow, placed))
