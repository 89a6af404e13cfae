"""Orders and their lines."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

# The patterns are published as they are in the OpenAPI document, so they are written to
# mean the same to Python's re, the Rust regex pydantic validates with and ECMA-262 (JSON
# Schema): no \s, no \w (their sets differ between the three), and matched whole with
# fullmatch (Python's `$` also matches before a trailing newline).
SKU_MAX_LENGTH = 64
SKU_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
CUSTOMER_ID_MAX_LENGTH = 128
# Exactly what str.isspace() (and so str.strip()) calls whitespace.
_WHITESPACE_CLASS = (
    r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
)
# Not blank, and no NUL: PostgreSQL text cannot hold one.
CUSTOMER_ID_PATTERN = re.compile(rf"^[^\x00]*[^\x00{_WHITESPACE_CLASS}][^\x00]*$")
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
    if not SKU_PATTERN.fullmatch(sku):
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
    if len(customer_id) > CUSTOMER_ID_MAX_LENGTH:
        raise InvalidOrder(f"customer_id must be at most {CUSTOMER_ID_MAX_LENGTH} characters")
    if "\x00" in customer_id:
        raise InvalidOrder("customer_id must not contain a NUL character")
    return customer_id
