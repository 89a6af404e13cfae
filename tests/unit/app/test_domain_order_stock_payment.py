"""Pure domain rules: order validation, stock arithmetic, payment decisions."""

from __future__ import annotations

import pytest
from saga_service.domain.order import (
    InvalidOrder,
    OrderItem,
    order_total_cents,
    validate_customer_id,
    validate_items,
    validate_sku,
)
from saga_service.domain.payment import decide_confirmation, decide_payment
from saga_service.domain.stock import StockInvariantError, StockLevel, decide_reservation


def test_items_are_sorted_by_sku_for_lock_order() -> None:
    items = [OrderItem("b", 1, 10), OrderItem("a", 2, 5)]
    assert [i.sku for i in validate_items(items, 10)] == ["a", "b"]
    assert order_total_cents(items) == 20


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([], "at least one item"),
        ([OrderItem("a", 0, 1)], "must be positive"),
        ([OrderItem("a", -3, 1)], "must be positive"),
        ([OrderItem("a", 1, -1)], "unit_price_cents"),
        ([OrderItem("a", 1, 1), OrderItem("a", 2, 1)], "more than once"),
        ([OrderItem("bad sku!", 1, 1)], "invalid sku"),
        ([OrderItem("a", 10**6, 1)], "at most"),
    ],
)
def test_invalid_items_are_rejected_with_a_reason(items: list[OrderItem], message: str) -> None:
    with pytest.raises(InvalidOrder, match=message):
        validate_items(items, 10)


def test_too_many_items() -> None:
    items = [OrderItem(f"s{i}", 1, 1) for i in range(11)]
    with pytest.raises(InvalidOrder, match="too many items: 11 > 10"):
        validate_items(items, 10)


def test_sku_and_customer_rules() -> None:
    assert validate_sku("SKU-1.a_b:c") == "SKU-1.a_b:c"
    for bad in ("", "-lead", "x" * 65, "sp ace"):
        with pytest.raises(InvalidOrder):
            validate_sku(bad)
    with pytest.raises(InvalidOrder):
        validate_customer_id("  ")
    with pytest.raises(InvalidOrder):
        validate_customer_id("c" * 129)


def test_stock_level_moves_keep_invariants() -> None:
    level = StockLevel("a", 5, 0)
    reserved = level.reserve(3)
    assert (reserved.available, reserved.reserved) == (2, 3)
    assert reserved.release(3) == level
    committed = reserved.commit(3)
    assert (committed.available, committed.reserved) == (2, 0)
    with pytest.raises(StockInvariantError):
        level.reserve(6)
    with pytest.raises(StockInvariantError):
        level.release(1)
    with pytest.raises(StockInvariantError):
        reserved.commit(4)
    with pytest.raises(StockInvariantError):
        StockLevel("a", -1, 0)


def test_reservation_is_all_or_nothing() -> None:
    levels = {"a": StockLevel("a", 5, 0), "b": StockLevel("b", 1, 0)}
    ok = decide_reservation(levels, [OrderItem("a", 5, 1), OrderItem("b", 1, 1)])
    assert ok.ok and ok.new_levels["a"].available == 0 and ok.new_levels["b"].reserved == 1
    short = decide_reservation(levels, [OrderItem("a", 1, 1), OrderItem("b", 2, 1)])
    assert not short.ok and short.short_skus == ("b",) and short.new_levels == {}
    assert "insufficient stock: b" in short.reason
    unknown = decide_reservation(levels, [OrderItem("zzz", 1, 1)])
    assert not unknown.ok and unknown.short_skus == ("zzz",)


def test_payment_decline_rule_is_deterministic() -> None:
    assert decide_payment("alice", 100).approved
    assert not decide_payment("decline-alice", 100).approved
    assert not decide_payment("declined", 0).approved
    assert decide_payment("alice-decline", 100).approved  # prefix only
    assert not decide_payment("alice", -1).approved
    assert decide_confirmation("alice").approved
    assert not decide_confirmation("fail-confirm-1").approved
