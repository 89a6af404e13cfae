"""Real backing services for the integration tests, run as local processes.

Each ``start_*`` function is a context manager that starts one service (or a
group) on free loopback ports inside a work directory, waits until it really
answers its own protocol, yields a small description of it, and stops it again
by the process id it started (never by name).

Nothing here depends on pytest, so the same code backs the pytest fixtures in
``conftest.py`` and the developer CLI (``cli.py``)::

    python -m tests.integration.services up

which starts everything, prints the environment variables of the app contract
(docs/app-contract.md) and waits for Ctrl-C or SIGTERM.

The binaries come from ``ci/install-services.sh`` (Debian packages for
PostgreSQL, Redis and Java; Kafka's jars from Maven into a cache outside the
repository).

Callers use the names below as ``services.X``, whichever module defines them.
"""

from tests.integration.services.cli import app_env, main
from tests.integration.services.kafka import (
    KAFKA_SASL_MECHANISMS,
    KafkaInstance,
    java_binary,
    kafka_libs_dir,
    kafka_metadata,
    new_kafka_cluster_id,
    start_kafka,
)
from tests.integration.services.postgres import PostgresInstance, postgres_bindir, start_postgres
from tests.integration.services.process import (
    INSTALL_HINT,
    KAFKA_START_TIMEOUT,
    LOOPBACK,
    PORT_ATTEMPTS,
    POSTGRES_START_TIMEOUT,
    REDIS_START_TIMEOUT,
    REPO_ROOT,
    SENTINEL_START_TIMEOUT,
    STOP_TIMEOUT,
    VERSIONS_FILE,
    ManagedProcess,
    MissingBinaryError,
    ServiceError,
    cache_dir,
    free_port,
    port_open,
    read_versions,
    wait_until,
)
from tests.integration.services.redis import (
    APP_REDIS_USER,
    RedisInstance,
    SentinelGroup,
    SentinelInstance,
    start_redis,
    start_redis_sentinel_group,
)
from tests.integration.services.tls import CertificateAuthority, ServerCertificate, make_ca

__all__ = [
    "APP_REDIS_USER",
    "INSTALL_HINT",
    "KAFKA_SASL_MECHANISMS",
    "KAFKA_START_TIMEOUT",
    "LOOPBACK",
    "PORT_ATTEMPTS",
    "POSTGRES_START_TIMEOUT",
    "REDIS_START_TIMEOUT",
    "REPO_ROOT",
    "SENTINEL_START_TIMEOUT",
    "STOP_TIMEOUT",
    "VERSIONS_FILE",
    "CertificateAuthority",
    "KafkaInstance",
    "ManagedProcess",
    "MissingBinaryError",
    "PostgresInstance",
    "RedisInstance",
    "SentinelGroup",
    "SentinelInstance",
    "ServerCertificate",
    "ServiceError",
    "app_env",
    "cache_dir",
    "free_port",
    "java_binary",
    "kafka_libs_dir",
    "kafka_metadata",
    "main",
    "make_ca",
    "new_kafka_cluster_id",
    "port_open",
    "postgres_bindir",
    "read_versions",
    "start_kafka",
    "start_postgres",
    "start_redis",
    "start_redis_sentinel_group",
    "wait_until",
]
