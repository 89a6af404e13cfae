"""Failures: a process SIGKILLed or SIGTERMed mid-run, a process frozen with SIGSTOP,
events delivered twice, a poison message, and a lock holder frozen past its TTL (fencing)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from redis.asyncio import Redis
from saga_service.adapters.lock import LockService, lock_key
from saga_service.adapters.postgres import commands
from saga_service.adapters.postgres.db import make_conninfo, open_pool
from saga_service.domain.order import OrderItem
from saga_service.observability import metrics
from saga_service.service.commands import OrderCommands
from saga_service.settings import Settings

from tests.integration import app_processes, services
from tests.integration.app_processes import AppProcess, AppStack

pytestmark = pytest.mark.timeout(600)

# Fixtures of app_processes, made visible to this module.
app_stack = app_processes.app_stack
app_stack_factory = app_processes.app_stack_factory

READ_ONLY_OUTAGE_SECONDS = 35.0
FORWARD_STEPS = ("reserve_stock", "charge_payment", "confirm_order")


def place(app: AppProcess, customer: str, sku: str, quantity: int = 1, price: int = 100) -> str:
    with app.client() as client:
        response = client.post(
            "/orders",
            json={
                "customer_id": customer,
                "items": [{"sku": sku, "quantity": quantity, "unit_price_cents": price}],
            },
        )
    assert response.status_code == 202, response.text
    return str(response.json()["saga_id"])


def assert_books_balance(stack: AppStack, sku: str, initial: int) -> None:
    """Units and money add up, and no step took effect twice."""
    level = stack.query("SELECT available, reserved FROM stock WHERE sku = %s", (sku,))[0]
    sold = stack.scalar(
        "SELECT COALESCE(sum(quantity), 0) FROM stock_reservations"
        " WHERE sku = %s AND status = 'COMMITTED'",
        (sku,),
    )
    assert level["reserved"] == 0
    assert level["available"] + sold == initial
    assert (
        stack.scalar(
            "SELECT COALESCE(sum(i.quantity), 0) FROM order_items i JOIN orders o USING (order_id)"
            " WHERE o.status = 'CONFIRMED' AND i.sku = %s",
            (sku,),
        )
        == sold
    )
    charged = stack.scalar(
        "SELECT COALESCE(sum(amount_cents), 0) FROM payments WHERE status = 'CHARGED'"
    )
    confirmed = stack.scalar(
        "SELECT COALESCE(sum(total_cents), 0) FROM orders WHERE status = 'CONFIRMED'"
    )
    assert charged == confirmed
    # One payment per saga at most, one reservation per saga and SKU (primary keys), and
    # UNIQUE(saga_id, step): a step's row is there once or not at all.
    dup = stack.scalar(
        "SELECT count(*) FROM (SELECT saga_id, step FROM saga_steps GROUP BY 1, 2"
        " HAVING count(*) > 1) d"
    )
    assert dup == 0
    # Orders agree with sagas.
    mismatched = stack.scalar(
        "SELECT count(*) FROM sagas s JOIN orders o USING (order_id) WHERE"
        " (s.state = 'COMPLETED' AND o.status <> 'CONFIRMED') OR"
        " (s.state = 'COMPENSATED' AND o.status <> 'CANCELLED')"
    )
    assert mismatched == 0


def test_sigkill_mid_saga_every_saga_still_finishes_once(app_stack: AppStack) -> None:
    # Each step waits 300 ms so that plenty of sagas are in flight when the kill lands.
    victim, survivor = app_stack.start(2, SAGA_STEP_DELAY_MS="300")
    app_stack.set_stock("KILL-1", 100)
    customers = [f"{'decline-' if i % 5 == 0 else ''}c{i}" for i in range(40)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        saga_ids = list(
            pool.map(
                lambda ic: place((victim, survivor)[ic[0] % 2], ic[1], "KILL-1"),
                enumerate(customers),
            )
        )

    victim_tag = f"-{victim.pid}-"

    def victim_busy() -> bool:
        open_sagas = app_stack.scalar(
            "SELECT count(*) FROM sagas WHERE state NOT IN ('COMPLETED', 'COMPENSATED')"
        )
        victim_steps = app_stack.scalar(
            "SELECT count(*) FROM saga_steps WHERE executed_by LIKE %s", (f"%{victim_tag}%",)
        )
        return bool(open_sagas >= 10 and victim_steps > 0)

    services.wait_until(victim_busy, timeout=60, what="victim mid-way through sagas")
    victim.process.kill()
    open_at_kill = app_stack.scalar(
        "SELECT count(*) FROM sagas WHERE state NOT IN ('COMPLETED', 'COMPENSATED')"
    )
    assert open_at_kill > 0

    app_stack.wait_all_final(timeout=180, expected=len(saga_ids))
    assert survivor.process.alive()
    assert_books_balance(app_stack, "KILL-1", 100)
    states = {
        r["state"]: r["n"]
        for r in app_stack.query("SELECT state, count(*) AS n FROM sagas GROUP BY state")
    }
    # Stock was plenty, so declines are the only reason to compensate.
    assert states == {"COMPLETED": 32, "COMPENSATED": 8}
    # The survivor took over sagas the victim had started.
    taken_over = app_stack.scalar(
        "SELECT count(DISTINCT a.saga_id) FROM saga_steps a JOIN saga_steps b USING (saga_id)"
        " WHERE a.executed_by LIKE %s AND b.executed_by NOT LIKE %s AND b.id > a.id",
        (f"%{victim_tag}%", f"%{victim_tag}%"),
    )
    assert taken_over > 0


async def _republish(stack: AppStack, rows: list[dict[str, Any]], times: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.env["KAFKA_BOOTSTRAP_SERVERS"])
    await producer.start()
    try:
        for _ in range(times):
            for row in rows:
                headers = [(k, v.encode()) for k, v in row["headers"].items()]
                headers.append(("event_id", str(row["event_id"]).encode()))
                await producer.send_and_wait(
                    stack.topic,
                    value=row["payload"].encode(),
                    key=str(row["saga_id"]).encode(),
                    headers=headers,
                )
    finally:
        await producer.stop()


def _consumed(apps: list[AppProcess], outcome: str) -> float:
    return sum(a.metric("saga_events_consumed_total", {"outcome": outcome}) for a in apps)


def test_same_event_delivered_twice_has_one_effect(app_stack: AppStack) -> None:
    apps = app_stack.start(2)
    app_stack.set_stock("DUP-1", 10)
    saga_id = place(apps[0], "alice", "DUP-1", quantity=2)
    assert app_stack.wait_saga(saga_id)["state"] == "COMPLETED"
    before = {
        "steps": app_stack.scalar("SELECT count(*) FROM saga_steps"),
        "stock": app_stack.query("SELECT available, reserved FROM stock")[0],
        "payments": app_stack.query("SELECT status, amount_cents FROM payments"),
    }
    rows = app_stack.query(
        "SELECT saga_id, event_id, payload, headers FROM outbox WHERE saga_id = %s ORDER BY id",
        (uuid.UUID(saga_id),),
    )
    assert [json.loads(r["payload"])["event_type"] for r in rows] == [
        "OrderPlaced",
        "StockReserved",
        "PaymentCharged",
        "OrderConfirmed",
    ]
    duplicates_before = _consumed(apps, "duplicate")
    asyncio.run(_republish(app_stack, rows, times=2))
    services.wait_until(
        lambda: _consumed(apps, "duplicate") - duplicates_before >= 2 * len(rows),
        timeout=60,
        what="the redelivered events to be consumed",
    )
    after = {
        "steps": app_stack.scalar("SELECT count(*) FROM saga_steps"),
        "stock": app_stack.query("SELECT available, reserved FROM stock")[0],
        "payments": app_stack.query("SELECT status, amount_cents FROM payments"),
    }
    assert after == before
    assert before["stock"] == {"available": 8, "reserved": 0}
    assert app_stack.scalar("SELECT count(*) FROM processed_events") == len(rows)


async def _send_poison_and_read_dlq(stack: AppStack) -> list[Any]:
    producer = AIOKafkaProducer(bootstrap_servers=stack.env["KAFKA_BOOTSTRAP_SERVERS"])
    await producer.start()
    unknown_saga = uuid.uuid4()
    try:
        await producer.send_and_wait(stack.topic, value=b"this is not json", key=b"poison-1")
        valid_but_unknown = {
            "v": 1,
            "event_id": str(uuid.uuid4()),
            "event_type": "StockReserved",
            "saga_id": str(unknown_saga),
            "order_id": str(uuid.uuid4()),
            "state": "CHARGING_PAYMENT",
        }
        await producer.send_and_wait(
            stack.topic,
            value=json.dumps(valid_but_unknown).encode(),
            key=str(unknown_saga).encode(),
        )
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        stack.dead_letter_topic,
        bootstrap_servers=stack.env["KAFKA_BOOTSTRAP_SERVERS"],
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[Any] = []
    try:
        async with asyncio.timeout(60):
            while len(found) < 2:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    found.extend(records)
    finally:
        await consumer.stop()
    return found


def test_malformed_event_goes_to_dead_letter_and_processing_continues(
    app_stack: AppStack,
) -> None:
    apps = app_stack.start(1)
    app_stack.set_stock("DLQ-1", 5)
    dead = asyncio.run(_send_poison_and_read_dlq(app_stack))
    reasons = {}
    for record in dead:
        headers = {k: v.decode() for k, v in record.headers}
        reasons[record.key] = headers["dlq.reason"]
        assert headers["dlq.source.topic"] == app_stack.topic
        assert int(headers["dlq.source.offset"]) >= 0
    assert reasons[b"poison-1"].startswith("malformed: value is not JSON")
    assert [v for k, v in reasons.items() if k != b"poison-1"] == ["unknown saga_id"]
    assert apps[0].metric("saga_dead_lettered_total") == 2
    # The consumer went on: a new order still completes.
    saga_id = place(apps[0], "alice", "DLQ-1")
    assert app_stack.wait_saga(saga_id)["state"] == "COMPLETED"


def test_frozen_lock_holder_cannot_write_after_its_ttl(
    app_stack: AppStack, redis: services.RedisInstance
) -> None:
    sku = "FENCE-1"
    app_stack.query("INSERT INTO stock (sku, available) VALUES (%s, 10) RETURNING sku", (sku,))
    env = {**app_stack.env, "LOCK_TTL_MS": "500"}
    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.fence_holder", sku],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(services.REPO_ROOT),
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        first = holder.stdout.readline().split()
        assert first[0] == "LOCKED", first
        stale_token = int(first[1])
        holder.send_signal(signal.SIGSTOP)  # frozen while holding the lock

        client = redis.client()
        services.wait_until(
            lambda: not client.exists(lock_key(sku)), timeout=10, what="the lock TTL to expire"
        )

        async def newer_holder_writes() -> int:
            fields: dict[str, Any] = {k.lower(): v for k, v in env.items() if k.isupper()}
            settings = Settings(**fields)
            r = Redis(host=redis.host, port=redis.port, password=redis.password)
            locks = LockService(r, ttl_ms=30000, acquire_timeout_ms=5000)
            lease = await locks.acquire(sku, time.monotonic() + 5)
            conn = await AsyncConnection.connect(make_conninfo(settings), row_factory=dict_row)
            async with conn.transaction():
                level = await commands.fence_stock(conn, sku, lease.token)
                assert level is not None
                await commands.apply(conn, commands.stock_level(level.reserve(2)))
            await conn.close()
            await r.aclose()  # keeps holding the lock (TTL 30 s) while the old one wakes
            return lease.token

        new_token = asyncio.run(newer_holder_writes())
        assert new_token > stale_token

        holder.send_signal(signal.SIGCONT)
        holder.stdin.write("write\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "REJECTED"
        holder.stdin.write("release\n")
        holder.stdin.flush()
        # Compare-and-delete: the woken holder cannot delete the newer holder's lock.
        assert holder.stdout.readline().strip() == "RELEASED 0"
        assert client.exists(lock_key(sku))
        holder.stdin.write("quit\n")
        holder.stdin.flush()
        assert holder.wait(timeout=10) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    row = app_stack.query(
        "SELECT available, reserved, fence_token FROM stock WHERE sku = %s", (sku,)
    )
    assert row == [{"available": 8, "reserved": 2, "fence_token": new_token}]


def test_paused_app_process_cannot_oversell(app_stack: AppStack) -> None:
    """An app process frozen by SIGSTOP mid-reserve, then resumed, oversells nothing."""
    frozen, other = app_stack.start(2, SAGA_STEP_DELAY_MS="200", LOCK_TTL_MS="400")
    app_stack.set_stock("PAUSE-1", 5)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: place((frozen, other)[i % 2], f"p{i}", "PAUSE-1"), range(16)))
    frozen.process.pause()
    try:
        # The other process takes over the frozen one's partitions and sagas.
        try:
            services.wait_until(
                lambda: (
                    app_stack.scalar(
                        "SELECT count(*) FROM sagas WHERE state IN ('COMPLETED', 'COMPENSATED')"
                    )
                    >= 8
                ),
                timeout=120,
                what="the other process to make progress",
            )
        except services.ServiceError as exc:
            # What holds the other process up: a lock the frozen one's backend keeps.
            backends = app_stack.query(
                "SELECT pid, state, wait_event_type, now() - state_change AS for, query"
                " FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND state <> 'idle'"
            )
            raise AssertionError(f"{exc}\nbackends: {backends}\n{other.log()[-3000:]}") from exc
    finally:
        frozen.process.resume()
    app_stack.wait_all_final(timeout=180, expected=16)
    assert_books_balance(app_stack, "PAUSE-1", 5)
    assert app_stack.scalar("SELECT count(*) FROM orders WHERE status = 'CONFIRMED'") == 5
    assert httpx.get(frozen.url + "/healthz/live", timeout=5).status_code == 200


def test_sigterm_mid_run_hands_work_over_and_releases_locks(
    app_stack: AppStack, redis: services.RedisInstance
) -> None:
    leaving, staying = app_stack.start(2, SAGA_STEP_DELAY_MS="200")
    app_stack.set_stock("TERM-2", 50)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: place((leaving, staying)[i % 2], f"t{i}", "TERM-2"), range(24)))
    leaving_tag = f"-{leaving.pid}-"
    services.wait_until(
        lambda: (
            app_stack.scalar(
                "SELECT count(*) FROM saga_steps WHERE executed_by LIKE %s", (f"%{leaving_tag}%",)
            )
            > 0
        ),
        timeout=60,
        what="the leaving process to work on sagas",
    )
    leaving.process.popen.send_signal(signal.SIGTERM)
    grace = float(app_stack.env["SHUTDOWN_GRACE_SECONDS"])
    try:
        code = leaving.process.popen.wait(timeout=grace)
    finally:
        leaving.process.kill()
    assert code == 0, leaving.log()[-3000:]
    app_stack.wait_all_final(timeout=120, expected=24)
    assert_books_balance(app_stack, "TERM-2", 50)
    assert app_stack.scalar("SELECT count(*) FROM orders WHERE status = 'CONFIRMED'") == 24
    # Nothing is left locked: every holder released its SKU locks.
    client = redis.client()
    assert client.exists(lock_key("TERM-2")) == 0
    # The one that stayed took the leaver's partitions over in a rebalance it measured.
    services.wait_until(
        lambda: staying.metric("saga_consumer_rebalance_pause_seconds_count") >= 1,
        timeout=60,
        what="the staying process to measure its rebalance",
    )
    pauses = [line for line in staying.log().splitlines() if '"consumer group rebalanced"' in line]
    assert pauses and '"pause_seconds"' in pauses[-1], staying.log()[-3000:]


def test_an_address_leading_to_a_read_only_server_makes_the_app_unready_until_it_is_writable(
    app_stack: AppStack, postgres: services.PostgresInstance
) -> None:
    """After a failover the database's address can lead to the demoted primary for a while
    (a partitioned node's stale Service routes): its sessions read but cannot write. Here
    the app's database turns read-only and its sessions end, as a demotion ends them. The
    app must take no such session: not Ready, saying why, and no order half-taken; once the
    address leads to a writable server again it serves, with no restart."""
    (app,) = app_stack.start(1)
    app_stack.set_stock("RO-1", 10)
    place(app, "before-ro", "RO-1")
    dbname = app_stack.env["DATABASE_NAME"]

    def as_superuser(statement: sql.SQL | sql.Composed, params: tuple[str, ...] = ()) -> None:
        with psycopg.connect(postgres.superuser_dsn, autocommit=True) as conn:
            conn.execute(statement, params)

    def readiness() -> httpx.Response:
        return httpx.get(app.url + "/healthz/ready", timeout=5.0)

    database = sql.Identifier(dbname)
    outage_began = time.monotonic()
    as_superuser(
        sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(database)
    )
    as_superuser(
        sql.SQL(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = 'saga-service'"
        ),
        (dbname,),
    )

    def refused_as_read_only() -> bool:
        answer = readiness()
        return answer.status_code == 503 and "read-only" in answer.json()["checks"]["postgres"]

    # The ended sessions fail first (AdminShutdown); then every new one must be refused.
    services.wait_until(
        refused_as_read_only,
        timeout=30,
        what="readiness to name the read-only server",
        process=app.process,
    )
    assert readiness().json()["failing"] == ["postgres"]
    # The pool waits up to 10 s for a session it cannot have before the app answers 503.
    with app.client(timeout=30) as client:
        refused = client.post(
            "/orders",
            json={
                "customer_id": "during-ro",
                "items": [{"sku": "RO-1", "quantity": 1, "unit_price_cents": 100}],
            },
        )
    assert refused.status_code == 503, refused.text
    # An outage of this length takes the pool's retry delays, which double, past the 10 s
    # a request waits for a connection: the pool must not still be waiting out its delay
    # when the server is back.
    time.sleep(max(0.0, READ_ONLY_OUTAGE_SECONDS - (time.monotonic() - outage_began)))

    as_superuser(sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(database))
    services.wait_until(
        app.ready, timeout=60, what="readiness once writable again", process=app.process
    )
    place(app, "after-ro", "RO-1")
    app_stack.wait_all_final(timeout=60, expected=2)
    assert app_stack.scalar("SELECT count(*) FROM orders WHERE customer_id = 'during-ro'") == 0


def test_an_order_whose_session_ends_under_it_is_stored_once_on_a_new_one(
    app_stack: AppStack, redis: services.RedisInstance, postgres: services.PostgresInstance
) -> None:
    """A PostgreSQL failover or switchover ends every session to the old primary, and the
    next statement on each pooled connection fails. The order is stored again on a new
    connection instead of the client getting a 503, and stored once."""
    app_stack.query("INSERT INTO stock (sku, available) VALUES ('LOST-1', 5) RETURNING sku")
    fields: dict[str, Any] = {k.lower(): v for k, v in app_stack.env.items() if k.isupper()}
    settings = Settings(**fields)

    async def place_after_sessions_end() -> tuple[uuid.UUID, float]:
        pool = await open_pool(settings)
        try:
            await pool.wait(timeout=30)
            async with await AsyncConnection.connect(postgres.superuser_dsn) as admin:
                await admin.set_autocommit(True)
                await admin.execute(
                    # With a timeout it returns once the backends are gone.
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                    " WHERE datname = %s AND application_name = 'saga-service'",
                    (settings.database_name,),
                )
            r = Redis(host=redis.host, port=redis.port, password=redis.password)
            locks = LockService(r, ttl_ms=30000, acquire_timeout_ms=5000)
            orders = OrderCommands(
                pool, locks, instance_id="session-lost", max_items=10, start_lease_seconds=30
            )
            before = metrics.ORDER_STORE_RETRIES._value.get()
            placed = await orders.place_order("session-lost", [OrderItem("LOST-1", 1, 100)])
            await r.aclose()
            return placed.order_id, metrics.ORDER_STORE_RETRIES._value.get() - before
        finally:
            await pool.close()

    order_id, retries = asyncio.run(place_after_sessions_end())
    assert retries >= 1, "no pooled session had ended: the test proved nothing"
    stored = app_stack.scalar("SELECT count(*) FROM orders WHERE order_id = %s", (order_id,))
    assert stored == 1
    assert (
        app_stack.scalar(
            "SELECT count(*) FROM outbox WHERE saga_id IN "
            "(SELECT saga_id FROM orders WHERE order_id = %s)",
            (order_id,),
        )
        == 1
    )
