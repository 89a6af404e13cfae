"""Settings that depend on each other: the shutdown drain within the grace period."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from saga_service.settings import Settings

REQUIRED: dict[str, Any] = {
    "database_host": "db",
    "database_password": "secret",
    "redis_host": "redis",
    "kafka_bootstrap_servers": "kafka:9092",
}


def settings(**values: Any) -> Settings:
    return Settings(**{**REQUIRED, **values})


def test_the_drain_is_two_seconds_or_a_quarter_of_a_short_grace_period() -> None:
    assert settings().drain_seconds() == 2.0
    assert settings(shutdown_grace_seconds=4).drain_seconds() == 1.0
    assert settings(shutdown_grace_seconds=1).drain_seconds() == 0.25
    assert settings(shutdown_drain_seconds=0).drain_seconds() == 0


def test_a_drain_as_long_as_the_grace_period_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="SHUTDOWN_DRAIN_SECONDS must be less than"):
        settings(shutdown_grace_seconds=5, shutdown_drain_seconds=5)


def test_each_client_gets_its_ca_file_and_verifies_the_host_name(tmp_path: Any) -> None:
    from saga_service.adapters import kafka, lock
    from saga_service.adapters.postgres import db

    ca = tmp_path / "ca.crt"
    ca.write_text("not parsed here\n")
    s = settings(
        database_sslmode="verify-full",
        database_sslrootcert=str(ca),
        redis_tls=True,
        redis_tls_ca_file=str(ca),
    )
    assert db.tls_options(s) == {"sslmode": "verify-full", "sslrootcert": str(ca)}
    assert "sslrootcert=" in db.make_conninfo(s)
    assert db.sqlalchemy_url(s).query["sslrootcert"] == str(ca)
    redis_tls = lock.tls_options(s)
    assert redis_tls["ssl_ca_certs"] == str(ca)
    assert redis_tls["ssl_check_hostname"] is True and redis_tls["ssl_cert_reqs"] == "required"
    assert lock.tls_options(settings()) == {}
    # libpq's own word for "the image's trust store" needs no file.
    assert db.tls_options(settings(database_sslmode="verify-full", database_sslrootcert="system"))
    assert "ssl_context" not in kafka.client_options(settings())


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis_tls_ca_file": "CA"}, "REDIS_TLS_CA_FILE is set but REDIS_TLS is false"),
        (
            {"database_sslrootcert": "CA", "database_sslmode": "prefer"},
            "DATABASE_SSLMODE=prefer may connect without TLS",
        ),
        (
            {"kafka_ssl_ca_file": "CA", "kafka_security_protocol": "SASL_PLAINTEXT"},
            "KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT does not use TLS",
        ),
        ({"redis_tls": True, "redis_tls_ca_file": "/nonexistent"}, "no such file"),
        ({"database_sslmode": "verify_full"}, "verify-full"),
    ],
)
def test_tls_settings_that_would_connect_in_plaintext_are_refused(
    tmp_path: Any, values: dict[str, Any], message: str
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("x\n")
    resolved = {k: (str(ca) if v == "CA" else v) for k, v in values.items()}
    with pytest.raises(ValidationError, match=message):
        settings(**resolved)


def test_an_owner_that_is_the_service_role_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="DATABASE_OWNER_USER must differ"):
        settings(database_user="saga", database_owner_user="saga")
    assert settings(database_user="saga_app", database_owner_user="saga").database_owner_user


def test_the_migrations_run_as_the_owner_when_one_is_set() -> None:
    from saga_service.adapters.postgres.db import as_owner

    plain = settings(database_user="saga")
    assert as_owner(plain) is plain
    split = as_owner(
        settings(database_user="saga_app", database_owner_user="saga", database_owner_password="o")
    )
    assert split.database_user == "saga"
    assert split.database_password.get_secret_value() == "o"
