"""App-process fixtures: real `saga-service serve` processes against the service fixtures.

Each test gets an isolated deployment (``AppStack``): its own Postgres database, its own
Kafka topics and consumer group, and 1..n app processes on free loopback ports, started
after `saga-service migrate` and `saga-service create-topics`, and ready only when
/healthz/ready answers 200. Processes are stopped by their own PID (SIGTERM, then
SIGKILL), never by name.

Import the fixtures into a test module:
``from tests.integration.app_processes import app_stack, app_stack_factory  # noqa: F401``
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from tests.integration import services

APP_READY_TIMEOUT = 60.0
FINAL_STATES = ("COMPLETED", "COMPENSATED")

# Small timeouts so takeover after a kill happens within a test's patience.
TEST_DEFAULTS = {
    "LOG_LEVEL": "INFO",
    "SAGA_LEASE_SECONDS": "3",
    "SAGA_MAX_ATTEMPTS": "8",
    "LOCK_TTL_MS": "2000",
    "LOCK_ACQUIRE_TIMEOUT_MS": "5000",
    "KAFKA_SESSION_TIMEOUT_MS": "6000",
    "KAFKA_TOPIC_PARTITIONS": "6",
    "SHUTDOWN_GRACE_SECONDS": "10",
    "DATABASE_POOL_SIZE": "10",
}


def saga_service_argv(*args: str) -> list[str]:
    script = Path(sys.executable).parent / "saga-service"
    if script.exists():
        return [str(script), *args]
    found = shutil.which("saga-service")
    return [found, *args] if found else [sys.executable, "-m", "saga_service", *args]


@dataclasses.dataclass
class AppProcess:
    name: str
    port: int
    process: services.ManagedProcess

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def ready(self) -> bool:
        return httpx.get(self.url + "/healthz/ready", timeout=3.0).status_code == 200

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Sum of the samples of one metric (optionally matching labels) on this process."""
        text = httpx.get(self.url + "/metrics", timeout=5.0).text
        return parse_metric(text, name, labels)

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")


