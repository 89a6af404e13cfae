"""The load driver's JSON lines become a History the checker can judge, and a History
survives being written and read back."""

from __future__ import annotations

from pathlib import Path

from tests.chaos import checker
from tests.chaos.history import History, Outcome
from tests.chaos.runner import _fill

LINES = [
    {"type": "setup", "sku": "r-sku-0", "initial": 10},
    {"type": "load", "started": 100.0},
    {"type": "op", "seq": 1, "start": 101.0, "end": 101.1, "outcome": "fail", "sku": "r-sku-0",
     "quantity": 1, "customer_id": "r-c1", "status": 503, "order_id": None, "saga_id": None,
     "error": "unavailable", "served_by": "pod-b"},
    {"type": "op", "seq": 0, "start": 100.5, "end": 100.6, "outcome": "ok", "sku": "r-sku-0",
     "quantity": 2, "customer_id": "r-c0", "status": 202, "order_id": "o-0", "saga_id": "s-0",
     "error": "", "served_by": "pod-a", "connect_errors": ["TimeoutError"]},
    {"type": "stock", "at": 101.5, "sku": "r-sku-0", "available": 8, "reserved": 0},
    {"type": "load", "ended": 110.0, "sent": 2},
    {"type": "order", "order_id": "o-0", "saga_id": "s-0", "status": "CONFIRMED",
     "saga_state": "COMPLETED", "finished_at": 102.0, "steps": [
         {"step": "reserve_stock", "outcome": "SUCCEEDED", "executed_by": "a", "at": 100.7},
         {"step": "charge_payment", "outcome": "SUCCEEDED", "executed_by": "a", "at": 100.8},
         {"step": "confirm_order", "outcome": "SUCCEEDED", "executed_by": "b", "at": 101.9}]},
    {"type": "final_stock", "sku": "r-sku-0", "available": 8, "reserved": 0},
    {"type": "done", "at": 112.0},
]  # fmt: skip


def test_driver_lines_fill_a_history_in_send_order() -> None:
    history = History(run_id="r", seed=1)
    _fill(history, [dict(line) for line in LINES])
    assert [op.seq for op in history.ops] == [0, 1]
    assert history.ops[1].outcome is Outcome.FAIL
    assert [op.connect_errors for op in history.ops] == [("TimeoutError",), ()]
    assert (history.load_started, history.load_ended) == (100.0, 110.0)
    assert history.stock[0].initial == 10
    assert [s.step for s in history.orders[0].steps] == [
        "reserve_stock", "charge_payment", "confirm_order",
    ]  # fmt: skip
    # The failed request lies outside any fault window: exactly that rule fires.
    assert [v.rule for v in checker.check(history)] == ["fail-outside-fault"]


def test_a_history_reads_back_as_it_was_written(tmp_path: Path) -> None:
    history = History(run_id="r", seed=1)
    _fill(history, [dict(line) for line in LINES])
    history.write(tmp_path / "history.jsonl")
    assert History.read(tmp_path / "history.jsonl") == history
