"""Redis Sentinel failover while sagas run: the lock service follows the new master,
nothing is oversold, and a fence counter that came back older than Postgres's token
(writes lost in the failover) is lifted by the service itself."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from saga_service.adapters.lock import fence_key

from tests.integration import app_processes, services
from tests.integration.app_processes import AppProcess, StackFactory

pytestmark = pytest.mark.timeout(600)

# Fixtures of app_processes, made visible to this module.
app_stack_factory = app_processes.app_stack_factory

STOCK = 30


def place(app: AppProcess, customer: str, sku: str) -> int:
    with app.client(timeout=30) as client:
        response = client.post(
            "/orders",
            json={
                "customer_id": customer,
                "items": [{"sku": sku, "quantity": 1, "unit_price_cents": 500}],
            },
        )
    return response.status_code


def test_sentinel_failover_during_a_run(
    app_stack_factory: StackFactory, redis_sentinel_group: services.SentinelGroup
) -> None:
    group = redis_sentinel_group
    stack = app_stack_factory(group.env())
    apps = stack.start(2, SAGA_STEP_DELAY_MS="50")
    stack.set_stock("SENT-1", STOCK)
    old_master = group.current_master_address()

    with ThreadPoolExecutor(max_workers=8) as pool:
        first = list(pool.map(lambda i: place(apps[i % 2], f"a{i}", "SENT-1"), range(40)))
        assert first == [202] * 40
        group.kill_master()  # returns once every Sentinel names the promoted replica
        second = list(pool.map(lambda i: place(apps[i % 2], f"b{i}", "SENT-1"), range(40)))
    assert second == [202] * 40
    assert group.current_master_address() != old_master

    stack.wait_all_final(timeout=240, expected=80)
    confirmed = stack.scalar("SELECT count(*) FROM orders WHERE status = 'CONFIRMED'")
    assert confirmed <= STOCK  # never oversold
    level = stack.query("SELECT available, reserved FROM stock WHERE sku = 'SENT-1'")[0]
    sold = stack.scalar(
        "SELECT COALESCE(sum(quantity), 0) FROM stock_reservations WHERE status = 'COMMITTED'"
    )
    assert level["reserved"] == 0 and level["available"] >= 0
    assert level["available"] + sold == STOCK and sold == confirmed
    charged = stack.scalar(
        "SELECT COALESCE(sum(amount_cents), 0) FROM payments WHERE status = 'CHARGED'"
    )
    assert charged == confirmed * 500

    # The lock service works on the new master: a fresh SKU sells normally.
    stack.set_stock("SENT-2", 3)
    assert place(apps[0], "c1", "SENT-2") == 202
    stack.wait_all_final(timeout=60, expected=81)
    assert (
        stack.scalar(
            "SELECT status FROM orders o JOIN order_items i USING (order_id) WHERE i.sku = 'SENT-2'"
        )
        == "CONFIRMED"
    )

    # Simulate increments lost in a failover: the counter goes back below Postgres's
    # token. Writes with the stale tokens are fenced off, and the service lifts the floor.
    pg_token = stack.scalar("SELECT fence_token FROM stock WHERE sku = 'SENT-2'")
    master = group.master.client()
    master.set(fence_key("SENT-2"), 0)
    rejections_before = sum(a.metric("saga_lock_fencing_rejections_total") for a in apps)
    assert place(apps[1], "c2", "SENT-2") == 202
    stack.wait_all_final(timeout=60, expected=82)
    assert (
        stack.scalar(
            "SELECT count(*) FROM orders o JOIN order_items i USING (order_id)"
            " WHERE i.sku = 'SENT-2' AND o.status = 'CONFIRMED'"
        )
        == 2
    )
    assert sum(a.metric("saga_lock_fencing_rejections_total") for a in apps) > rejections_before
    assert int(master.get(fence_key("SENT-2"))) > pg_token
