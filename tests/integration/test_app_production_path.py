"""The production path (issue 18) on loopback: the app against servers that play the
managed ones - PostgreSQL that takes only TLS and a scram-sha-256 password (verified
with verify-full against a CA this module makes), Redis that speaks only TLS to an ACL
user, Kafka with SASL_SSL and SCRAM-SHA-512 users - migrates, creates its topics and
runs sagas; and each misconfiguration (wrong password, a CA the servers do not use, a
plaintext-only server where TLS is expected) is named in the readiness answer (503), in
an ERROR log line and in the hook command's exit, while `serve` keeps running.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration import app_processes, services
from tests.integration.app_processes import AppStack, saga_service_argv

pytestmark = pytest.mark.timeout(600)

KAFKA_USERS = {"saga": "saga-kafka-scram-password"}
REDIS_USERS = {"saga": "saga-redis-acl-password"}
MISCONFIGURED_WITHIN = 30.0  # seconds: the Kafka connector backs off up to 10 s a round
HOOK_TIMEOUT = 60.0

BAD_CREDENTIALS = "misconfigured: bad credentials"
UNTRUSTED = "misconfigured: untrusted certificate"
WITHOUT_TLS = "misconfigured: server without TLS"


@dataclasses.dataclass(frozen=True)
class Pki:
    ca: services.CertificateAuthority
    other_ca: services.CertificateAuthority  # trusted by nobody here
    server: services.ServerCertificate


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    workdir = tmp_path_factory.mktemp("pki")
    ca = services.make_ca(workdir / "ca", "saga-test-ca")
    other = services.make_ca(workdir / "other-ca", "saga-other-ca")
    return Pki(ca=ca, other_ca=other, server=ca.issue("server"))


@pytest.fixture(scope="module")
def tls_postgres(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[services.PostgresInstance]:
    with services.start_postgres(
        tmp_path_factory.mktemp("tls-postgres"), tls=pki.server, ca_file=pki.ca.cert
    ) as instance:
        yield instance


@pytest.fixture(scope="module")
def tls_redis(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[services.RedisInstance]:
    with services.start_redis(
        tmp_path_factory.mktemp("tls-redis"),
        tls=pki.server,
        ca_file=pki.ca.cert,
        acl_users=REDIS_USERS,
    ) as instance:
        yield instance


@pytest.fixture(scope="module")
def tls_kafka(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[services.KafkaInstance]:
    with services.start_kafka(
        tmp_path_factory.mktemp("tls-kafka"),
        sasl_users=KAFKA_USERS,
        tls=pki.server,
        ca_file=pki.ca.cert,
    ) as instance:
        yield instance


@pytest.fixture(scope="module")
def prod_stack(
    tls_postgres: services.PostgresInstance,
    tls_redis: services.RedisInstance,
    tls_kafka: services.KafkaInstance,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AppStack]:
    """Migrated and topics created by the hook commands, over TLS, as production does."""
    with app_processes.make_stack(
        tls_postgres,
        tls_kafka,
        tls_redis.app_env("saga"),
        tmp_path_factory.mktemp("prod-stack"),
        **tls_kafka.sasl_ssl_env("saga", "SCRAM-SHA-512"),
    ) as stack:
        yield stack


def place(stack: AppStack, customer: str, items: list[tuple[str, int]]) -> str:
    with stack.processes[0].client() as client:
        response = client.post(
            "/orders",
            json={
                "customer_id": customer,
                "items": [{"sku": s, "quantity": q, "unit_price_cents": 250} for s, q in items],
            },
        )
    assert response.status_code == 202, response.text
    saga_id: str = response.json()["saga_id"]
    return saga_id


def test_production_settings_run_sagas_end_to_end(
    prod_stack: AppStack, tls_redis: services.RedisInstance
) -> None:
    env = prod_stack.env
    assert env["DATABASE_SSLMODE"] == "verify-full" and env["DATABASE_SSLROOTCERT"]
    assert env["REDIS_TLS"] == "true" and env["REDIS_USERNAME"] == "saga"
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    # make_stack ran migrate and create-topics (it raises on a non-zero exit); again
    # here, to see what they say over TLS.
    topics = prod_stack.run_command("create-topics", timeout=HOOK_TIMEOUT)
    assert '"topics ready"' in topics.stdout
    assert prod_stack.scalar("SELECT version_num FROM alembic_version") is not None

    (app,) = prod_stack.start(1)  # Ready: PostgreSQL answers over verify-full

    def all_ok() -> bool:
        ready = httpx.get(app.url + "/healthz/ready", timeout=5.0)
        # Kafka may still be connecting (200 "degraded"); then all three over TLS.
        return ready.status_code == 200 and ready.json()["checks"] == {
            "postgres": "ok",
            "redis": "ok",
            "kafka": "ok",
        }

    services.wait_until(all_ok, timeout=60.0, what="every check ok", process=app.process)

    prod_stack.set_stock("PROD-A", 5)
    completed = place(prod_stack, "alice", [("PROD-A", 2)])
    sold_out = place(prod_stack, "bob", [("PROD-A", 9)])
    declined = place(prod_stack, "decline-carol", [("PROD-A", 1)])
    assert prod_stack.wait_saga(completed)["state"] == "COMPLETED"
    assert prod_stack.wait_saga(sold_out)["state"] == "COMPENSATED"
    saga = prod_stack.wait_saga(declined)
    assert saga["state"] == "COMPENSATED" and saga["failed_step"] == "charge_payment"

    # Every app connection to PostgreSQL is TLS; Redis has no plaintext port at all, and
    # the app is there as its ACL user; Kafka's only listener it knows is SASL_SSL.
    with prod_stack.connect() as conn:
        rows = conn.execute(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
            " WHERE a.application_name = 'saga-service'"
        ).fetchall()
    assert rows and all(r["ssl"] for r in rows)
    with tls_redis.client(socket_timeout=5) as admin:
        users = {c["user"] for c in admin.client_list()}
    assert "saga" in users


@dataclasses.dataclass(frozen=True)
class Case:
    dependency: str
    problem: str
    expected: str
    hook: str | None  # the hook command that meets the same problem


CASES = [
    Case("postgres", "wrong-password", BAD_CREDENTIALS, "migrate"),
    Case("postgres", "untrusted-ca", UNTRUSTED, "migrate"),
    Case("postgres", "plaintext-server", WITHOUT_TLS, "migrate"),
    Case("redis", "wrong-password", BAD_CREDENTIALS, None),
    Case("redis", "untrusted-ca", UNTRUSTED, None),
    Case("redis", "plaintext-server", WITHOUT_TLS, None),
    Case("kafka", "wrong-password", BAD_CREDENTIALS, "create-topics"),
    Case("kafka", "untrusted-ca", UNTRUSTED, "create-topics"),
    Case("kafka", "plaintext-server", WITHOUT_TLS, "create-topics"),
]


def misconfigured_env(
    case: Case,
    stack: AppStack,
    pki: Pki,
    postgres: services.PostgresInstance,
    redis: services.RedisInstance,
    kafka: services.KafkaInstance,
) -> dict[str, str]:
    """The production env with one thing wrong; the plaintext servers are the session's
    (PostgreSQL without ssl, Redis on a plain port) and Kafka's SASL_PLAINTEXT listener."""
    other_ca = str(pki.other_ca.cert)
    changes: dict[tuple[str, str], dict[str, str]] = {
        ("postgres", "wrong-password"): {"DATABASE_PASSWORD": "not-the-password"},
        ("postgres", "untrusted-ca"): {"DATABASE_SSLROOTCERT": other_ca},
        ("postgres", "plaintext-server"): {
            "DATABASE_HOST": postgres.host,
            "DATABASE_PORT": str(postgres.port),
            "DATABASE_PASSWORD": postgres.password,
        },
        ("redis", "wrong-password"): {"REDIS_PASSWORD": "not-the-password"},
        ("redis", "untrusted-ca"): {"REDIS_TLS_CA_FILE": other_ca},
        ("redis", "plaintext-server"): {
            "REDIS_HOST": redis.host,
            "REDIS_PORT": str(redis.port),
            "REDIS_USERNAME": "",
            "REDIS_PASSWORD": redis.password,
        },
        ("kafka", "wrong-password"): {"KAFKA_SASL_PASSWORD": "not-the-password"},
        ("kafka", "untrusted-ca"): {"KAFKA_SSL_CA_FILE": other_ca},
        ("kafka", "plaintext-server"): {"KAFKA_BOOTSTRAP_SERVERS": kafka.sasl_bootstrap_servers},
    }
    return {**stack.env, **changes[(case.dependency, case.problem)]}


