"""The console process (`python -m saga_console`, what the `saga-console` script runs) in
front of a real app on PostgreSQL, Redis and Kafka: a placed order's saga shows through the
console's /api/sagas (filtered by its customer) and /api/sagas/{id} exactly as the app
serves it; writes are refused; an absent Prometheus is a JSON error, not a hang."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration import app_processes, services
from tests.integration.app_processes import AppProcess, AppStack

pytestmark = pytest.mark.timeout(300)

app_stack = app_processes.app_stack
app_stack_factory = app_processes.app_stack_factory

SKU = "CONSOLE-1"
DASHBOARDS = Path(__file__).resolve().parents[2] / "charts/saga-stack/dashboards"


def start_console(stack: AppStack, app: AppProcess) -> AppProcess:
    port = services.free_port()
    env = {
        **stack.env,
        "PORT": str(port),
        "CONSOLE_APP_URL": app.url,
        # Nothing listens there: the console must say so, not hang.
        "CONSOLE_PROMETHEUS_URL": f"http://127.0.0.1:{services.free_port()}",
        "CONSOLE_DASHBOARDS_DIR": str(DASHBOARDS),
        "CONSOLE_UPSTREAM_TIMEOUT_SECONDS": "3",
    }
    process = services.ManagedProcess(
        "console",
        [sys.executable, "-m", "saga_console"],
        stack.workdir / "console.log",
        env=env,
    )
    console = AppProcess("console", port, process)
    # In the stack's list, so that the stack stops it with the apps.
    stack.processes.append(console)
    services.wait_until(console.ready, timeout=60, what="console /healthz/ready", process=process)
    return console


def get(process: AppProcess, path: str, params: Any = None) -> httpx.Response:
    with process.client() as client:
        return client.get(path, params=params)


def test_a_placed_orders_saga_through_the_console(app_stack: AppStack) -> None:
    (app,) = app_stack.start(1)
    app_stack.set_stock(SKU, 100)
    console = start_console(app_stack, app)
    customer = f"console-{uuid.uuid4().hex[:8]}"
    with app.client() as client:
        placed = client.post(
            "/orders",
            json={
                "customer_id": customer,
                "items": [{"sku": SKU, "quantity": 1, "unit_price_cents": 250}],
            },
        )
    assert placed.status_code == 202, placed.text
    saga_id = placed.json()["saga_id"]
    final = app_stack.wait_saga(saga_id)
    assert final["state"] == "COMPLETED"

    listing = get(console, "/api/sagas", {"customer_id": customer, "limit": 10, "bogus": "x"})
    assert listing.status_code == 200, listing.text
    assert [item["saga_id"] for item in listing.json()["items"]] == [saga_id]
    assert listing.json() == get(app, "/sagas", {"customer_id": customer, "limit": 10}).json()

    one = get(console, f"/api/sagas/{saga_id}")
    assert one.status_code == 200, one.text
    assert one.json() == get(app, f"/sagas/{saga_id}").json()
    steps = [s["step"] for s in one.json()["steps"]]
    assert steps == ["reserve_stock", "charge_payment", "confirm_order"]
    assert all(s["executed_by"] for s in one.json()["steps"])

    stats = get(console, "/api/sagas/stats")
    assert stats.status_code == 200 and stats.json()["counts"]["COMPLETED"] >= 1

    missing = get(console, f"/api/sagas/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"

    with console.client() as client:
        refused = client.post("/api/sagas", json={"customer_id": customer})
    assert refused.status_code == 405

    prometheus = get(console, "/api/prometheus/query", {"query": "up"})
    assert prometheus.status_code == 502
    assert prometheus.json()["error"] == "upstream_unreachable"

    boards = get(console, "/api/dashboards").json()
    assert boards["dashboards"] and boards["errors"] == []
    page = get(console, "/")
    assert page.status_code == 200 and "console.js" in page.text
