"""tests.chaos.report: the three files of a results folder, and the Markdown table."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from tests.chaos.checker import check
from tests.chaos.figures import by_kind, fault_figures
from tests.chaos.history import History
from tests.chaos.report import format_table, write_report

from .histories import baseline, change_stock

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TABLE_HEADER = (
    "| kind | faults | failed | unknown | not recovered | first good after (s) | longest gap (s) "
    "| sagas final after heal (s) | ready again (s) | backlog peak |"
)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def report(history: History, out_dir: Path) -> dict[str, Path]:
    return write_report(history, check(history), fault_figures(history), out_dir)


def test_a_clean_run_writes_the_three_files(tmp_path: Path) -> None:
    out = tmp_path / "results" / "run-test"
    paths = report(baseline(), out)

    assert paths == {
        "json": out / "summary.json",
        "png": out / "timeline.png",
        "md": out / "summary.md",
    }
    summary = json.loads(paths["json"].read_text())
    assert set(summary) == {
        "run_id",
        "seed",
        "totals",
        "settle_bound_s",
        "violations",
        "faults",
        "by_kind",
    }
    assert (summary["run_id"], summary["seed"]) == ("run-test", 42)
    assert summary["violations"] == []
    assert summary["settle_bound_s"] == 16.0
    assert summary["totals"]["confirmed"] == 4
    assert [f["kind"] for f in summary["faults"]] == ["pod-kill"]
    assert summary["faults"][0]["longest_gap_s"] == 7.75
    assert summary["by_kind"]["pod-kill"]["count"] == 1

    assert png_size(paths["png"]) == (1400, 800)

    md = paths["md"].read_text()
    assert md.startswith("# Chaos run run-test (seed 42)\n")
    assert "**0 invariant violations**" in md
    assert TABLE_HEADER in md
    assert "| pod-kill | 1 | 1 | 0 | 0 | 3.5 | 7.8 | 3.0 | 5.0 | 40.0 |" in md
    assert "within 16.0 s after the last fault healed" in md
    assert "## Violations\n\nNone.\n" in md
    assert "![timeline](timeline.png)" in md


def test_violations_are_counted_and_listed(tmp_path: Path) -> None:
    history = change_stock(baseline(), "SKU-B", reserved=2)
    violations = check(history)
    paths = write_report(history, violations, fault_figures(history), tmp_path)

    summary = json.loads(paths["json"].read_text())
    assert summary["violations"] == [
        {
            "rule": "stock-at-rest",
            "subject": "SKU-B",
            "message": "sku SKU-B: 2 units still reserved at the end",
            "fault": None,
        }
    ]
    md = paths["md"].read_text()
    assert "**1 invariant violation**" in md
    assert "- stock-at-rest: sku SKU-B: 2 units still reserved at the end\n" in md


def test_an_unsettled_run_says_so(tmp_path: Path) -> None:
    history = baseline()
    history.orders = history.orders[:-1]
    md = report(history, tmp_path)["md"].read_text()
    assert "Not every accepted order reached a final state" in md
    assert json.loads((tmp_path / "summary.json").read_text())["settle_bound_s"] is None


def test_an_empty_history_still_makes_a_report(tmp_path: Path) -> None:
    paths = report(History(run_id="empty", seed=7), tmp_path)
    assert png_size(paths["png"]) == (1400, 800)
    md = paths["md"].read_text()
    assert "**0 invariant violations**" in md
    assert TABLE_HEADER in md


def test_format_table() -> None:
    table = format_table(
        {
            "net-partition": {
                "count": 2,
                "failed": 0,
                "unknown": 3,
                "unrecovered": 1,
                "first_good_after_s": None,
                "longest_gap_s": 12.25,
                "sagas_final_after_heal_s": 0.0,
                "ready_again_s": None,
                "backlog_peak": 1300.0,
            }
        }
    )
    assert table.splitlines() == [
        TABLE_HEADER,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        "| net-partition | 2 | 0 | 3 | 1 | - | 12.2 | 0.0 | - | 1300.0 |",
    ]
    assert format_table(by_kind([])).splitlines()[0] == TABLE_HEADER
