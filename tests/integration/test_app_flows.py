"""The saga service end to end against real Postgres, Redis and Kafka: each path of the
order saga, the HTTP contract (4xx for bad input), health, metrics and SIGTERM."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration import app_processes, services
from tests.integration.app_processes import AppProcess, AppStack, StackFactory, saga_service_argv

pytestmark = pytest.mark.timeout(300)

# Fixtures of app_processes, made visible to this module.
app_stack = app_processes.app_stack
app_stack_factory = app_processes.app_stack_factory

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def place(app: AppProcess, customer: str, items: list[tuple[str, int, int]]) -> dict[str, str]:
    with app.client() as client:
        response = client.post(
            "/orders",
            json={
                "customer_id": customer,
                "items": [{"sku": s, "quantity": q, "unit_price_cents": p} for s, q, p in items],
            },
            headers={"traceparent": TRACEPARENT},
        )
    assert response.status_code == 202, response.text
    body: dict[str, str] = response.json()
    assert body["status"] == "PENDING"
    return body


def stock(app: AppProcess, sku: str) -> dict[str, int]:
    with app.client() as client:
        levels: dict[str, int] = client.get(f"/stock/{sku}").json()
        return levels


def order_status(app: AppProcess, order_id: str) -> str:
    with app.client() as client:
        status: str = client.get(f"/orders/{order_id}").json()["status"]
        return status


@pytest.fixture
def one_app(app_stack: AppStack) -> tuple[AppStack, AppProcess]:
    (app,) = app_stack.start(1)
    return app_stack, app


def test_every_saga_path_ends_in_the_right_state(one_app: tuple[AppStack, AppProcess]) -> None:
    stack, app = one_app
    stack.set_stock("FLOW-A", 10)
    stack.set_stock("FLOW-B", 1)

    happy = place(app, "alice", [("FLOW-A", 2, 150), ("FLOW-B", 1, 1000)])
    saga = stack.wait_saga(happy["saga_id"])
    assert saga["state"] == "COMPLETED"
    assert [s["step"] for s in saga["steps"]] == [
        "reserve_stock",
        "charge_payment",
        "confirm_order",
    ]
    assert order_status(app, happy["order_id"]) == "CONFIRMED"
    assert stock(app, "FLOW-A") == {"sku": "FLOW-A", "available": 8, "reserved": 0}
    assert stock(app, "FLOW-B")["available"] == 0

    # FLOW-B is sold out now: the whole order is refused, FLOW-A untouched.
    out_of_stock = place(app, "carol", [("FLOW-A", 1, 150), ("FLOW-B", 1, 1000)])
    saga = stack.wait_saga(out_of_stock["saga_id"])
    assert saga["state"] == "COMPENSATED"
    assert [s["step"] for s in saga["steps"]] == ["reserve_stock", "cancel_order"]
    assert "insufficient stock: FLOW-B" in saga["steps"][0]["detail"]
    assert order_status(app, out_of_stock["order_id"]) == "CANCELLED"

    declined = place(app, "decline-dave", [("FLOW-A", 3, 150)])
    saga = stack.wait_saga(declined["saga_id"])
    assert saga["state"] == "COMPENSATED"
    assert saga["failed_step"] == "charge_payment"
    assert [s["step"] for s in saga["steps"]] == [
        "reserve_stock",
        "charge_payment",
        "release_stock",
        "cancel_order",
    ]
    assert order_status(app, declined["order_id"]) == "CANCELLED"

    refused = place(app, "fail-confirm-erin", [("FLOW-A", 4, 150)])
    saga = stack.wait_saga(refused["saga_id"])
    assert [s["step"] for s in saga["steps"]] == [
        "reserve_stock",
        "charge_payment",
        "confirm_order",
        "refund_payment",
        "release_stock",
        "cancel_order",
    ]
    assert saga["steps"][3]["detail"] == "refunded 600 cents"

    # Stock: only the happy order took units; every compensation gave them back.
    assert stock(app, "FLOW-A") == {"sku": "FLOW-A", "available": 8, "reserved": 0}
    payments = {
        str(r["saga_id"]): (r["status"], r["amount_cents"])
        for r in stack.query("SELECT saga_id, status, amount_cents FROM payments")
    }
    assert payments == {
        happy["saga_id"]: ("CHARGED", 1300),
        declined["saga_id"]: ("DECLINED", 450),
        refused["saga_id"]: ("REFUNDED", 600),
    }
    reservations = stack.query(
        "SELECT status, count(*) AS n FROM stock_reservations GROUP BY status ORDER BY status"
    )
    assert {r["status"]: r["n"] for r in reservations} == {"COMMITTED": 2, "RELEASED": 2}
    assert app.metric("saga_completed_total") == 1
    assert app.metric("saga_compensated_total") == 3
    assert app.metric("saga_step_failed_total", {"step": "charge_payment"}) == 1
    # Trace context went HTTP -> outbox -> Kafka -> consumer.
    assert "4bf92f3577b34da6a3ce929d0e0e4736" in app.log()
    headers = stack.query(
        "SELECT headers FROM outbox WHERE saga_id = %s", (uuid.UUID(happy["saga_id"]),)
    )
    assert all(
        h["headers"]["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1] for h in headers
    )
    # ... and the saga API names it, so a console can link a saga to its trace.
    with app.client() as client:
        saga = client.get(f"/sagas/{happy['saga_id']}").json()
    assert saga["trace_id"] == TRACEPARENT.split("-")[1]


def test_bad_input_gets_a_clear_4xx_never_5xx(one_app: tuple[AppStack, AppProcess]) -> None:
    stack, app = one_app
    stack.set_stock("BAD-1", 5)
    good_item = {"sku": "BAD-1", "quantity": 1, "unit_price_cents": 100}
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        (
            "malformed json",
            {"content": b'{"customer_id": "a", "items": [', "json": None},
            400,
            "not valid JSON",
        ),
        ("not an object", {"content": b"[1, 2]"}, 422, "body"),
        (
            "unknown sku",
            {
                "json": {
                    "customer_id": "a",
                    "items": [{"sku": "NOPE-404", "quantity": 1, "unit_price_cents": 1}],
                }
            },
            422,
            "unknown sku: NOPE-404",
        ),
        (
            "zero quantity",
            {"json": {"customer_id": "a", "items": [{**good_item, "quantity": 0}]}},
            422,
            "greater than 0",
        ),
        (
            "negative quantity",
            {"json": {"customer_id": "a", "items": [{**good_item, "quantity": -5}]}},
            422,
            "greater than 0",
        ),
        ("no items", {"json": {"customer_id": "a", "items": []}}, 422, "items"),
        (
            "too many items",
            {
                "json": {
                    "customer_id": "a",
                    "items": [{**good_item, "sku": f"S{i}"} for i in range(60)],
                }
            },
            422,
            "too many items",
        ),
        (
            "duplicate sku",
            {"json": {"customer_id": "a", "items": [good_item, good_item]}},
            422,
            "more than once",
        ),
        ("missing customer", {"json": {"items": [good_item]}}, 422, "customer_id"),
        (
            "string quantity",
            {"json": {"customer_id": "a", "items": [{**good_item, "quantity": "many"}]}},
            422,
            "quantity",
        ),
        (
            "huge payload",
            {"content": b'{"customer_id": "' + b"x" * 200_000 + b'"}'},
            413,
            "larger than",
        ),
    ]
    with app.client() as client:
        for name, kwargs, status, message in cases:
            content = kwargs.get("content")
            if content is not None:
                response = client.post(
                    "/orders", content=content, headers={"content-type": "application/json"}
                )
            else:
                response = client.post("/orders", json=kwargs["json"])
            assert response.status_code == status, (name, response.status_code, response.text)
            body = response.json()
            assert message in body["message"] or message in str(body.get("detail")), (name, body)

        # A huge body streamed without Content-Length is cut off too.
        def chunks() -> Iterator[bytes]:
            yield b'{"customer_id": "'
            for _ in range(100):
                yield b"y" * 4096
            yield b'"}'

        response = client.post(
            "/orders", content=chunks(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 413, response.text

        assert client.get("/orders/not-a-uuid").status_code == 422
        assert client.get(f"/orders/{uuid.uuid4()}").status_code == 404
        assert client.get(f"/sagas/{uuid.uuid4()}").status_code == 404
        assert client.get("/stock/NOPE-404").status_code == 404
        assert client.get("/stock/bad%20sku").status_code == 422
        assert client.put("/stock/BAD-1", json={"quantity": -1}).status_code == 422
        assert client.put("/stock/BAD-1", content=b"nope").status_code in (400, 422)
        assert client.delete("/orders").status_code == 405
    # Nothing was accepted, and the service did not break.
    assert stack.scalar("SELECT count(*) FROM orders") == 0
    assert app.metric("saga_http_requests_total", {"status": "500"}) == 0
    assert app.metric("saga_http_requests_total", {"status": "503"}) == 0


def test_health_metrics_openapi_and_graceful_sigterm(one_app: tuple[AppStack, AppProcess]) -> None:
    stack, app = one_app
    with app.client() as client:
        assert client.get("/healthz/live").status_code == 200
        ready = client.get("/healthz/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok", "kafka": "ok"}
        # names the answering process: host (the pod in Kubernetes), then its pid
        assert f"-{app.pid}-" in ready.headers["x-served-by"]
        spec = client.get("/openapi.json").json()
        assert {"/orders", "/orders/{order_id}", "/sagas/{saga_id}", "/stock/{sku}"} <= set(
            spec["paths"]
        )
        metrics_text = client.get("/metrics").text
    for name in (
        "saga_started_total",
        "saga_completed_total",
        "saga_compensated_total",
        "saga_step_duration_seconds",
        "saga_end_to_end_duration_seconds",
        "saga_lock_wait_seconds",
        "saga_lock_hold_seconds",
        "saga_outbox_lag_seconds",
        "saga_consumer_backlog_messages",
    ):
        assert name in metrics_text, name
    # migrate is idempotent: a second run changes nothing and exits 0.
    stack.run_command("migrate")
    assert stack.scalar("SELECT version_num FROM alembic_version") == "0003"

    # SIGTERM: readiness flips, the process exits 0 within SHUTDOWN_GRACE_SECONDS.
    stack.set_stock("TERM-1", 5)
    placed = place(app, "alice", [("TERM-1", 1, 10)])
    app.process.popen.send_signal(signal.SIGTERM)
    try:
        code = app.process.popen.wait(timeout=float(stack.env["SHUTDOWN_GRACE_SECONDS"]))
    finally:
        app.process.kill()
    assert code == 0, app.log()[-3000:]
    assert '"shutdown requested"' in app.log()
    with pytest.raises(httpx.TransportError):
        httpx.get(app.url + "/healthz/live", timeout=2)
    # The saga accepted before SIGTERM is finished by a new process.
    (app2,) = stack.start(1)
    saga = stack.wait_saga(placed["saga_id"])
    assert saga["state"] == "COMPLETED"
    assert app2.ready()


def test_after_sigterm_keep_alive_clients_are_served_then_told_to_reconnect(
    app_stack: AppStack,
) -> None:
    """A client on a kept-alive connection (as a Service's connection tracking keeps it on a
    stopping pod) is not refused during the drain: its orders are taken, each answer says
    `Connection: close`, and the process still exits 0 within the grace period."""
    (app,) = app_stack.start(1, SHUTDOWN_DRAIN_SECONDS="3")
    app_stack.set_stock("DRAIN-1", 1000)
    line = {"sku": "DRAIN-1", "quantity": 1, "unit_price_cents": 1}
    body = {"customer_id": "drain", "items": [line]}

    def stopping() -> bool:
        try:
            return not app.ready()
        except httpx.TransportError:
            return True

    answers: list[tuple[int, str]] = []
    with app.client() as client:
        first = client.post("/orders", json=body)
        assert first.status_code == 202 and first.headers.get("connection") != "close"
        app.process.popen.send_signal(signal.SIGTERM)
        app_processes.wait_for(stopping, timeout=5, what="readiness to turn false")
        # The first of these goes over the connection opened before SIGTERM.
        for _ in range(5):
            try:
                response = client.post("/orders", json=body)
            except httpx.TransportError:
                break
            answers.append((response.status_code, response.headers.get("connection", "")))
    code = app.process.popen.wait(timeout=float(app_stack.env["SHUTDOWN_GRACE_SECONDS"]))
    assert code == 0, app.log()[-3000:]
    assert len(answers) == 5, answers
    assert {status for status, _ in answers} == {202}, answers
    assert all(connection == "close" for _, connection in answers), answers
    assert app_stack.scalar("SELECT count(*) FROM orders") == 1 + len(answers)


@pytest.mark.parametrize("away", ["redis", "kafka"])
def test_without_redis_or_kafka_the_pod_stays_ready_degraded_and_takes_orders(
    app_stack_factory: StackFactory, redis: services.RedisInstance, away: str
) -> None:
    # One process pointed at a port where nothing listens, for Redis or for Kafka.
    stack = app_stack_factory(redis.env())
    dead = str(services.free_port())
    broken = (
        {"REDIS_PORT": dead}
        if away == "redis"
        else {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{dead}"}
    )
    port = services.free_port()
    proc = services.ManagedProcess(
        f"app-no{away}",
        saga_service_argv("serve"),
        stack.workdir / f"no{away}.log",
        env={**stack.env, **broken, "PORT": str(port), "LOCK_ACQUIRE_TIMEOUT_MS": "500"},
    )
    app = AppProcess(f"app-no{away}", port, proc)
    stack.processes.append(app)

    def degraded() -> bool:
        response = httpx.get(app.url + "/healthz/ready", timeout=5)
        body = response.json()
        return response.status_code == 200 and body["status"] == "degraded"

    services.wait_until(degraded, timeout=60, what=f"200 degraded without {away}", process=proc)
    body = httpx.get(app.url + "/healthz/ready", timeout=5).json()
    assert body["failing"] == [away]
    assert body["checks"]["postgres"] == "ok"
    assert f'saga_dependency_up{{dependency="{away}"}} 0.0' in httpx.get(app.url + "/metrics").text
    assert httpx.get(app.url + "/healthz/live", timeout=5).status_code == 200

    # Orders need only PostgreSQL: accepted and stored, their first event in the outbox.
    with stack.connect() as conn:
        conn.execute("INSERT INTO stock (sku, available) VALUES ('degraded-1', 5)")
    placed = place(app, "degraded", [("degraded-1", 1, 100)])
    assert order_status(app, placed["order_id"]) == "PENDING"
    stock_change = httpx.put(app.url + "/stock/degraded-1", json={"quantity": 9}, timeout=10)
    if away == "redis":
        # A stock change takes the SKU's lock: refused, and says why.
        assert stock_change.status_code == 503
        assert stock_change.json()["error"] == "lock_unavailable"
    else:
        assert stock_change.status_code == 200


def test_without_postgres_the_pod_is_not_ready_and_names_it(
    one_app: tuple[AppStack, AppProcess], postgres: services.PostgresInstance
) -> None:
    _, app = one_app

    def unavailable() -> bool:
        response = httpx.get(app.url + "/healthz/ready", timeout=5)
        return response.status_code == 503 and "postgres" in response.json()["failing"]

    with postgres.stopped():
        services.wait_until(unavailable, timeout=60, what="503 naming postgres")
        assert httpx.get(app.url + "/healthz/live", timeout=5).status_code == 200
    services.wait_until(app.ready, timeout=60, what="ready again once PostgreSQL is back")


def test_saga_that_cannot_progress_ends_compensated(
    app_stack_factory: StackFactory, redis: services.RedisInstance
) -> None:
    """No Redis, so stock can never be locked: the reserve step is retried with backoff by
    the lease sweep, then gives up, and the saga is compensated instead of staying stuck."""
    stack = app_stack_factory(
        {**redis.env(), "REDIS_PORT": str(services.free_port())},
        SAGA_LEASE_SECONDS="1",
        SAGA_MAX_ATTEMPTS="2",
        LOCK_ACQUIRE_TIMEOUT_MS="200",
    )
    stack.query("INSERT INTO stock (sku, available) VALUES ('STUCK-1', 5) RETURNING sku")
    port = services.free_port()
    proc = services.ManagedProcess(
        "app-stuck",
        saga_service_argv("serve"),
        stack.workdir / "stuck.log",
        env={**stack.env, "PORT": str(port)},
    )
    app = AppProcess("app-stuck", port, proc)
    stack.processes.append(app)
    services.wait_until(
        lambda: httpx.get(app.url + "/healthz/live", timeout=5).status_code == 200,
        timeout=60,
        what="app-stuck live",
        process=proc,
    )
    placed = place(app, "alice", [("STUCK-1", 1, 100)])
    saga = stack.wait_saga(placed["saga_id"], timeout=120)
    assert saga["state"] == "COMPENSATED"
    assert [s["step"] for s in saga["steps"]] == ["reserve_stock", "cancel_order"]
    assert saga["steps"][0]["detail"].startswith("gave up after")
    assert order_status(app, placed["order_id"]) == "CANCELLED"
    assert app.metric("saga_recovery_gave_up_total") == 1
    assert app.metric("saga_recovery_resumed_total") >= 2
    assert stack.query("SELECT available, reserved FROM stock") == [{"available": 5, "reserved": 0}]


def test_with_api_tokens_writes_need_one_and_reads_do_not(app_stack: AppStack) -> None:
    old, new = "o" * 32, "n" * 32
    (app,) = app_stack.start(1, API_TOKENS=f"{old},{new}")
    order = {
        "customer_id": "auth-1",
        "items": [{"sku": "AUTH-1", "quantity": 1, "unit_price_cents": 5}],
    }
    with app.client() as client:
        refused = client.put("/stock/AUTH-1", json={"quantity": 3})
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"] == "unauthorized"
        assert refused.headers["www-authenticate"] == "Bearer"
        wrong = client.post("/orders", json=order, headers={"authorization": "Bearer " + "w" * 32})
        assert (wrong.status_code, wrong.json()["error"]) == (403, "forbidden")
        # Either token works: a client moves from the old one to the new one without a gap.
        stocked = client.put(
            "/stock/AUTH-1", json={"quantity": 3}, headers={"authorization": f"Bearer {old}"}
        )
        assert stocked.status_code == 200, stocked.text
        placed = client.post("/orders", json=order, headers={"authorization": f"Bearer {new}"})
        assert placed.status_code == 202, placed.text
        assert client.get(f"/orders/{placed.json()['order_id']}").status_code == 200
        assert client.get("/stock/AUTH-1").status_code == 200
        assert client.get("/healthz/ready").status_code == 200
        assert client.get("/metrics").status_code == 200
    assert app_stack.wait_saga(placed.json()["saga_id"])["state"] == "COMPLETED"
    # Nothing was stored for the refused requests.
    assert app_stack.scalar("SELECT count(*) FROM orders") == 1
