"""How the release weathered each fault, in numbers: what failed, how soon requests
succeeded again, how long the sagas took to settle, and what the pods and backlog did.
These are reported, not judged; the invariants are tests.chaos.checker's business."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

from tests.chaos.checker import CANCELLED, CONFIRMED, FaultWindow, fault_windows
from tests.chaos.history import Fault, FinalOrder, History, Op, Outcome


@dataclass(frozen=True, slots=True)
class FaultFigures:
    index: int
    kind: str
    target: str
    duration_s: float  # heal_at - start
    effect_after_s: float | None  # effect_at - start
    requests: int  # ops that started inside the window
    failed: int
    unknown: int
    first_good_after_s: float | None
    longest_gap_s: float
    sagas_final_after_heal_s: float | None
    ready_again_s: float | None  # recovered_at - heal_at
    backlog_peak: float | None
    min_ready_pods: int | None


# by_kind reports the worst of these over the faults of a kind.
WORST_OF = (
    "first_good_after_s",
    "longest_gap_s",
    "sagas_final_after_heal_s",
    "ready_again_s",
    "backlog_peak",
)


def _first_good_after(fault: Fault, in_window: list[Op], ops: list[Op]) -> float | None:
    bad_ends = [op.end for op in in_window if op.outcome is not Outcome.OK]
    if not bad_ends:
        return 0.0
    last_bad = max(bad_ends)
    good = [op.end for op in ops if op.outcome is Outcome.OK and op.end > last_bad]
    return min(good) - fault.start if good else None


def _longest_gap(window: FaultWindow, ops: list[Op]) -> float:
    ends = sorted(op.end for op in ops if op.outcome is Outcome.OK and window.contains(op.end))
    if not ends:
        # Nothing succeeded in the whole window: that whole window is the gap.
        return window.end - window.start
    marks = [window.start, *ends]
    return max(b - a for a, b in pairwise(marks))


def _sagas_final_after_heal(
    fault: Fault, ops: list[Op], orders: dict[str, FinalOrder]
) -> float | None:
    finished: list[float] = []
    for op in ops:
        if op.outcome is not Outcome.OK or op.start >= fault.heal_at:
            continue
        order = orders.get(op.order_id) if op.order_id is not None else None
        if order is None or order.finished_at is None:
            return None
        finished.append(order.finished_at)
    if not finished:
        return None
    return max(0.0, max(finished) - fault.heal_at)


def fault_figures(history: History) -> list[FaultFigures]:
    orders = {order.order_id: order for order in history.orders}
    figures: list[FaultFigures] = []
    for fault, window in zip(history.faults, fault_windows(history), strict=True):
        in_window = [op for op in history.ops if window.contains(op.start)]
        samples = [s for s in history.samples if window.contains(s.at)]
        backlogs = [s.backlog for s in samples if s.backlog is not None]
        figures.append(
            FaultFigures(
                index=fault.index,
                kind=fault.kind,
                target=fault.target,
                duration_s=fault.heal_at - fault.start,
                effect_after_s=None if fault.effect_at is None else fault.effect_at - fault.start,
                requests=len(in_window),
                failed=sum(1 for op in in_window if op.outcome is Outcome.FAIL),
                unknown=sum(1 for op in in_window if op.outcome is Outcome.INFO),
                first_good_after_s=_first_good_after(fault, in_window, history.ops),
                longest_gap_s=_longest_gap(window, history.ops),
                sagas_final_after_heal_s=_sagas_final_after_heal(fault, history.ops, orders),
                ready_again_s=(
                    None if fault.recovered_at is None else fault.recovered_at - fault.heal_at
                ),
                backlog_peak=max(backlogs) if backlogs else None,
                min_ready_pods=min(s.ready_pods for s in samples) if samples else None,
            )
        )
    return figures


def _worst(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def by_kind(figures: Iterable[FaultFigures]) -> dict[str, dict[str, float | int | None]]:
    """Per fault kind (sorted by name): how many, failures summed, and the worst of the
    recovery figures; a figure that is None for every fault of the kind stays None."""
    groups: dict[str, list[FaultFigures]] = {}
    for fig in figures:
        groups.setdefault(fig.kind, []).append(fig)
    table: dict[str, dict[str, float | int | None]] = {}
    for kind in sorted(groups):
        group = groups[kind]
        row: dict[str, float | int | None] = {
            "count": len(group),
            "failed": sum(f.failed for f in group),
            "unknown": sum(f.unknown for f in group),
            # The worst-of below skips Nones, and None here means "never": count them apart.
            "unrecovered": sum(
                1 for f in group if f.ready_again_s is None or f.sagas_final_after_heal_s is None
            ),
        }
        for name in WORST_OF:
            row[name] = _worst(getattr(f, name) for f in group)
        table[kind] = row
    return table


def totals(history: History) -> dict[str, int | float]:
    orders = {order.order_id: order for order in history.orders}
    ok = [op for op in history.ops if op.outcome is Outcome.OK]
    accepted = {op.order_id for op in ok if op.order_id is not None}
    statuses = [orders[o].status if o in orders else None for o in accepted]
    confirmed = statuses.count(CONFIRMED)
    cancelled = statuses.count(CANCELLED)
    seconds = history.load_ended - history.load_started
    return {
        "ops": len(history.ops),
        "ok": len(ok),
        "failed": sum(1 for op in history.ops if op.outcome is Outcome.FAIL),
        "unknown": sum(1 for op in history.ops if op.outcome is Outcome.INFO),
        "connections_retried": sum(1 for op in history.ops if op.connect_errors),
        "accepted": len(accepted),
        "confirmed": confirmed,
        "cancelled": cancelled,
        # Not final, or missing from the end state altogether.
        "pending": len(accepted) - confirmed - cancelled,
        "throughput": len(ok) / seconds if seconds > 0 else 0.0,
    }
