"""tests.chaos.figures on the baseline history (see histories.py for its timeline), with
a second fault that never took effect and left a request unanswered, so that every figure
has a known value and the None cases show up."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

from tests.chaos.figures import FaultFigures, by_kind, fault_figures, totals
from tests.chaos.history import History, Outcome

from .histories import T0, bad_op, baseline, change_order, pod_kill


def two_faults() -> History:
    h = baseline()
    # Window 45..65 (never recovered: load end 60 + grace); no OK op ends in it.
    h.faults.append(
        replace(pod_kill(1), start=T0 + 45, effect_at=None, heal_at=T0 + 48, recovered_at=None)
    )
    h.ops.append(bad_op(8, 46.0, 56.0, "SKU-B", 2, Outcome.INFO))
    return h


def test_figures_of_a_fault_with_known_numbers() -> None:
    first, _ = fault_figures(two_faults())
    assert first == FaultFigures(
        index=0,
        kind="pod-kill",
        target="app",
        duration_s=5.0,
        effect_after_s=1.0,
        requests=3,  # op4 (failed), op5 and op7 started in 20..35
        failed=1,
        unknown=0,
        first_good_after_s=3.5,  # op5 ended at 23.5, after op4's end at 22.5
        longest_gap_s=7.75,  # 20 -> 23.5 (op5) -> 31.25 (op7)
        sagas_final_after_heal_s=3.0,  # o5 finished at 28, heal at 25
        ready_again_s=5.0,
        backlog_peak=40.0,
        min_ready_pods=1,
    )


def test_figures_of_a_fault_nothing_recovered_from() -> None:
    _, second = fault_figures(two_faults())
    assert second == FaultFigures(
        index=1,
        kind="pod-kill",
        target="app",
        duration_s=3.0,
        effect_after_s=None,
        requests=1,
        failed=0,
        unknown=1,
        first_good_after_s=None,  # no OK op ended after the unanswered one
        longest_gap_s=20.0,  # no OK op ended in 45..65: the whole window
        sagas_final_after_heal_s=0.0,  # all finished before the heal at 48
        ready_again_s=None,
        backlog_peak=0.0,
        min_ready_pods=3,
    )


def test_a_fault_with_no_failure_was_good_at_once() -> None:
    h = baseline()
    h.ops = [op for op in h.ops if op.outcome is Outcome.OK]
    (fig,) = fault_figures(h)
    assert (fig.requests, fig.failed, fig.first_good_after_s) == (2, 0, 0.0)


def test_an_unfinished_saga_placed_before_the_heal_leaves_the_settle_time_open() -> None:
    (fig,) = fault_figures(change_order(baseline(), "o1", finished_at=None))
    assert fig.sagas_final_after_heal_s is None
    # An order placed after the heal does not count for this fault.
    (fig,) = fault_figures(change_order(baseline(), "o7", finished_at=None))
    assert fig.sagas_final_after_heal_s == 3.0


def test_no_samples_in_the_window_gives_none() -> None:
    h = baseline()
    h.samples = [s for s in h.samples if not T0 + 20 <= s.at <= T0 + 35]
    (fig,) = fault_figures(h)
    assert (fig.backlog_peak, fig.min_ready_pods) == (None, None)
    h.samples.append(replace(h.samples[0], at=T0 + 22, ready_pods=2, backlog=None))
    (fig,) = fault_figures(h)
    assert (fig.backlog_peak, fig.min_ready_pods) == (None, 2)


def test_figures_serialise_to_json() -> None:
    figures = fault_figures(two_faults())
    loaded = json.loads(json.dumps([asdict(f) for f in figures]))
    assert [FaultFigures(**f) for f in loaded] == figures


def test_by_kind_sums_counts_and_keeps_the_worst() -> None:
    first, second = fault_figures(two_faults())
    partition = replace(
        second,
        index=2,
        kind="net-partition",
        failed=4,
        first_good_after_s=None,
        sagas_final_after_heal_s=None,
        backlog_peak=None,
    )
    assert by_kind([first, second, partition]) == {
        "net-partition": {
            "count": 1,
            "failed": 4,
            "unknown": 1,
            "unrecovered": 1,
            "first_good_after_s": None,
            "longest_gap_s": 20.0,
            "sagas_final_after_heal_s": None,
            "ready_again_s": None,
            "backlog_peak": None,
        },
        "pod-kill": {
            "count": 2,
            "failed": 1,
            "unknown": 1,
            "unrecovered": 1,
            "first_good_after_s": 3.5,
            "longest_gap_s": 20.0,
            "sagas_final_after_heal_s": 3.0,
            "ready_again_s": 5.0,
            "backlog_peak": 40.0,
        },
    }
    assert list(by_kind([partition, first])) == ["net-partition", "pod-kill"]
    assert by_kind([]) == {}


def test_totals() -> None:
    assert totals(baseline()) == {
        "ops": 7,
        "ok": 6,
        "failed": 1,
        "unknown": 0,
        "connections_retried": 0,
        "accepted": 6,
        "confirmed": 4,
        "cancelled": 2,
        "pending": 0,
        "throughput": 0.1,
    }
    h = change_order(two_faults(), "o6", status="PENDING")
    h.orders = [o for o in h.orders if o.order_id != "o7"]
    # the first connection of one op did not open; its second did
    h.ops = [replace(op, connect_errors=("TimeoutError",)) if op.seq == 2 else op for op in h.ops]
    assert totals(h) | {"throughput": None} == {
        "ops": 8,
        "ok": 6,
        "failed": 1,
        "unknown": 1,
        "connections_retried": 1,
        "accepted": 6,
        "confirmed": 2,
        "cancelled": 2,
        "pending": 2,  # o6 still pending, o7 missing
        "throughput": None,
    }


def test_throughput_of_an_empty_load_is_zero() -> None:
    assert totals(History(run_id="r", seed=0))["throughput"] == 0.0


def test_the_longest_gap_counts_from_the_window_start() -> None:
    h = baseline()
    h.ops = [replace(op, end=T0 + 29.0) if op.seq == 5 else op for op in h.ops]
    (fig,) = fault_figures(h)
    assert fig.longest_gap_s == 9.0  # 20 -> 29 (op5), longer than 29 -> 31.25 (op7)
