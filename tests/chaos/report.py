"""A campaign's results as files: summary.json for tools, summary.md for people, and
timeline.png to see the faults against the traffic, pods and backlog."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tests.chaos.checker import Violation, fault_windows, settle_bound
from tests.chaos.figures import FaultFigures, by_kind, totals
from tests.chaos.history import History, Outcome

TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("count", "faults"),
    ("failed", "failed"),
    ("unknown", "unknown"),
    ("unrecovered", "not recovered"),
    ("first_good_after_s", "first good after (s)"),
    ("longest_gap_s", "longest gap (s)"),
    ("sagas_final_after_heal_s", "sagas final after heal (s)"),
    ("ready_again_s", "ready again (s)"),
    ("backlog_peak", "backlog peak"),
)

# Width of one character of the 9-point fault labels, in pixels at the figure's dpi.
LABEL_CHAR_PX = 6

OUTCOME_COLORS = {Outcome.OK: "#4c9f50", Outcome.FAIL: "#d64541", Outcome.INFO: "#f0a030"}
OUTCOME_LABELS = {Outcome.OK: "ok", Outcome.FAIL: "failed", Outcome.INFO: "unknown"}


def _cell(value: float | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.1f}"


def format_table(table: dict[str, dict[str, float | int | None]]) -> str:
    """The per-kind figures as a Markdown table, one row per fault kind."""
    header = ["kind", *(title for _, title in TABLE_COLUMNS)]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(TABLE_COLUMNS)) + "|",
    ]
    for kind, row in table.items():
        cells = [kind, *(_cell(row.get(key)) for key, _ in TABLE_COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(violations: Sequence[Violation]) -> str:
    n = len(violations)
    return f"{n} invariant violation{'' if n == 1 else 's'}"


def _summary(
    history: History, violations: Sequence[Violation], figures: Sequence[FaultFigures]
) -> dict[str, Any]:
    return {
        "run_id": history.run_id,
        "seed": history.seed,
        "totals": totals(history),
        "settle_bound_s": settle_bound(history),
        "violations": [asdict(v) for v in violations],
        "faults": [asdict(f) for f in figures],
        "by_kind": by_kind(figures),
    }


def _markdown(
    history: History,
    violations: Sequence[Violation],
    figures: Sequence[FaultFigures],
    png_name: str,
) -> str:
    t = totals(history)
    bound = settle_bound(history)
    lines = [
        f"# Chaos run {history.run_id} (seed {history.seed})",
        "",
        f"**{verdict(violations)}**",
        "",
        "## Totals",
        "",
        f"- operations: {t['ops']} (ok {t['ok']}, failed {t['failed']}, unknown {t['unknown']}; "
        f"a second connection attempt for {t['connections_retried']})",
        f"- accepted orders: {t['accepted']} (confirmed {t['confirmed']}, "
        f"cancelled {t['cancelled']}, pending {t['pending']})",
        f"- throughput: {t['throughput']:.1f} accepted orders/s",
        "",
        "## Settling",
        "",
    ]
    if bound is None:
        lines.append("Not every accepted order reached a final state (or none was accepted).")
    else:
        lines.append(
            f"Every accepted order reached a final state within {bound:.1f} s "
            "after the last fault healed."
        )
    lines += ["", "## Faults by kind", "", format_table(by_kind(figures)), "", "## Violations", ""]
    lines += [f"- {v}" for v in violations] or ["None."]
    lines += ["", "## Timeline", "", f"![timeline]({png_name})", ""]
    return "\n".join(lines)


def _timeline(history: History, violations: Sequence[Violation], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    # The Figure API without pyplot: no global figure state left behind in a test process.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    t0 = history.load_started
    seconds = max(1, math.ceil(history.load_ended - t0))
    windows = fault_windows(history)
    samples = sorted(history.samples, key=lambda s: s.at)
    # Windows run GRACE past the recovery, possibly past the end of the load: show them whole.
    right = max([float(seconds)] + [w.end - t0 for w in windows] + [s.at - t0 for s in samples])

    fig = Figure(figsize=(14, 8), dpi=100, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))

    # Requests are placed by when they were sent, the moment a fault could have hit them.
    counts = {outcome: [0] * seconds for outcome in Outcome}
    for op in history.ops:
        second = min(seconds - 1, max(0, int(op.start - t0)))
        counts[op.outcome][second] += 1
    base = [0] * seconds
    for outcome in (Outcome.OK, Outcome.FAIL, Outcome.INFO):
        top.bar(
            range(seconds),
            counts[outcome],
            width=1.0,
            align="edge",
            bottom=base,
            color=OUTCOME_COLORS[outcome],
            label=OUTCOME_LABELS[outcome],
        )
        base = [b + c for b, c in zip(base, counts[outcome], strict=True)]
    top.set_ylabel("requests / s (by send time)")
    top.yaxis.set_major_locator(MaxNLocator(integer=True))
    # Headroom above the tallest bar, where the fault labels go without hiding any bar.
    top.set_ylim(0, max([1, *base]) * 1.25)
    top.legend(loc="upper right", bbox_to_anchor=(1.0, 0.9))

    # A window gets the label that fits in it (kind and number, the number, or none), so a
    # long run's labels do not pile up into an unreadable band; summary.md lists every fault.
    px_per_second = fig.get_figwidth() * fig.dpi * 0.9 / right
    for fault, window in zip(history.faults, windows, strict=True):
        start, end = window.start - t0, window.end - t0
        room = (end - start) * px_per_second
        label = next(
            (t for t in (f" #{window.index} {window.kind[:24]}", f" #{window.index}")
             if len(t) * LABEL_CHAR_PX <= room),
            None,
        )  # fmt: skip
        for ax in (top, bottom):
            ax.axvspan(start, end, color="#888888", alpha=0.15, linewidth=0, zorder=0)
            ax.axvline(fault.heal_at - t0, color="#555555", linestyle="--", linewidth=0.8)
        top.axvspan(start, end, ymin=0.9, ymax=1.0, color="#a0aec0", linewidth=0)
        if label is not None:
            top.text(
                start,
                0.95,
                label,
                transform=top.get_xaxis_transform(),
                va="center",
                ha="left",
                fontsize=9,
                clip_on=True,
            )

    bottom.step(
        [s.at - t0 for s in samples],
        [s.ready_pods for s in samples],
        where="post",
        color="#2b6cb0",
        label="Ready app pods",
    )
    bottom.set_ylabel("Ready app pods")
    bottom.set_ylim(bottom=0)
    bottom.yaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.set_xlabel("seconds since load start (shaded: fault windows; dashed: heal)")
    backlog_ax = bottom.twinx()
    backlog = [(s.at - t0, s.backlog) for s in samples if s.backlog is not None]
    backlog_ax.plot(
        [x for x, _ in backlog], [y for _, y in backlog], color="#805ad5", label="saga backlog"
    )
    backlog_ax.set_ylabel("saga backlog")
    backlog_ax.set_ylim(bottom=0)
    pods_handles, pods_labels = bottom.get_legend_handles_labels()
    backlog_handles, backlog_labels = backlog_ax.get_legend_handles_labels()
    bottom.legend(pods_handles + backlog_handles, pods_labels + backlog_labels, loc="upper right")
    bottom.set_xlim(0, right)

    fig.suptitle(f"run {history.run_id} · seed {history.seed} · {verdict(violations)}")
    fig.savefig(path, format="png")


def write_report(
    history: History,
    violations: Sequence[Violation],
    figures: Sequence[FaultFigures],
    out_dir: Path,
) -> dict[str, Path]:
    """Write summary.json, timeline.png and summary.md into `out_dir` (created if need be)
    and return their paths as "json", "png" and "md"."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "summary.json",
        "png": out_dir / "timeline.png",
        "md": out_dir / "summary.md",
    }
    summary = _summary(history, violations, figures)
    paths["json"].write_text(json.dumps(summary, indent=2) + "\n")
    _timeline(history, violations, paths["png"])
    paths["md"].write_text(_markdown(history, violations, figures, paths["png"].name))
    return paths
