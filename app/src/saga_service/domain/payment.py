"""Simulated payments with deterministic rules, so tests can force each path."""

from __future__ import annotations

import enum
from dataclasses import dataclass

DECLINE_PREFIX = "decline"
FAIL_CONFIRM_PREFIX = "fail-confirm"


class PaymentStatus(enum.StrEnum):
    CHARGED = "CHARGED"
    DECLINED = "DECLINED"
    REFUNDED = "REFUNDED"


@dataclass(frozen=True, slots=True)
class PaymentDecision:
    approved: bool
    reason: str = ""


def decide_payment(customer_id: str, amount_cents: int) -> PaymentDecision:
    """A customer id that begins with `decline` is declined; everything else is charged."""
    if amount_cents < 0:
        return PaymentDecision(False, "negative amount")
    if customer_id.startswith(DECLINE_PREFIX):
        return PaymentDecision(False, f"customer_id starts with {DECLINE_PREFIX!r}")
    return PaymentDecision(True)


def decide_confirmation(customer_id: str) -> PaymentDecision:
    """A customer id that begins with `fail-confirm` fails the confirm step after the charge.

    It stands for a downstream refusal (shipping, fraud review) and drives the longest
    compensation path: refund, release stock, cancel order.
    """
    if customer_id.startswith(FAIL_CONFIRM_PREFIX):
        return PaymentDecision(False, f"customer_id starts with {FAIL_CONFIRM_PREFIX!r}")
    return PaymentDecision(True)
