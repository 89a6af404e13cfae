"""Overload: `saga_consumer_backlog_messages` (the autoscaling signal) rises while every
consumer slot is busy and falls back to 0 once the work is done; sagas already under way
run their next steps before new sagas start, so a burst of orders waits as a backlog of
new sagas instead of slowing down every saga."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration import app_processes
from tests.integration.app_processes import AppProcess, AppStack

pytestmark = pytest.mark.timeout(300)

# Fixtures of app_processes, made visible to this module.
app_stack = app_processes.app_stack
app_stack_factory = app_processes.app_stack_factory

ORDERS = 30


def backlog(app: AppProcess) -> float:
    with app.client() as client:
        text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name == "saga_consumer_backlog_messages":
            return float(family.samples[0].value)
    raise AssertionError("saga_consumer_backlog_messages is not exported")


def place_orders(app: AppProcess, sku: str, count: int) -> None:
    with httpx.Client(base_url=app.url, timeout=10) as client:
        for i in range(count):
            response = client.post(
                "/orders",
                json={
                    "customer_id": f"b{i}",
                    "items": [{"sku": sku, "quantity": 1, "unit_price_cents": 1}],
                },
            )
            assert response.status_code == 202


def peak_sagas_under_way(stack: AppStack) -> int:
    """The most sagas at once between their first step and their final state."""
    rows = stack.query(
        "SELECT min(st.created_at) AS started, s.finished_at AS finished"
        " FROM sagas s JOIN saga_steps st USING (saga_id) GROUP BY s.saga_id"
    )
    edges = sorted(
        [(row["started"], 1) for row in rows] + [(row["finished"], -1) for row in rows],
        key=lambda edge: (edge[0], edge[1]),  # a saga that ends as another starts: not both
    )
    under_way = peak = 0
    for _, change in edges:
        under_way += change
        peak = max(peak, under_way)
    return peak


def test_backlog_rises_while_the_consumer_is_saturated_and_returns_to_zero(
    app_stack: AppStack,
) -> None:
    # one consumer slot (pool size - 2) and 200 ms per step: about 5 events/s
    (app,) = app_stack.start(1, DATABASE_POOL_SIZE="3", SAGA_STEP_DELAY_MS="200")
    app_stack.set_stock("BACKLOG-1", ORDERS)
    assert backlog(app) == 0
    place_orders(app, "BACKLOG-1", ORDERS)
    peak = 0.0

    def saw_a_backlog() -> bool:
        nonlocal peak
        peak = max(peak, backlog(app))
        return peak >= 10

    app_processes.wait_for(saw_a_backlog, timeout=60, what="a backlog of 10 or more")
    app_stack.wait_all_final(timeout=240, expected=ORDERS)
    app_processes.wait_for(lambda: backlog(app) == 0, timeout=30, what="the backlog back at 0")


def test_sagas_under_way_run_their_steps_before_new_sagas_start(app_stack: AppStack) -> None:
    # One consumer slot and 200 ms per step, and the whole burst placed before the first
    # saga's second step: in arrival order every saga would start before any finished (all
    # 30 under way at once). Steps first, a new saga only when the slot has no step to run,
    # keeps the sagas under way to the few the relay's round trip lets in.
    (app,) = app_stack.start(1, DATABASE_POOL_SIZE="3", SAGA_STEP_DELAY_MS="200")
    app_stack.set_stock("BURST-1", ORDERS)
    place_orders(app, "BURST-1", ORDERS)
    app_stack.wait_all_final(timeout=240, expected=ORDERS)
    completed = app_stack.scalar("SELECT count(*) FROM sagas WHERE state = 'COMPLETED'")
    assert completed == ORDERS
    peak = peak_sagas_under_way(app_stack)
    assert peak <= ORDERS // 3, f"{peak} of {ORDERS} sagas were under way at once"
