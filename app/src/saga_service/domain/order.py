"""Orders and their lines."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

SKU_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
MAX_QUANTITY = 10_000
MAX_UNIT_PRICE_CENTS = 100_000_000


class OrderStatus(enum.StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"


class InvalidOrder(ValueError):
    """An order that can never be placed, with a message fit for the caller."""


@dataclass(frozen=True, slots=True)
class OrderItem:
    sku: str
    quantity: int
    unit_price_cents: int

    @property
    def line_total_cents(self) -> int:
        return self.quantity * self.unit_price_cents


def validate_sku(sku: str) -> str:
    if not SKU_PATTERN.match(sku):
        raise InvalidOrder(
            f"invalid sku {sku[:70]!r}: 1-64 characters of letters, digits, '.', '_', ':', '-'"
        )
    return sku


def validate_items(items: list[OrderItem], max_items: int) -> list[OrderItem]:
    """Check the lines of an order; return them sorted by SKU (the lock order)."""
    if not items:
        raise InvalidOrder("an order needs at least one item")
    if len(items) > max_items:
        raise InvalidOrder(f"too many items: {len(items)} > {max_items}")
    seen: set[str] = set()
    for item in items:
        validate_sku(item.sku)
        if item.sku in seen:
            raise InvalidOrder(f"sku {item.sku!r} appears more than once; merge the lines")
        seen.add(item.sku)
        if item.quantity <= 0:
            raise InvalidOrder(f"quantity of {item.sku!r} must be positive, got {item.quantity}")
        if item.quantity > MAX_QUANTITY:
            raise InvalidOrder(f"quantity of {item.sku!r} must be at most {MAX_QUANTITY}")
        if item.unit_price_cents < 0 or item.unit_price_cents > MAX_UNIT_PRICE_CENTS:
            raise InvalidOrder(
                f"unit_price_cents of {item.sku!r} must be within 0..{MAX_UNIT_PRICE_CENTS}"
            )
    return sorted(items, key=lambda i: i.sku)


def order_total_cents(items: list[OrderItem]) -> int:
    return sum(item.line_total_cents for item in items)


def validate_customer_id(customer_id: str) -> str:
    if not customer_id or not customer_id.strip():
        raise InvalidOrder("customer_id must not be empty")
    if len(customer_id) > 128:
        raise InvalidOrder("customer_id must be at most 128 characters")
    return customer_id
