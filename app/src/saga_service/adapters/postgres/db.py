"""Postgres connections: an async psycopg pool for the service, a SQLAlchemy URL for Alembic."""

from __future__ import annotations

from pathlib import Path

from psycopg import AsyncConnection, OperationalError, conninfo
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy.engine import URL

from saga_service.settings import Settings

Conn = AsyncConnection[DictRow]
Pool = AsyncConnectionPool[Conn]


# A primary that vanished (its node lost, a failover) sends no reset: without these a
# connection to it hangs for the kernel's retransmission timeout (about 15 minutes)
# instead of failing within seconds, so that the next attempt reaches the new primary.
DEAD_PEER_DETECTION = {
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",
}

# Orders are writes: a session that cannot write is no connection at all. After a failover
# the database's address can lead to the demoted primary for a while (a partitioned node's
# stale Service routes, DNS caches), and a pool that kept such sessions would fail every
# write on them while reads, and so readiness, went on working. libpq refuses them at
# connect instead, naming why, and the pool tries again until the address leads to the
# primary.
PRIMARY_ONLY = {"target_session_attrs": "read-write"}


def tls_options(settings: Settings) -> dict[str, str]:
    """sslmode, and the CA when one is set (verify-full then checks chain and host name)."""
    options: dict[str, str] = {"sslmode": settings.database_sslmode}
    if settings.database_sslrootcert:
        options["sslrootcert"] = settings.database_sslrootcert
    return options


def make_conninfo(settings: Settings, connect_timeout: int = 5) -> str:
    return conninfo.make_conninfo(
        host=settings.database_host,
        port=settings.database_port,
        dbname=settings.database_name,
        user=settings.database_user,
        password=settings.database_password.get_secret_value(),
        **tls_options(settings),
        application_name="saga-service",
        connect_timeout=connect_timeout,
        **DEAD_PEER_DETECTION,
        **PRIMARY_ONLY,
        # A frozen or partitioned process must not hold stock or saga row locks for long:
        # the server ends its transaction after 15 s idle. The server arms that timer only
        # once it has answered a Sync, so the app never pipelines (nor uses executemany,
        # which pipelines): a backend left between a pipeline's statements and its Sync
        # keeps its locks with no timeout at all.
        options="-c idle_in_transaction_session_timeout=15000",
    )


async def connection_problem(settings: Settings, timeout: float) -> BaseException | None:
    """Why a new connection fails now (None: it does not); the pool only says it timed out."""
    try:
        conn = await AsyncConnection.connect(
            make_conninfo(settings, connect_timeout=max(1, round(timeout)))
        )
    except Exception as exc:
        return exc
    await conn.close()
    return None


# The pool retries a failed connection with a backoff that doubles without bound for
# reconnect_timeout (5 min by default): after a minute-long outage its next attempt could
# be a minute away, while readiness (which connects on its own) already said Ready and
# every request waited for a connection the pool was not trying to make. Given up after
# this long, an attempt is started afresh by the next request that needs a connection.
RECONNECT_GIVE_UP_SECONDS = 10.0


async def open_pool(settings: Settings) -> Pool:
    """Open the pool without waiting: readiness reports when Postgres answers."""
    pool: Pool = AsyncConnectionPool(
        make_conninfo(settings),
        min_size=min(2, settings.database_pool_size),
        max_size=settings.database_pool_size,
        kwargs={"row_factory": dict_row, "autocommit": True},
        connection_class=AsyncConnection[DictRow],
        open=False,
        timeout=10.0,
        reconnect_timeout=RECONNECT_GIVE_UP_SECONDS,
        name="saga",
    )
    await pool.open(wait=False)
    return pool


def session_lost(exc: BaseException) -> bool:
    """The session ended under the statement (the server stopped, failed over or was cut
    off), as opposed to a statement the server refused: whatever the transaction had not
    committed is gone, so it can be run again on a new connection. A pool that waited its
    full timeout for a connection is not counted: the wait is already spent."""
    return isinstance(exc, OperationalError) and not isinstance(exc, PoolTimeout)


def sqlalchemy_url(settings: Settings) -> URL:
    return URL.create(
        "postgresql+psycopg",
        username=settings.database_user,
        password=settings.database_password.get_secret_value(),
        host=settings.database_host,
        port=settings.database_port,
        database=settings.database_name,
        query={
            **tls_options(settings),
            **DEAD_PEER_DETECTION,
            **PRIMARY_ONLY,
            "connect_timeout": "10",
        },
    )


# Held by every `migrate` run while it changes the schema or the service's grants.
MIGRATION_LOCK_KEY = 4_242_001


def as_owner(settings: Settings) -> Settings:
    """The settings with DATABASE_OWNER_USER in place of DATABASE_USER, when one is set."""
    if not settings.database_owner_user:
        return settings
    return settings.model_copy(
        update={
            "database_user": settings.database_owner_user,
            "database_password": settings.database_owner_password,
        }
    )


def run_migrations(settings: Settings) -> None:
    """Apply every migration up to head as the schema's owner (idempotent; safe to run
    concurrently)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.attributes["url"] = sqlalchemy_url(as_owner(settings))
    command.upgrade(cfg, "head")
