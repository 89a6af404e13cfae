"""Stock per SKU: available units and units reserved by sagas in flight."""

from __future__ import annotations

from dataclasses import dataclass

from saga_service.domain.order import OrderItem


class StockInvariantError(ValueError):
    """A stock change that would break `available >= 0` or `reserved >= 0`."""


@dataclass(frozen=True, slots=True)
class StockLevel:
    sku: str
    available: int
    reserved: int

    def __post_init__(self) -> None:
        if self.available < 0 or self.reserved < 0:
            raise StockInvariantError(f"negative stock for {self.sku}: {self}")

    def reserve(self, quantity: int) -> StockLevel:
        if quantity <= 0:
            raise StockInvariantError("reserve quantity must be positive")
        if quantity > self.available:
            raise StockInvariantError(f"only {self.available} of {self.sku} available")
        return StockLevel(self.sku, self.available - quantity, self.reserved + quantity)

    def release(self, quantity: int) -> StockLevel:
        """Give reserved units back (compensation)."""
        if quantity <= 0 or quantity > self.reserved:
            raise StockInvariantError(f"cannot release {quantity} of {self.sku}: {self}")
        return StockLevel(self.sku, self.available + quantity, self.reserved - quantity)

    def commit(self, quantity: int) -> StockLevel:
        """Reserved units leave the warehouse (the order is confirmed)."""
        if quantity <= 0 or quantity > self.reserved:
            raise StockInvariantError(f"cannot commit {quantity} of {self.sku}: {self}")
        return StockLevel(self.sku, self.available, self.reserved - quantity)


@dataclass(frozen=True, slots=True)
class ReservationDecision:
    ok: bool
    new_levels: dict[str, StockLevel]
    short_skus: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        return "" if self.ok else "insufficient stock: " + ", ".join(self.short_skus)


def decide_reservation(
    levels: dict[str, StockLevel], items: list[OrderItem]
) -> ReservationDecision:
    """All-or-nothing reservation of every line of an order.

    `levels` holds the current level of each SKU of the order (a missing SKU is unknown
    and counts as short). Returns the new levels when every line fits.
    """
    short = tuple(
        sorted(
            item.sku
            for item in items
            if item.sku not in levels or levels[item.sku].available < item.quantity
        )
    )
    if short:
        return ReservationDecision(ok=False, new_levels={}, short_skus=short)
    new_levels = {item.sku: levels[item.sku].reserve(item.quantity) for item in items}
    return ReservationDecision(ok=True, new_levels=new_levels)