def parse_metric(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        if labels and not all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            continue
        total += float(value)
    return total


@dataclasses.dataclass
class AppStack:
    """One isolated deployment of the app against the shared services."""

    env: dict[str, str]
    dsn: str
    workdir: Path
    processes: list[AppProcess] = dataclasses.field(default_factory=list)

    @property
    def topic(self) -> str:
        return self.env["KAFKA_TOPIC_EVENTS"]

    @property
    def starts_topic(self) -> str:
        return self.env["KAFKA_TOPIC_STARTS"]

    @property
    def dead_letter_topic(self) -> str:
        return self.env["KAFKA_TOPIC_DEAD_LETTER"]

    def run_command(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            saga_service_argv(*args),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise services.ServiceError(
                f"saga-service {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def start(self, count: int = 1, **overrides: str) -> list[AppProcess]:
        return self._start("serve", "app", count, overrides)

    def start_workers(self, count: int = 1, **overrides: str) -> list[AppProcess]:
        """`saga-service worker` processes (in `processes` too, so they are stopped)."""
        return self._start("worker", "worker", count, overrides)

    def _start(
        self, command: str, prefix: str, count: int, overrides: dict[str, str]
    ) -> list[AppProcess]:
        started = []
        for _ in range(count):
            index = len(self.processes)
            port = services.free_port()
            env = {**self.env, **overrides, "PORT": str(port)}
            name = f"{prefix}{index}"
            proc = services.ManagedProcess(
                name,
                saga_service_argv(command),
                self.workdir / f"{name}.log",
                env=env,
            )
            app = AppProcess(name, port, proc)
            self.processes.append(app)
            started.append(app)
        for app in started:
            services.wait_until(
                app.ready,
                timeout=APP_READY_TIMEOUT,
                what=f"{app.name} /healthz/ready",
                process=app.process,
            )
        return started

    def connect(self) -> psycopg.Connection[dict[str, Any]]:
        return psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row)

    def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        with self.connect() as conn:
            return conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: Any = None) -> Any:
        rows = self.query(sql, params)
        return next(iter(rows[0].values())) if rows else None

    def set_stock(self, sku: str, quantity: int) -> None:
        with self.processes[0].client() as client:
            response = client.put(f"/stock/{sku}", json={"quantity": quantity})
            assert response.status_code == 200, response.text

    def wait_all_final(self, timeout: float, expected: int | None = None) -> None:
        def done() -> bool:
            row = self.query(
                "SELECT count(*) AS total,"
                " count(*) FILTER (WHERE state NOT IN ('COMPLETED', 'COMPENSATED')) AS open"
                " FROM sagas"
            )[0]
            if expected is not None and row["total"] != expected:
                return False
            return bool(row["open"] == 0)

        services.wait_until(
            done, timeout=timeout, what="every saga in a final state", max_interval=0.5
        )

    def wait_saga(self, saga_id: str, timeout: float = 60.0) -> dict[str, Any]:
        app = next(p for p in self.processes if p.name.startswith("app") and p.process.alive())
        result: dict[str, Any] = {}

        def final() -> bool:
            with app.client() as client:
                body = client.get(f"/sagas/{saga_id}").json()
            result.update(body)
            return body.get("state") in FINAL_STATES

        services.wait_until(final, timeout=timeout, what=f"saga {saga_id} final")
        return result

    def stop(self) -> None:
        for app in self.processes:
            with contextlib.suppress(Exception):
                app.process.stop(timeout=20.0)


StackFactory = Callable[..., AppStack]


def _create_database(postgres: services.PostgresInstance, name: str) -> str:
    with psycopg.connect(postgres.superuser_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{postgres.user}"')
    return (
        f"host={postgres.host} port={postgres.port} dbname={name} "
        f"user={postgres.user} password={postgres.password} sslmode={postgres.sslmode}"
    )


def _drop_database(postgres: services.PostgresInstance, name: str) -> None:
    with (
        contextlib.suppress(Exception),
        psycopg.connect(postgres.superuser_dsn, autocommit=True) as conn,
    ):
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def make_stack(
    postgres: services.PostgresInstance,
    kafka: services.KafkaInstance,
    redis_env: dict[str, str],
    workdir: Path,
    **overrides: str,
) -> Iterator[AppStack]:
    suffix = secrets.token_hex(4)
    dbname = f"saga_{suffix}"
    dsn = _create_database(postgres, dbname)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        # The processes run the code this process imports (a checkout other than the
        # one the virtualenv was installed from sets PYTHONPATH to its app/src).
        **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
        **TEST_DEFAULTS,
        **postgres.env(),
        **redis_env,
        **kafka.env(),
        "DATABASE_NAME": dbname,
        "KAFKA_TOPIC_EVENTS": f"saga.events.{suffix}",
        "KAFKA_TOPIC_STARTS": f"saga.starts.{suffix}",
        "KAFKA_TOPIC_DEAD_LETTER": f"saga.events.{suffix}.dlq",
        "KAFKA_CONSUMER_GROUP": f"saga-service-{suffix}",
        "JOBS_ENABLED": "true",
        "JOBS_QUEUE": f"saga-jobs-{suffix}",
        **overrides,
    }
    workdir.mkdir(parents=True, exist_ok=True)
    stack = AppStack(env=env, dsn=dsn, workdir=workdir)
    try:
        stack.run_command("migrate")
        stack.run_command("create-topics")
        yield stack
    finally:
        stack.stop()
        _drop_database(postgres, dbname)


@pytest.fixture
def app_stack_factory(
    postgres: services.PostgresInstance,
    kafka: services.KafkaInstance,
    tmp_path: Path,
) -> Iterator[StackFactory]:
    """make(redis_env, **env_overrides) -> AppStack (migrated, topics created, no process)."""
    stack_numbers = itertools.count()
    with contextlib.ExitStack() as exit_stack:

        def make(redis_env: dict[str, str], **overrides: str) -> AppStack:
            index = next(stack_numbers)
            return exit_stack.enter_context(
                make_stack(postgres, kafka, redis_env, tmp_path / f"stack{index}", **overrides)
            )

        yield make


@pytest.fixture
def app_stack(app_stack_factory: StackFactory, redis: services.RedisInstance) -> AppStack:
    """A deployment on standalone Redis, as the app's ACL user, with no process started yet."""
    return app_stack_factory(redis.app_env(services.APP_REDIS_USER))


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    services.wait_until(condition, timeout=timeout, what=what, max_interval=0.5)
