"""200 concurrent orders for 50 units across two app processes: exactly 50 confirmed,
stock never negative, money conserved."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.integration import app_processes
from tests.integration.app_processes import AppStack

pytestmark = pytest.mark.timeout(600)

# Fixtures of app_processes, made visible to this module.
app_stack = app_processes.app_stack
app_stack_factory = app_processes.app_stack_factory

ORDERS = 200
STOCK = 50
PRICE = 1234


def test_200_concurrent_orders_for_50_units_across_two_processes(app_stack: AppStack) -> None:
    apps = app_stack.start(2)
    app_stack.set_stock("HOT-1", STOCK)

    violations: list[str] = []
    stop = threading.Event()

    def watch_stock() -> None:
        """Sample stock while sagas run: never negative, units never appear or vanish."""
        with app_stack.connect() as conn:
            while not stop.is_set():
                row = conn.execute(
                    "SELECT s.available, s.reserved,"
                    " (SELECT COALESCE(sum(quantity), 0) FROM stock_reservations"
                    "  WHERE sku = s.sku AND status = 'COMMITTED') AS sold"
                    " FROM stock s WHERE sku = 'HOT-1'"
                ).fetchone()
                assert row is not None
                if row["available"] < 0 or row["reserved"] < 0:
                    violations.append(f"negative stock {row}")
                if row["available"] + row["reserved"] + row["sold"] != STOCK:
                    violations.append(f"units not conserved {row}")
                stop.wait(0.02)

    watcher = threading.Thread(target=watch_stock, daemon=True)
    watcher.start()

    def place(i: int) -> int:
        app = apps[i % len(apps)]
        with httpx.Client(base_url=app.url, timeout=30) as client:
            response = client.post(
                "/orders",
                json={
                    "customer_id": f"cust-{i}",
                    "items": [{"sku": "HOT-1", "quantity": 1, "unit_price_cents": PRICE}],
                },
            )
        return response.status_code

    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(place, range(ORDERS)))
    assert statuses == [202] * ORDERS

    app_stack.wait_all_final(timeout=240, expected=ORDERS)
    stop.set()
    watcher.join(timeout=10)
    assert violations == []

    orders = {
        r["status"]: r["n"]
        for r in app_stack.query("SELECT status, count(*) AS n FROM orders GROUP BY status")
    }
    assert orders == {"CONFIRMED": STOCK, "CANCELLED": ORDERS - STOCK}
    level = app_stack.query("SELECT available, reserved FROM stock WHERE sku = 'HOT-1'")[0]
    assert level == {"available": 0, "reserved": 0}
    # Money: what was charged (and not refunded) is exactly the confirmed orders' value.
    charged = app_stack.scalar(
        "SELECT COALESCE(sum(amount_cents), 0) FROM payments WHERE status = 'CHARGED'"
    )
    confirmed_value = app_stack.scalar(
        "SELECT COALESCE(sum(total_cents), 0) FROM orders WHERE status = 'CONFIRMED'"
    )
    assert charged == confirmed_value == STOCK * PRICE
    assert app_stack.scalar("SELECT count(*) FROM payments WHERE status <> 'CHARGED'") == 0
    # Every confirmed order has exactly one committed reservation; nobody got two.
    assert (
        app_stack.scalar("SELECT count(*) FROM stock_reservations WHERE status = 'COMMITTED'")
        == STOCK
    )
    # Both processes did saga work.
    executors = app_stack.query(
        "SELECT DISTINCT split_part(executed_by, '/', 1) AS e FROM saga_steps"
    )
    assert len(executors) == 2
