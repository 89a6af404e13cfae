"""The autoscaling signal: `saga_consumer_backlog_messages` rises while every consumer slot
is busy (the fetch loop is blocked then, which is when it matters) and falls back to 0 once
the work is done."""

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


def test_backlog_rises_while_the_consumer_is_saturated_and_returns_to_zero(
    app_stack: AppStack,
) -> None:
    # one consumer slot (pool size - 2) and 200 ms per step: about 5 events/s
    (app,) = app_stack.start(1, DATABASE_POOL_SIZE="3", SAGA_STEP_DELAY_MS="200")
    app_stack.set_stock("BACKLOG-1", ORDERS)
    assert backlog(app) == 0
    with httpx.Client(base_url=app.url, timeout=10) as client:
        for i in range(ORDERS):
            response = client.post(
                "/orders",
                json={
                    "customer_id": f"b{i}",
                    "items": [{"sku": "BACKLOG-1", "quantity": 1, "unit_price_cents": 1}],
                },
            )
            assert response.status_code == 202
    peak = 0.0

    def saw_a_backlog() -> bool:
        nonlocal peak
        peak = max(peak, backlog(app))
        return peak >= 10

    app_processes.wait_for(saw_a_backlog, timeout=60, what="a backlog of 10 or more")
    app_stack.wait_all_final(timeout=240, expected=ORDERS)
    app_processes.wait_for(lambda: backlog(app) == 0, timeout=30, what="the backlog back at 0")
