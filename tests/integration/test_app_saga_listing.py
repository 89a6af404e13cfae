"""GET /sagas and GET /sagas/stats against a real app on PostgreSQL, Redis and Kafka: the
filters pick exactly the sagas the database holds for them, pages newest first follow each
other without a gap or a repeat while new sagas arrive, and the counts per state add up."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.integration import app_processes
from tests.integration.app_processes import AppProcess, AppStack

pytestmark = pytest.mark.timeout(300)

# Fixtures of app_processes, made visible to this module.
app_stack = app_processes.app_stack
app_stack_factory = app_processes.app_stack_factory

SKU = "LIST-1"


@pytest.fixture
def one_app(app_stack: AppStack) -> tuple[AppStack, AppProcess]:
    (app,) = app_stack.start(1)
    app_stack.set_stock(SKU, 1000)
    return app_stack, app


def place(app: AppProcess, customer: str) -> str:
    with app.client() as client:
        response = client.post(
            "/orders",
            json={
                "customer_id": customer,
                "items": [{"sku": SKU, "quantity": 1, "unit_price_cents": 100}],
            },
        )
    assert response.status_code == 202, response.text
    saga_id: str = response.json()["saga_id"]
    return saga_id


def get(app: AppProcess, path: str, params: Any = None) -> dict[str, Any]:
    with app.client() as client:
        response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def listed(app: AppProcess, params: Any = None) -> list[str]:
    body = get(app, "/sagas", params)
    assert body["next_cursor"] is None, "more than one page"
    return [item["saga_id"] for item in body["items"]]


def newest_first(stack: AppStack, where: str = "TRUE", params: Any = None) -> list[str]:
    """The database's own answer, to hold the API to."""
    rows = stack.query(
        "SELECT s.saga_id FROM sagas s JOIN orders o USING (order_id)"
        f" WHERE {where} ORDER BY s.created_at DESC, s.saga_id DESC",
        params,
    )
    return [str(row["saga_id"]) for row in rows]


def test_filters_pick_exactly_the_sagas_the_database_holds_for_them(
    one_app: tuple[AppStack, AppProcess],
) -> None:
    stack, app = one_app
    completed = [place(app, "alice") for _ in range(3)]
    compensated = [place(app, "decline-bob") for _ in range(2)]
    stack.wait_all_final(timeout=120, expected=5)

    everything = get(app, "/sagas")
    assert everything["next_cursor"] is None
    assert [i["saga_id"] for i in everything["items"]] == newest_first(stack)
    assert set(completed) | set(compensated) == {i["saga_id"] for i in everything["items"]}
    # Each summary says what GET /sagas/{id} says about the same saga.
    for item in everything["items"]:
        saga = get(app, f"/sagas/{item['saga_id']}")
        for field in ("order_id", "state", "order_status", "attempts", "failed_step"):
            assert item[field] == saga[field], field
        assert item["created_at"] == saga["created_at"]
        assert item["finished_at"] == saga["finished_at"]
        took = datetime.fromisoformat(item["finished_at"]) - datetime.fromisoformat(
            item["created_at"]
        )
        assert abs(item["duration_ms"] - took / timedelta(milliseconds=1)) <= 1
        assert item["customer_id"] == ("alice" if item["saga_id"] in completed else "decline-bob")
        assert item["order_status"] == (
            "CONFIRMED" if item["state"] == "COMPLETED" else "CANCELLED"
        )

    assert set(listed(app, {"state": "COMPENSATED"})) == set(compensated)
    both = listed(app, [("state", "COMPLETED"), ("state", "COMPENSATED")])
    assert both == newest_first(stack)
    assert listed(app, {"state": "CHARGING_PAYMENT"}) == []
    assert listed(app, {"customer_id": "alice"}) == newest_first(
        stack, "o.customer_id = %s", ("alice",)
    )
    assert listed(app, {"customer_id": "alice", "state": "COMPENSATED"}) == []

    # The window: since is inclusive, until exclusive, on the exact created_at of a saga.
    middle = uuid.UUID(everything["items"][2]["saga_id"])
    at = stack.scalar("SELECT created_at FROM sagas WHERE saga_id = %s", (middle,))
    stamp = at.isoformat()
    assert listed(app, {"since": stamp}) == newest_first(stack, "s.created_at >= %s", (at,))
    assert str(middle) in listed(app, {"since": stamp})
    assert listed(app, {"until": stamp}) == newest_first(stack, "s.created_at < %s", (at,))
    assert str(middle) not in listed(app, {"until": stamp})
    assert listed(app, {"since": stamp, "until": stamp}) == []
    # The offset is honoured: the same instant written in another zone.
    elsewhere = at.astimezone(timezone(-timedelta(hours=5, minutes=30)))
    assert listed(app, {"since": elsewhere.isoformat()}) == listed(app, {"since": stamp})


def test_pages_follow_each_other_without_gap_or_repeat_while_sagas_arrive(
    one_app: tuple[AppStack, AppProcess],
) -> None:
    stack, app = one_app
    existing = [place(app, f"pager-{n}") for n in range(25)]
    # Placed before paging began: exactly these, in the database's order, must come back.
    expected = newest_first(stack)
    assert set(expected) == set(existing)

    limit = 7
    seen: list[str] = []
    arrived: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        body = get(app, "/sagas", params)
        pages += 1
        assert len(body["items"]) <= limit
        seen += [item["saga_id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert len(body["items"]) == limit
        # New sagas between two pages: newer than every row shown, so never on a later page.
        arrived += [place(app, "late-comer") for _ in range(3)]

    assert pages == math.ceil(len(existing) / limit)
    assert len(seen) == len(set(seen)), "a saga on two pages"
    assert seen == expected
    assert not set(arrived) & set(seen)
    # Paging again from the top now finds the late-comers first, then the same pages.
    assert listed(app, {"limit": 200}) == newest_first(stack)
    assert listed(app, {"limit": 200})[: len(arrived)] == list(reversed(arrived))


def test_stats_count_every_state(one_app: tuple[AppStack, AppProcess]) -> None:
    stack, app = one_app
    empty = get(app, "/sagas/stats")
    assert empty["total"] == 0
    assert empty["since"] is None
    assert set(empty["counts"].values()) == {0}
    assert len(empty["counts"]) == 8

    for _ in range(3):
        place(app, "carol")
    for _ in range(2):
        place(app, "decline-dan")
    place(app, "fail-confirm-erin")
    stack.wait_all_final(timeout=120, expected=6)

    stats = get(app, "/sagas/stats")
    assert stats["total"] == 6
    assert stats["counts"] == {
        "RESERVING_STOCK": 0,
        "CHARGING_PAYMENT": 0,
        "CONFIRMING": 0,
        "COMPLETED": 3,
        "REFUNDING": 0,
        "RELEASING_STOCK": 0,
        "CANCELLING": 0,
        "COMPENSATED": 3,
    }
    by_state = {
        row["state"]: row["n"]
        for row in stack.query("SELECT state, count(*) AS n FROM sagas GROUP BY state")
    }
    assert {state: n for state, n in stats["counts"].items() if n} == by_state

    newest = stack.scalar("SELECT max(created_at) FROM sagas")
    recent = get(app, "/sagas/stats", {"since": newest.isoformat()})
    assert recent["total"] == 1
    assert datetime.fromisoformat(recent["since"]) == newest
    later = get(app, "/sagas/stats", {"since": (newest + timedelta(seconds=1)).isoformat()})
    assert later["total"] == 0
