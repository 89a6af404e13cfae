"""The service connects as a role that reads and writes rows and can change nothing else;
`migrate` runs as the schema's owner and gives that role its grants (DATABASE_OWNER_USER)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import conninfo, sql

from tests.integration import app_processes, services
from tests.integration.app_processes import StackFactory

pytestmark = pytest.mark.timeout(300)

app_stack_factory = app_processes.app_stack_factory

# What a compromised service would try; each must be refused for lack of privilege.
SCHEMA_CHANGES = [
    "DROP TABLE orders",
    "ALTER TABLE orders ADD COLUMN intruder int",
    "TRUNCATE payments",
    "CREATE TABLE intruder (id int)",
    "CREATE INDEX intruder ON orders (status)",
    "UPDATE alembic_version SET version_num = 'forged'",
    "CREATE ROLE intruder LOGIN",
]


@pytest.fixture
def service_role(postgres: services.PostgresInstance) -> Iterator[tuple[str, str]]:
    """A role name of this test's own, dropped with whatever it was granted at the end."""
    name, password = f"svc_{secrets.token_hex(4)}", secrets.token_hex(16)
    yield name, password
    with psycopg.connect(postgres.superuser_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def split_roles(service: tuple[str, str], owner: tuple[str, str]) -> dict[str, str]:
    """The environment of a service that connects as `service` and migrates as `owner`."""
    return {
        "DATABASE_USER": service[0],
        "DATABASE_PASSWORD": service[1],
        "DATABASE_OWNER_USER": owner[0],
        "DATABASE_OWNER_PASSWORD": owner[1],
    }


def test_the_service_role_runs_sagas_and_cannot_change_the_schema(
    service_role: tuple[str, str],
    app_stack_factory: StackFactory,
    redis: services.RedisInstance,
    postgres: services.PostgresInstance,
) -> None:
    name, password = service_role
    owner = (postgres.superuser, postgres.superuser_password)
    stack = app_stack_factory(redis.env(), **split_roles(service_role, owner))
    (app,) = stack.start(1)
    stack.set_stock("ROLE-A", 5)
    with app.client() as client:
        order = client.post(
            "/orders",
            json={
                "customer_id": "role",
                "items": [{"sku": "ROLE-A", "quantity": 2, "unit_price_cents": 100}],
            },
        ).json()
    assert stack.wait_saga(order["saga_id"])["state"] == "COMPLETED"

    dsn = conninfo.make_conninfo(stack.dsn, user=name, password=password)
    with psycopg.connect(dsn, autocommit=True) as conn:
        flags = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls "
            "FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert flags == (False, False, False, False, False)
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (1,)
        refused = []
        for statement in SCHEMA_CHANGES:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            refused.append(statement)
        assert refused == SCHEMA_CHANGES

    # A second run finds the role and keeps its grants (an upgrade of the release).
    stack.run_command("migrate")
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM sagas").fetchone() == (1,)


def test_an_owner_that_may_not_create_the_role_is_told_so(
    service_role: tuple[str, str],
    app_stack_factory: StackFactory,
    redis: services.RedisInstance,
    postgres: services.PostgresInstance,
) -> None:
    name = service_role[0]
    owner = (postgres.user, postgres.password)  # the database's owner, without CREATEROLE
    with pytest.raises(services.ServiceError) as failed:
        app_stack_factory(redis.env(), **split_roles(service_role, owner))
    message = str(failed.value)
    assert f"role {name} does not exist" in message
    assert "CREATEROLE" in message
