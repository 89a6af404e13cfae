"""The service's own database role: reads and writes on the schema's tables, nothing else.

The migrations run as the schema's owner; the service connects as a second role that can
neither create, alter nor drop anything, so a compromised or buggy service cannot change
the schema, and `migrate` keeps that role's grants in step with every migration.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import sql

from saga_service.adapters.postgres.db import MIGRATION_LOCK_KEY, as_owner, make_conninfo
from saga_service.settings import Settings

log = logging.getLogger(__name__)

SCHEMA = "public"
TABLE_PRIVILEGES = sql.SQL("SELECT, INSERT, UPDATE, DELETE")
SEQUENCE_PRIVILEGES = sql.SQL("USAGE, SELECT, UPDATE")
# Alembic's bookkeeping: the service may read which revision it runs on, never move it.
READ_ONLY_TABLES = ("alembic_version",)
# What a login role of the service must not be able to do, whatever it was given before.
ROLE_LIMITS = sql.SQL("LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS")


class RoleProvisioningError(Exception):
    """The service's role is missing and the owner may not create it."""


def _set_login(cur: psycopg.Cursor[Any], name: str, password: str) -> None:
    """Create the role, or bring an existing one back to the limits and the Secret's password."""
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
    exists = cur.fetchone() is not None
    statement = sql.SQL("{} ROLE {} WITH {} PASSWORD {}").format(
        sql.SQL("ALTER" if exists else "CREATE"),
        sql.Identifier(name),
        ROLE_LIMITS,
        sql.Literal(password),
    )
    try:
        cur.execute(statement)
    except psycopg.errors.InsufficientPrivilege as exc:
        if not exists:
            raise RoleProvisioningError(
                f"role {name} does not exist and DATABASE_OWNER_USER may not create roles: "
                "create it, or grant the owner CREATEROLE"
            ) from exc
        # A role managed by whoever runs the database (a cloud console): grants only.
        log.info("role managed outside the service; granting only", extra={"role": name})


def grant_service_role(settings: Settings) -> None:
    """Give DATABASE_USER the reads and writes of every table the owner has (and will have)."""
    role = sql.Identifier(settings.database_user)
    owner = sql.Identifier(settings.database_owner_user)
    schema = sql.Identifier(SCHEMA)
    with psycopg.connect(make_conninfo(as_owner(settings), 10), autocommit=True) as conn:
        cur = conn.cursor()
        # The same lock as the migrations: concurrent `migrate` runs provision once each.
        cur.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            password = settings.database_password.get_secret_value()
            with conn.transaction():
                _set_login(cur, settings.database_user, password)
            with conn.transaction():
                database = sql.Identifier(settings.database_name)
                cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, role))
                cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, role))
                cur.execute(
                    sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}, PUBLIC").format(schema, role)
                )
                cur.execute(
                    sql.SQL("GRANT {} ON ALL TABLES IN SCHEMA {} TO {}").format(
                        TABLE_PRIVILEGES, schema, role
                    )
                )
                cur.execute(
                    sql.SQL("GRANT {} ON ALL SEQUENCES IN SCHEMA {} TO {}").format(
                        SEQUENCE_PRIVILEGES, schema, role
                    )
                )
                for table in READ_ONLY_TABLES:
                    cur.execute(
                        sql.SQL("REVOKE INSERT, UPDATE, DELETE ON {}.{} FROM {}").format(
                            schema, sql.Identifier(table), role
                        )
                    )
                for kind, privileges in (
                    (sql.SQL("TABLES"), TABLE_PRIVILEGES),
                    (sql.SQL("SEQUENCES"), SEQUENCE_PRIVILEGES),
                ):
                    cur.execute(
                        sql.SQL(
                            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT {} ON {} TO {}"
                        ).format(owner, schema, privileges, kind, role)
                    )
        finally:
            cur.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    log.info(
        "service role granted",
        extra={"role": settings.database_user, "owner": settings.database_owner_user},
    )
