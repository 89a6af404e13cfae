"""Service fixtures for the integration tests: real PostgreSQL, Redis (+ replica
and Sentinel) and Kafka processes on loopback, from tests/integration/services/.

Install the binaries first with ``ci/install-services.sh``. A missing binary
fails the test with that hint rather than skipping it, so CI cannot go green
without running these tests.

App-process fixtures live in tests/integration/app_processes.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration import services


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Work directory shared by the session-scoped services (logs end up here)."""
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def postgres(services_dir: Path) -> Iterator[services.PostgresInstance]:
    with services.start_postgres(services_dir / "postgres") as instance:
        yield instance


@pytest.fixture(scope="session")
def redis(services_dir: Path) -> Iterator[services.RedisInstance]:
    """The shared Redis, with the app's ACL user as the chart defines it (tests read and
    plant keys as the default user)."""
    with services.start_redis(
        services_dir / "redis",
        password="redis-test-password",
        acl_users={services.APP_REDIS_USER: "redis-app-test-password"},
    ) as instance:
        yield instance


@pytest.fixture
def redis_sentinel_group(tmp_path: Path) -> Iterator[services.SentinelGroup]:
    """A fresh master + 1 replica + 3 Sentinels per test: tests may kill the master."""
    with services.start_redis_sentinel_group(
        tmp_path / "sentinel", password="redis-test-password", replicas=1, sentinels=3
    ) as group:
        yield group


KAFKA_SASL_USERS = {"saga": "saga-kafka-password"}


@pytest.fixture(scope="session")
def kafka(services_dir: Path) -> Iterator[services.KafkaInstance]:
    """PLAINTEXT on ``bootstrap_servers``; SASL_PLAINTEXT (PLAIN/SCRAM) for the
    users in KAFKA_SASL_USERS on ``sasl_bootstrap_servers`` (``sasl_env(user)``)."""
    with services.start_kafka(services_dir / "kafka", sasl_users=KAFKA_SASL_USERS) as instance:
        yield instance
