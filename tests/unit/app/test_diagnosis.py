"""Connection failures told apart: a misconfiguration (named) from an outage (not)."""

from __future__ import annotations

import ssl

import pytest
from saga_service.adapters.diagnosis import Diagnosed, ServerWithoutTLS, diagnose


class OperationalError(Exception):
    """Stands in by name for psycopg's and SQLAlchemy's class of that name."""


class AuthenticationError(ConnectionError):
    """Stands in by name for redis-py's."""


def wrapped(inner: BaseException, outer: BaseException) -> BaseException:
    try:
        raise outer from inner
    except BaseException as exc:
        return exc


LIBPQ = 'connection failed: connection to server at "10.0.0.5", port 5432 failed: '


@pytest.mark.parametrize(
    ("exc", "tls", "kind"),
    [
        (
            OperationalError(LIBPQ + 'FATAL: password authentication failed for user "saga"'),
            True,
            "bad_credentials",
        ),
        (
            OperationalError(LIBPQ + "SSL error: certificate verify failed"),
            True,
            "untrusted_certificate",
        ),
        (
            OperationalError(LIBPQ + 'server certificate for "db" does not match host name "x"'),
            True,
            "untrusted_certificate",
        ),
        (
            OperationalError(LIBPQ + "server does not support SSL, but SSL was required"),
            True,
            "server_without_tls",
        ),
        (
            OperationalError(LIBPQ + 'FATAL: no pg_hba.conf entry for host "x", no encryption'),
            False,
            "tls_required",
        ),
        (
            AuthenticationError("invalid username-password pair or user is disabled."),
            True,
            "bad_credentials",
        ),
        (
            wrapped(
                ssl.SSLCertVerificationError(1, "certificate verify failed"),
                ConnectionError("Error 1 connecting"),
            ),
            True,
            "untrusted_certificate",
        ),
        (ServerWithoutTLS("answered a plaintext PING"), True, "server_without_tls"),
        (ConnectionResetError(), True, "server_without_tls"),
        (ConnectionResetError(), False, None),
        (OperationalError(LIBPQ + "Connection refused"), True, None),
        (TimeoutError(), True, None),
    ],
)
def test_a_failure_is_classified(exc: BaseException, tls: bool, kind: str | None) -> None:
    # tls: the failure came from a new connection's TLS handshake
    diagnosis = diagnose(exc, tls_handshake=tls)
    assert diagnosis.kind == kind
    assert str(diagnosis).startswith("misconfigured: ") == (kind is not None)


def test_the_drivers_words_win_over_a_wrappers() -> None:
    inner = OperationalError(LIBPQ + 'FATAL: password authentication failed for user "saga"')
    outer = wrapped(inner, OperationalError("(psycopg.OperationalError) ... (Background on this"))
    diagnosis = diagnose(outer)
    assert diagnosis.detail == str(inner)
    assert "Background" not in str(diagnosis)


def test_a_diagnosis_raised_again_keeps_its_kind() -> None:
    first = diagnose(ConnectionResetError(), tls_handshake=True)
    assert diagnose(Diagnosed(first)) == first