def log_entries(path: Path) -> list[dict[str, Any]]:
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    return entries


@pytest.mark.parametrize("case", CASES, ids=[f"{c.dependency}-{c.problem}" for c in CASES])
def test_a_misconfiguration_is_named_and_the_pod_is_not_ready(
    case: Case,
    prod_stack: AppStack,
    pki: Pki,
    postgres: services.PostgresInstance,
    redis: services.RedisInstance,
    tls_kafka: services.KafkaInstance,
    tmp_path: Path,
) -> None:
    env = misconfigured_env(case, prod_stack, pki, postgres, redis, tls_kafka)

    if case.hook is not None:
        hook = subprocess.run(
            saga_service_argv(case.hook),
            env=env,
            capture_output=True,
            text=True,
            timeout=HOOK_TIMEOUT,
            check=False,
        )
        assert hook.returncode == 1, (hook.stdout, hook.stderr)
        (line,) = hook.stderr.strip().splitlines()  # one line, what `kubectl logs` shows
        assert line.startswith(f"saga-service {case.hook}: cannot connect to "), line
        assert case.expected in line, line
        print(f"\n[{case.dependency}/{case.problem}] {case.hook} exit 1: {line}")

    port = services.free_port()
    process = services.ManagedProcess(
        "app", saga_service_argv("serve"), tmp_path / "app.log", env={**env, "PORT": str(port)}
    )
    try:
        answer: dict[str, Any] = {}

        def named() -> bool:
            response = httpx.get(f"http://127.0.0.1:{port}/healthz/ready", timeout=5.0)
            answer.update(status=response.status_code, body=response.json())
            checks = response.json().get("checks", {})
            check = str(checks.get(case.dependency, ""))
            # Apart from PostgreSQL (which the others' loops need), the rest must come up
            # ok: the cause is the one misconfigured dependency, not a side effect.
            others_ok = case.dependency == "postgres" or all(
                v == "ok" for k, v in checks.items() if k != case.dependency
            )
            return response.status_code == 503 and check.startswith(case.expected) and others_ok

        services.wait_until(
            named,
            timeout=MISCONFIGURED_WITHIN,
            what=f"readiness to name {case.expected} for {case.dependency}",
            process=process,
            max_interval=0.5,
        )
        body = answer["body"]
        assert body["status"] == "misconfigured"
        assert case.dependency in body["failing"]
        assert set(body["checks"]) == {"postgres", "redis", "kafka"}

        # Still running, and alive for the kubelet: not Ready, never a restart loop.
        for _ in range(3):
            assert named(), answer
        assert process.alive()
        live = httpx.get(f"http://127.0.0.1:{port}/healthz/live", timeout=5.0)
        assert live.status_code == 200, live.text

        errors = [
            e
            for e in log_entries(process.log_path)
            if e["level"] == "ERROR"
            and e["msg"] in ("dependency misconfigured", "kafka misconfigured")
            and case.expected in str(e.get("result") or e.get("error"))
        ]
        assert errors, process.log_path.read_text()[-3000:]
        print(
            f"[{case.dependency}/{case.problem}] readiness {answer['status']}: "
            f"{body['checks'][case.dependency]}\n"
            f"[{case.dependency}/{case.problem}] log: {json.dumps(errors[0])}"
        )
    finally:
        process.stop(timeout=20.0)
    # SIGTERM still ends it cleanly while a dependency is misconfigured.
    assert process.popen.returncode == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"REDIS_TLS": "false"},
            "REDIS_TLS_CA_FILE is set but REDIS_TLS is false",
        ),
        (
            {"DATABASE_SSLMODE": "prefer"},
            "DATABASE_SSLROOTCERT is set but DATABASE_SSLMODE=prefer may connect without TLS",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"},
            "KAFKA_SSL_CA_FILE is set but KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT",
        ),
        ({"REDIS_TLS_CA_FILE": "/nonexistent/ca.crt"}, "no such file: /nonexistent/ca.crt"),
    ],
    ids=["redis-ca-without-tls", "postgres-ca-with-prefer", "kafka-ca-without-ssl", "no-ca-file"],
)
def test_a_ca_file_without_tls_is_refused_not_ignored(
    prod_stack: AppStack, changes: dict[str, str], message: str
) -> None:
    """A CA file next to TLS that is off means someone expected TLS; connecting in
    plaintext anyway is the silent fallback that must not happen."""
    result = subprocess.run(
        saga_service_argv("serve"),
        env={**prod_stack.env, **changes, "PORT": str(services.free_port())},
        capture_output=True,
        text=True,
        timeout=HOOK_TIMEOUT,
        check=False,
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "saga-service: bad configuration:" in result.stderr
    assert message in result.stderr, result.stderr


def test_verify_full_checks_the_host_name_not_only_the_ca(
    pki: Pki, prod_stack: AppStack, tmp_path: Path
) -> None:
    """A certificate from the trusted CA, but for another host: what a DNS mix-up or a
    man in the middle with a certificate of the same provider presents."""
    elsewhere = pki.ca.issue("elsewhere", hosts=("db.elsewhere.invalid",))
    with services.start_postgres(
        tmp_path / "postgres", tls=elsewhere, ca_file=pki.ca.cert
    ) as other_host:
        env = {**prod_stack.env, **other_host.env()}
        assert env["DATABASE_SSLMODE"] == "verify-full"
        hook = subprocess.run(
            saga_service_argv("migrate"),
            env=env,
            capture_output=True,
            text=True,
            timeout=HOOK_TIMEOUT,
            check=False,
        )
    assert hook.returncode == 1, (hook.stdout, hook.stderr)
    assert UNTRUSTED in hook.stderr
    assert 'server certificate for "db.elsewhere.invalid"' in hook.stderr
    assert 'does not match host name "127.0.0.1"' in hook.stderr
    print(f"\n[postgres/other-host] migrate exit 1: {hook.stderr.strip()}")
