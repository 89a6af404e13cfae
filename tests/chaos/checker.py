"""The saga invariants, checked over a recorded History after the run.

Each rule is a small function from a History to the violations it finds; `check` runs them
all. A rule never guesses about what it cannot see: an operation with no answer (INFO) may
or may not have placed an order, so the stock rule gives those units as slack instead of
counting them either way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tests.chaos.history import FinalOrder, History, Op, Outcome

# Requests already in flight when the release came back whole may still fail or time out;
# this much after the recovery they count as part of the fault.
GRACE = 5.0

CONFIRMED = "CONFIRMED"
CANCELLED = "CANCELLED"
COMPLETED = "COMPLETED"
COMPENSATED = "COMPENSATED"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
CHARGE = "charge_payment"
REFUND = "refund_payment"

FINAL_STATUSES = frozenset({CONFIRMED, CANCELLED})
FINAL_SAGA_STATES = frozenset({COMPLETED, COMPENSATED})
STATE_OF_STATUS = {CONFIRMED: COMPLETED, CANCELLED: COMPENSATED}


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    subject: str  # an order id, a SKU, "op#<seq>" or "fault <index>"
    message: str
    fault: int | None = None  # Fault.index of the window the relevant moment falls in

    def __str__(self) -> str:
        during = f" [during fault {self.fault}]" if self.fault is not None else ""
        return f"{self.rule}: {self.message}{during}"


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """The span in which a fault may excuse failures: from its injection until the release
    was seen whole again (or the load ended, if it never was), plus GRACE."""

    index: int  # Fault.index
    kind: str
    start: float
    end: float

    def contains(self, at: float) -> bool:
        return self.start <= at <= self.end

    def overlaps(self, start: float, end: float) -> bool:
        return start <= self.end and end >= self.start


def fault_windows(history: History) -> list[FaultWindow]:
    """One window per fault, in the order of `history.faults`."""
    return [
        FaultWindow(
            index=fault.index,
            kind=fault.kind,
            start=fault.start,
            end=(fault.recovered_at if fault.recovered_at is not None else history.load_ended)
            + GRACE,
        )
        for fault in history.faults
    ]


def fault_at(windows: Iterable[FaultWindow], at: float | None) -> int | None:
    """The window `at` falls in; when windows overlap, the fault injected last, as the
    likelier cause of what happened at that moment."""
    if at is None:
        return None
    containing = [w for w in windows if w.contains(at)]
    if not containing:
        return None
    return max(containing, key=lambda w: w.start).index


# --- helpers --------------------------------------------------------------------------


def _ok_ops(history: History) -> list[Op]:
    return [op for op in history.ops if op.outcome is Outcome.OK]


def _orders_by_id(history: History) -> dict[str, FinalOrder]:
    return {order.order_id: order for order in history.orders}


def _op_start_by_order(history: History) -> dict[str, float]:
    return {op.order_id: op.start for op in _ok_ops(history) if op.order_id is not None}


def _succeeded(order: FinalOrder, step: str) -> int:
    return sum(1 for s in order.steps if s.step == step and s.outcome == SUCCEEDED)


def _rel(history: History, at: float) -> str:
    return f"t+{at - history.load_started:.1f}s"


class _OrderRule:
    """Shared context of the rules about one FinalOrder: which fault its op fell in."""

    def __init__(self, history: History) -> None:
        self.windows = fault_windows(history)
        self.starts = _op_start_by_order(history)

    def violation(self, rule: str, order_id: str, message: str) -> Violation:
        return Violation(rule, order_id, message, fault_at(self.windows, self.starts.get(order_id)))


# --- rules ----------------------------------------------------------------------------


def check_final(history: History) -> list[Violation]:
    """Every accepted order ends CONFIRMED or CANCELLED with its saga COMPLETED or
    COMPENSATED."""
    windows = fault_windows(history)
    orders = _orders_by_id(history)
    found: list[Violation] = []
    for op in _ok_ops(history):
        fault = fault_at(windows, op.start)
        if op.order_id is None:
            found.append(
                Violation(
                    "final", f"op#{op.seq}", f"op #{op.seq} was accepted without an order id", fault
                )
            )
            continue
        order = orders.get(op.order_id)
        if order is None:
            message = f"accepted order {op.order_id} (op #{op.seq}) is unknown at the end"
            found.append(Violation("final", op.order_id, message, fault))
        elif order.status not in FINAL_STATUSES or order.saga_state not in FINAL_SAGA_STATES:
            message = (
                f"order {order.order_id} ended {order.status} with saga {order.saga_id} "
                f"{order.saga_state}; expected CONFIRMED/COMPLETED or CANCELLED/COMPENSATED"
            )
            found.append(Violation("final", order.order_id, message, fault))
    return found


def check_status_matches_state(history: History) -> list[Violation]:
    """A confirmed order's saga completed; a cancelled order's saga compensated."""
    ctx = _OrderRule(history)
    found: list[Violation] = []
    for order in history.orders:
        expected = STATE_OF_STATUS.get(order.status)
        if expected is not None and order.saga_state != expected:
            message = (
                f"order {order.order_id} is {order.status} but its saga {order.saga_id} is "
                f"{order.saga_state}, not {expected}"
            )
            found.append(ctx.violation("status-matches-state", order.order_id, message))
    return found


def check_step_once(history: History) -> list[Violation]:
    """A step is applied at most once: never two SUCCEEDED records of the same step, nor a
    step that both succeeded and failed."""
    ctx = _OrderRule(history)
    found: list[Violation] = []
    for order in history.orders:
        succeeded = Counter(s.step for s in order.steps if s.outcome == SUCCEEDED)
        failed = Counter(s.step for s in order.steps if s.outcome == FAILED)
        for step, times in sorted(succeeded.items()):
            if times > 1:
                message = f"order {order.order_id}: step {step} succeeded {times} times"
                found.append(ctx.violation("step-once", order.order_id, message))
            if failed[step]:
                message = (
                    f"order {order.order_id}: step {step} succeeded {times} and failed "
                    f"{failed[step]} times"
                )
                found.append(ctx.violation("step-once", order.order_id, message))
    return found


def check_charged_once(history: History) -> list[Violation]:
    """A confirmed order was charged exactly once and never refunded."""
    ctx = _OrderRule(history)
    found: list[Violation] = []
    for order in history.orders:
        if order.status != CONFIRMED:
            continue
        charges, refunds = _succeeded(order, CHARGE), _succeeded(order, REFUND)
        if charges != 1 or refunds != 0:
            message = (
                f"confirmed order {order.order_id} was charged {charges} and refunded "
                f"{refunds} times; expected charged once, never refunded"
            )
            found.append(ctx.violation("charged-once", order.order_id, message))
    return found


def check_no_charge_when_cancelled(history: History) -> list[Violation]:
    """A cancelled order owes nothing: never charged, or charged once and refunded once."""
    ctx = _OrderRule(history)
    found: list[Violation] = []
    for order in history.orders:
        if order.status != CANCELLED:
            continue
        charges, refunds = _succeeded(order, CHARGE), _succeeded(order, REFUND)
        if charges != refunds or charges > 1:
            message = (
                f"cancelled order {order.order_id} was charged {charges} and refunded "
                f"{refunds} times; expected 0/0 or 1/1"
            )
            found.append(ctx.violation("no-charge-when-cancelled", order.order_id, message))
    return found


def check_stock_conserved(history: History) -> list[Violation]:
    """Units gone from a SKU are those of its confirmed orders, plus at most the units of
    the requests that got no answer (their orders may exist and have confirmed)."""
    orders = _orders_by_id(history)
    confirmed: Counter[str] = Counter()
    unknown: Counter[str] = Counter()
    for op in history.ops:
        if op.outcome is Outcome.OK and op.order_id is not None:
            order = orders.get(op.order_id)
            if order is not None and order.status == CONFIRMED:
                confirmed[op.sku] += op.quantity
        elif op.outcome is Outcome.INFO:
            unknown[op.sku] += op.quantity
    found: list[Violation] = []
    for stock in history.stock:
        gone = stock.initial - stock.available
        extra = gone - confirmed[stock.sku]
        if 0 <= extra <= unknown[stock.sku]:
            continue
        if extra < 0:
            why = f"{-extra} fewer than the confirmed orders took"
        else:
            why = (
                f"{extra} more than the confirmed orders took, beyond the "
                f"{unknown[stock.sku]} of requests with no answer"
            )
        message = (
            f"sku {stock.sku}: initial {stock.initial}, available {stock.available}, so "
            f"{gone} units gone; confirmed orders hold {confirmed[stock.sku]}: {why}"
        )
        found.append(Violation("stock-conserved", stock.sku, message))
    return found


def check_stock_at_rest(history: History) -> list[Violation]:
    """Once every saga ended, nothing is left reserved."""
    return [
        Violation(
            "stock-at-rest",
            stock.sku,
            f"sku {stock.sku}: {stock.reserved} units still reserved at the end",
        )
        for stock in history.stock
        if stock.reserved != 0
    ]


def check_stock_never_negative(history: History) -> list[Violation]:
    """No sample shows negative stock; one violation per SKU, at its first bad sample."""
    windows = fault_windows(history)
    bad: dict[str, list[tuple[float, int, int]]] = {}
    for sample in sorted(history.stock_samples, key=lambda s: s.at):
        if sample.available < 0 or sample.reserved < 0:
            bad.setdefault(sample.sku, []).append((sample.at, sample.available, sample.reserved))
    found: list[Violation] = []
    for sku, samples in bad.items():
        at, available, reserved = samples[0]
        message = (
            f"sku {sku} had negative stock in {len(samples)} sample(s), first at "
            f"{_rel(history, at)}: available {available}, reserved {reserved}"
        )
        found.append(Violation("stock-never-negative", sku, message, fault_at(windows, at)))
    return found


def check_fail_outside_fault(history: History) -> list[Violation]:
    """With no fault in the way, every request gets an answer and is accepted."""
    windows = fault_windows(history)
    found: list[Violation] = []
    for op in history.ops:
        if op.outcome is Outcome.OK or any(w.overlaps(op.start, op.end) for w in windows):
            continue
        what = "failed" if op.outcome is Outcome.FAIL else "got no answer"
        detail = f" ({op.error})" if op.error else ""
        status = f", HTTP {op.status}" if op.status is not None else ""
        message = (
            f"op #{op.seq} ({op.sku} x{op.quantity}) {what}{detail}{status} at "
            f"{_rel(history, op.start)}..{_rel(history, op.end)}, outside every fault window"
        )
        found.append(Violation("fail-outside-fault", op.order_id or f"op#{op.seq}", message))
    return found


def check_fault_took_effect(history: History) -> list[Violation]:
    """A fault the probe never saw happen proves nothing about resilience."""
    return [
        Violation(
            "fault-took-effect",
            f"fault {fault.index}",
            f"fault {fault.index} ({fault.kind} on {fault.target}, injected at "
            f"{_rel(history, fault.start)}) was never seen to take effect",
            fault.index,
        )
        for fault in history.faults
        if fault.effect_at is None
    ]


RULES: tuple[Callable[[History], list[Violation]], ...] = (
    check_final,
    check_status_matches_state,
    check_step_once,
    check_charged_once,
    check_no_charge_when_cancelled,
    check_stock_conserved,
    check_stock_at_rest,
    check_stock_never_negative,
    check_fail_outside_fault,
    check_fault_took_effect,
)

RULE_NAMES = (
    "final",
    "status-matches-state",
    "step-once",
    "charged-once",
    "no-charge-when-cancelled",
    "stock-conserved",
    "stock-at-rest",
    "stock-never-negative",
    "fail-outside-fault",
    "fault-took-effect",
)


def check(history: History) -> list[Violation]:
    return [violation for rule in RULES for violation in rule(history)]


def settle_bound(history: History) -> float | None:
    """Seconds from the last heal (the end of the load when no fault was injected) until the
    last accepted order finished: every accepted order reached a final state within that
    long. None when one never finished, or when no order was accepted."""
    orders = _orders_by_id(history)
    finished: list[float] = []
    for op in _ok_ops(history):
        order = orders.get(op.order_id) if op.order_id is not None else None
        if order is None or order.finished_at is None:
            return None
        finished.append(order.finished_at)
    if not finished:
        return None
    healed = max((f.heal_at for f in history.faults), default=history.load_ended)
    # Orders that all finished before the heal settle "within 0 s", not within minus n.
    return max(0.0, max(finished) - healed)
