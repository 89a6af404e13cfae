"""tests.chaos.checker: the valid baseline passes, and each rule fires, alone, on a history
that breaks exactly it, naming the right subject and fault."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from tests.chaos import checker
from tests.chaos.checker import GRACE, Violation, check, fault_windows, settle_bound
from tests.chaos.history import History, Outcome, StockSample

from .histories import (
    CONFIRMED_FLOW,
    DECLINED_FLOW,
    FAIL_CONFIRM_FLOW,
    T0,
    bad_op,
    baseline,
    change_order,
    change_steps,
    change_stock,
    pod_kill,
)


def found(history: History) -> list[tuple[str, str, int | None]]:
    return [(v.rule, v.subject, v.fault) for v in check(history)]


def test_the_baseline_breaks_no_invariant() -> None:
    assert check(baseline()) == []


def _missing_order(h: History) -> History:
    # As if o5 had never reached the database: no order, no stock taken.
    h.orders = [o for o in h.orders if o.order_id != "o5"]
    return change_stock(h, "SKU-B", available=50)


def _pending_order(h: History) -> History:
    h = change_order(h, "o6", status="PENDING", saga_state="CONFIRMING", finished_at=None)
    # Stock as if o6 had not taken its unit, so only the "final" rule sees it.
    return change_stock(h, "SKU-A", available=97)


def _extra_op(h: History, outcome: Outcome, start: float, end: float) -> History:
    h.ops.append(bad_op(8, start, end, "SKU-B", 2, outcome))
    return h


def _stock_sample(h: History, sample: StockSample) -> History:
    h.stock_samples.append(sample)
    return h


def _no_effect(h: History) -> History:
    h.faults = [replace(pod_kill(), effect_at=None)]
    return h


BREAKS: dict[str, tuple[Callable[[History], History], tuple[str, str, int | None]]] = {
    "accepted order missing at the end": (_missing_order, ("final", "o5", 0)),
    "accepted order still pending": (_pending_order, ("final", "o6", None)),
    "confirmed order with a compensated saga": (
        lambda h: change_order(h, "o1", saga_state="COMPENSATED"),
        ("status-matches-state", "o1", None),
    ),
    "cancelled order with a completed saga": (
        lambda h: change_order(h, "o2", saga_state="COMPLETED"),
        ("status-matches-state", "o2", None),
    ),
    "step applied twice": (
        lambda h: change_steps(h, "o3", (*FAIL_CONFIRM_FLOW, ("release_stock", "SUCCEEDED"))),
        ("step-once", "o3", None),
    ),
    "step both succeeded and failed": (
        lambda h: change_steps(h, "o5", (("charge_payment", "FAILED"), *CONFIRMED_FLOW)),
        ("step-once", "o5", 0),
    ),
    "confirmed order never charged": (
        lambda h: change_steps(
            h, "o5", (("reserve_stock", "SUCCEEDED"), ("confirm_order", "SUCCEEDED"))
        ),
        ("charged-once", "o5", 0),
    ),
    "confirmed order refunded": (
        lambda h: change_steps(h, "o1", (*CONFIRMED_FLOW, ("refund_payment", "SUCCEEDED"))),
        ("charged-once", "o1", None),
    ),
    "cancelled order charged, never refunded": (
        lambda h: change_steps(
            h, "o3", tuple(s for s in FAIL_CONFIRM_FLOW if s[0] != "refund_payment")
        ),
        ("no-charge-when-cancelled", "o3", None),
    ),
    "cancelled order refunded, never charged": (
        lambda h: change_steps(h, "o2", (*DECLINED_FLOW, ("refund_payment", "SUCCEEDED"))),
        ("no-charge-when-cancelled", "o2", None),
    ),
    "units lost": (
        lambda h: change_stock(h, "SKU-A", available=90),
        ("stock-conserved", "SKU-A", None),
    ),
    "units appeared": (
        lambda h: change_stock(h, "SKU-B", available=48),
        ("stock-conserved", "SKU-B", None),
    ),
    "units still reserved": (
        lambda h: change_stock(h, "SKU-B", reserved=2),
        ("stock-at-rest", "SKU-B", None),
    ),
    "negative stock during the fault": (
        lambda h: _stock_sample(h, StockSample(T0 + 24.5, "SKU-B", available=-1, reserved=5)),
        ("stock-never-negative", "SKU-B", 0),
    ),
    "negative reserved outside faults": (
        lambda h: _stock_sample(h, StockSample(T0 + 45, "SKU-A", available=97, reserved=-1)),
        ("stock-never-negative", "SKU-A", None),
    ),
    "request failed with no fault": (
        lambda h: _extra_op(h, Outcome.FAIL, 50.0, 50.25),
        ("fail-outside-fault", "op#8", None),
    ),
    "request unanswered with no fault": (
        # Just after the grace: the window ends at recovery (30) + GRACE.
        lambda h: _extra_op(h, Outcome.INFO, 30 + GRACE + 0.25, 45.0),
        ("fail-outside-fault", "op#8", None),
    ),
    "fault never took effect": (
        _no_effect,
        ("fault-took-effect", "fault 0", 0),
    ),
}


def test_every_rule_is_broken_by_some_case_and_named_once() -> None:
    assert len(checker.RULES) == len(set(checker.RULE_NAMES)) == len(checker.RULE_NAMES)
    assert {rule for _, (rule, _, _) in BREAKS.values()} == set(checker.RULE_NAMES)


@pytest.mark.parametrize(("breaks", "expected"), BREAKS.values(), ids=BREAKS.keys())
def test_each_rule_fires_alone_on_what_breaks_it(
    breaks: Callable[[History], History], expected: tuple[str, str, int | None]
) -> None:
    assert found(breaks(baseline())) == [expected]


def test_a_second_negative_sample_of_the_same_sku_is_counted_not_repeated() -> None:
    h = baseline()
    h.stock_samples += [
        StockSample(T0 + 46, "SKU-A", available=-3, reserved=0),
        StockSample(T0 + 45, "SKU-A", available=-1, reserved=0),
    ]
    (violation,) = check(h)
    assert violation.rule == "stock-never-negative"
    assert "2 sample(s)" in violation.message
    assert "first at t+45.0s: available -1" in violation.message


@pytest.mark.parametrize(("unanswered_units", "taken"), [(3, 0), (3, 2), (3, 3)])
def test_units_of_unanswered_requests_are_slack(unanswered_units: int, taken: int) -> None:
    h = baseline()
    h.ops.append(bad_op(8, 24.0, 34.0, "SKU-A", unanswered_units, Outcome.INFO))
    change_stock(h, "SKU-A", available=96 - taken)
    assert check(h) == []


@pytest.mark.parametrize("taken", [4, 10])
def test_units_beyond_the_unanswered_requests_are_a_violation(taken: int) -> None:
    h = baseline()
    h.ops.append(bad_op(8, 24.0, 34.0, "SKU-A", 3, Outcome.INFO))
    change_stock(h, "SKU-A", available=96 - taken)
    (violation,) = check(h)
    assert (violation.rule, violation.subject, violation.fault) == (
        "stock-conserved",
        "SKU-A",
        None,
    )
    assert f"available {96 - taken}" in violation.message
    assert "confirmed orders hold 4" in violation.message
    assert f"{taken} more than the confirmed orders took, beyond the 3" in violation.message


def test_unanswered_units_of_another_sku_give_no_slack() -> None:
    h = baseline()
    h.ops.append(bad_op(8, 24.0, 34.0, "SKU-B", 3, Outcome.INFO))
    change_stock(h, "SKU-A", available=95)
    assert found(h) == [("stock-conserved", "SKU-A", None)]


def test_a_missing_order_is_named_unknown_at_the_end() -> None:
    (violation,) = check(_missing_order(baseline()))
    assert violation.message == "accepted order o5 (op #5) is unknown at the end"


def test_violation_reads_well_in_an_assertion() -> None:
    v = Violation("charged-once", "o5", "confirmed order o5 was charged 0 times", 0)
    assert str(v) == "charged-once: confirmed order o5 was charged 0 times [during fault 0]"
    assert str(replace(v, fault=None)) == "charged-once: confirmed order o5 was charged 0 times"


def test_fault_windows_end_at_recovery_or_load_end_plus_grace() -> None:
    h = baseline()
    h.faults.append(replace(pod_kill(1), kind="net-partition", start=T0 + 50, recovered_at=None))
    windows = fault_windows(h)
    assert [(w.index, w.kind, w.start - T0, w.end - T0) for w in windows] == [
        (0, "pod-kill", 20.0, 30.0 + GRACE),
        (1, "net-partition", 50.0, 60.0 + GRACE),
    ]


def test_overlapping_windows_blame_the_fault_injected_last() -> None:
    h = baseline()
    h.faults.append(replace(pod_kill(1), start=T0 + 33, heal_at=T0 + 36, recovered_at=T0 + 38))
    windows = fault_windows(h)
    assert checker.fault_at(windows, T0 + 34) == 1
    assert checker.fault_at(windows, T0 + 21) == 0
    assert checker.fault_at(windows, T0 + 50) is None
    assert checker.fault_at(windows, None) is None


@pytest.mark.parametrize(
    ("start", "end", "excused"),
    [
        (19.0, 20.0, True),  # sent before the fault, answered as it struck
        (35.0, 36.0, True),  # sent on the last instant of the grace
        (10.0, 19.75, False),
        (35.25, 36.0, False),
    ],
)
def test_a_failure_is_excused_when_it_overlaps_a_window(
    start: float, end: float, excused: bool
) -> None:
    h = _extra_op(baseline(), Outcome.FAIL, start, end)
    assert found(h) == ([] if excused else [("fail-outside-fault", "op#8", None)])


def test_settle_bound_counts_from_the_last_heal() -> None:
    h = baseline()
    assert settle_bound(h) == 41.0 - 25.0  # o6 finished at 41, the fault healed at 25
    h.faults.append(replace(pod_kill(1), start=T0 + 38, heal_at=T0 + 40, recovered_at=T0 + 42))
    assert settle_bound(h) == 1.0


def test_settle_bound_without_faults_counts_from_the_end_of_the_load() -> None:
    h = baseline()
    h.faults = []
    assert settle_bound(h) == 0.0  # all finished before the load ended
    change_order(h, "o6", finished_at=T0 + 63.5)
    assert settle_bound(h) == 3.5


def test_settle_bound_is_none_when_an_accepted_order_never_finished() -> None:
    assert settle_bound(change_order(baseline(), "o2", finished_at=None)) is None
    assert settle_bound(_missing_order(baseline())) is None


def test_settle_bound_is_none_when_nothing_was_accepted() -> None:
    h = baseline()
    h.ops = [op for op in h.ops if op.outcome is not Outcome.OK]
    assert settle_bound(h) is None


def test_a_cancelled_order_charged_and_refunded_twice_owes_nothing_but_is_a_violation() -> None:
    twice = (("charge_payment", "SUCCEEDED"), ("refund_payment", "SUCCEEDED"))
    h = change_steps(baseline(), "o3", (*FAIL_CONFIRM_FLOW, *twice))
    assert found(h) == [
        ("step-once", "o3", None),  # charge_payment
        ("step-once", "o3", None),  # refund_payment
        ("no-charge-when-cancelled", "o3", None),
    ]
    assert "charged 2 and refunded 2 times" in check(h)[-1].message
