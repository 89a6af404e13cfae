"""Tests of the integration-services harness itself (tests/integration/services/)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from tests.integration import services


def test_postgres_accepts_queries_as_app_role(
    postgres: services.PostgresInstance,
) -> None:
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        user, db = conn.execute("SELECT current_user, current_database()").fetchone()  # type: ignore[misc]
        assert (user, db) == ("saga", "saga")
        conn.execute("CREATE TABLE IF NOT EXISTS harness_probe (id int PRIMARY KEY, v text)")
        conn.execute(
            "INSERT INTO harness_probe VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET v = 'x'"
        )
        assert conn.execute("SELECT v FROM harness_probe WHERE id = 1").fetchone() == ("x",)
        conn.execute("DROP TABLE harness_probe")
        max_conn = conn.execute("SHOW max_connections").fetchone()
        assert max_conn == ("200",)


def test_postgres_rejects_wrong_password(postgres: services.PostgresInstance) -> None:
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(
            host=postgres.host,
            port=postgres.port,
            user=postgres.user,
            password="wrong",
            dbname=postgres.dbname,
            connect_timeout=5,
        )


def test_redis_set_get_needs_password(redis: services.RedisInstance) -> None:
    client = redis.client()
    try:
        key = f"harness:{uuid.uuid4()}"
        assert client.set(key, "value", ex=60)
        assert client.get(key) == b"value"
    finally:
        client.close()
    anonymous = redis_lib.Redis(
        host=redis.host, port=redis.port, socket_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    try:
        with pytest.raises(redis_lib.AuthenticationError):
            anonymous.get("anything")
    finally:
        anonymous.close()


def test_replica_replicates_writes(redis: services.RedisInstance, tmp_path: Path) -> None:
    with services.start_redis(tmp_path / "replica", redis.password, replica_of=redis) as replica:
        master_client = redis.client()
        replica_client = replica.client()
        try:
            key = f"harness:repl:{uuid.uuid4()}"
            master_client.set(key, "copied")
            # WAIT returns how many replicas acknowledged the write
            assert master_client.execute_command("WAIT", 1, 5000) >= 1
            assert replica_client.get(key) == b"copied"
            assert replica_client.info("replication")["role"] == "slave"
        finally:
            master_client.close()
            replica_client.close()


@pytest.mark.timeout(180)
def test_sentinel_failover_promotes_replica(
    redis_sentinel_group: services.SentinelGroup,
) -> None:
    group = redis_sentinel_group
    old_master = group.master
    (old_replica,) = group.replicas
    client = old_master.client()
    try:
        client.set("harness:before-failover", "kept")
        assert client.execute_command("WAIT", 1, 5000) == 1
    finally:
        client.close()

    seconds = group.kill_master()

    assert not old_master.process.alive()
    new_address = group.current_master_address()
    assert new_address == (old_replica.host, old_replica.port)
    assert all(answer == new_address for answer in group.reported_masters())
    new_client = group.master.client()
    try:
        assert new_client.info("replication")["role"] == "master"
        assert new_client.get("harness:before-failover") == b"kept"
        assert new_client.set("harness:after-failover", "ok")
    finally:
        new_client.close()
    assert seconds < 30, f"failover took {seconds:.1f}s"

    # the killed master comes back as a replica of the new one
    (restarted,) = group.restart_killed()
    restarted_client = restarted.client()
    try:
        assert restarted_client.info("replication")["role"] == "slave"
    finally:
        restarted_client.close()


def test_sentinel_env_matches_contract(
    redis_sentinel_group: services.SentinelGroup,
) -> None:
    env = redis_sentinel_group.env()
    assert env["REDIS_MODE"] == "sentinel"
    assert env["REDIS_SENTINEL_MASTER"] == "mymaster"
    nodes = env["REDIS_SENTINEL_NODES"].split(",")
    assert len(nodes) == 3
    for node in nodes:
        host, port = node.rsplit(":", 1)
        assert services.port_open(host, int(port))


def test_kafka_metadata_and_round_trip(kafka: services.KafkaInstance) -> None:
    brokers, controller = services.kafka_metadata(kafka.host, kafka.port)
    assert brokers == [1]
    assert controller == 1

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = f"harness-{uuid.uuid4().hex[:8]}"
    payload = uuid.uuid4().bytes

    async def round_trip() -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
        await producer.start()
        try:
            # auto topic creation: the first send may wait for the topic's leader
            await producer.send_and_wait(
                topic,
                payload,
                key=b"saga-1",
                headers=[("traceparent", b"00-abc-def-01")],
            )
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka.bootstrap_servers,
            group_id=f"harness-{uuid.uuid4().hex[:6]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            message = await asyncio.wait_for(consumer.getone(), timeout=60)
            await consumer.commit()
        finally:
            await consumer.stop()
        return message.key, message.value, list(message.headers)

    key, value, headers = asyncio.run(round_trip())
    assert key == b"saga-1"
    assert value == payload
    assert ("traceparent", b"00-abc-def-01") in headers


def test_app_env_uses_contract_names(
    postgres: services.PostgresInstance,
    redis: services.RedisInstance,
    kafka: services.KafkaInstance,
) -> None:
    env = services.app_env(postgres=postgres, redis=redis, kafka=kafka)
    for name in (
        "DATABASE_HOST",
        "DATABASE_PORT",
        "DATABASE_NAME",
        "DATABASE_USER",
        "DATABASE_PASSWORD",
        "REDIS_MODE",
        "REDIS_HOST",
        "REDIS_PORT",
        "REDIS_PASSWORD",
        "KAFKA_BOOTSTRAP_SERVERS",
    ):
        assert env.get(name), name
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == kafka.bootstrap_servers


def test_stopped_postgres_refuses_then_comes_back(
    postgres: services.PostgresInstance,
) -> None:
    with postgres.stopped():
        assert not postgres.process.alive()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(postgres.dsn, connect_timeout=2)
    with psycopg.connect(postgres.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_killed_redis_restarts_on_same_port(tmp_path: Path) -> None:
    with services.start_redis(tmp_path / "r", "pw") as instance:
        port, first_pid = instance.port, instance.process.pid
        instance.kill()
        assert not services.port_open(instance.host, port)
        instance.start()
        assert instance.process.pid != first_pid
        client = instance.client()
        try:
            assert client.ping()
        finally:
            client.close()
    assert not instance.process.alive()
    assert not services.port_open(instance.host, port)


@pytest.mark.timeout(180)
def test_cli_up_prints_env_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.services", "up", "--only", "redis"],
        cwd=services.REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        env: dict[str, str] = {}
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("export "):
                key, _, value = line[len("export ") :].strip().partition("=")
                env[key] = value
            if "Ctrl-C" in line:
                break
        assert env["REDIS_HOST"] == "127.0.0.1"
        port = int(env["REDIS_PORT"])
        assert services.port_open("127.0.0.1", port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not services.port_open("127.0.0.1", port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_missing_kafka_jars_name_the_install_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAGA_KAFKA_LIBS", str(tmp_path / "no-such-libs"))
    with (
        pytest.raises(services.MissingBinaryError, match=r"ci/install-services\.sh"),
        services.start_kafka(tmp_path / "kafka"),
    ):
        pass


def test_missing_redis_binary_names_the_install_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with (
        pytest.raises(services.MissingBinaryError, match=r"ci/install-services\.sh"),
        services.start_redis(tmp_path / "redis"),
    ):
        pass


def test_sentinels_with_their_own_password(tmp_path: Path) -> None:
    with services.start_redis_sentinel_group(
        tmp_path / "sg", password="data-pw", sentinel_password="sentinel-pw", sentinels=3
    ) as group:
        env = group.env()
        assert env["REDIS_SENTINEL_PASSWORD"] == "sentinel-pw"
        host, port = group.sentinel_addresses[0]
        anonymous = redis_lib.Redis(
            host=host, port=port, socket_timeout=2, retry=Retry(NoBackoff(), 0)
        )
        try:
            with pytest.raises(redis_lib.AuthenticationError):
                anonymous.execute_command("SENTINEL", "MASTERS")  # type: ignore[no-untyped-call]
        finally:
            anonymous.close()
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            group.sentinel_addresses,
            sentinel_kwargs={"password": "sentinel-pw"},
            password="data-pw",
            socket_timeout=2,
        )
        master = sentinel.master_for("mymaster")  # type: ignore[no-untyped-call]
        try:
            assert master.set("harness:via-sentinel", "1")
            assert master.get("harness:via-sentinel") == b"1"
        finally:
            master.close()


@pytest.mark.parametrize("mechanism", services.KAFKA_SASL_MECHANISMS)
def test_kafka_sasl_listener_checks_credentials(
    kafka: services.KafkaInstance, mechanism: str
) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError

    env = kafka.sasl_env("saga", mechanism)
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"

    async def send(password: str) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=mechanism,
            sasl_plain_username=env["KAFKA_SASL_USERNAME"],
            sasl_plain_password=password,
            request_timeout_ms=10000,
        )
        try:
            await producer.start()
            await producer.send_and_wait(f"harness-sasl-{mechanism.lower()}", b"ok")
        finally:
            await producer.stop()

    asyncio.run(send(env["KAFKA_SASL_PASSWORD"]))
    with pytest.raises(KafkaConnectionError):
        asyncio.run(send("wrong-password"))
