"""Why a connection to PostgreSQL, Redis or Kafka failed, in words a user can act on.

The three clients report the same few configuration mistakes in their own ways (libpq
text, redis-py and aiokafka exception types, ssl errors hidden in an exception's context),
and aiokafka's bootstrap error names none of them. A misconfiguration is told apart from
an outage because it does not heal by waiting: readiness then answers 503 whatever the
dependency (see runtime.check_dependencies), and the hook commands exit with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
from typing import Literal

Kind = Literal["bad_credentials", "untrusted_certificate", "server_without_tls", "tls_required"]

LABELS: dict[Kind, str] = {
    "bad_credentials": "bad credentials (the server refused the user name or password)",
    "untrusted_certificate": (
        "untrusted certificate (the server's certificate does not verify against the "
        "configured CA file, or names another host)"
    ),
    "server_without_tls": (
        "server without TLS (TLS is configured but the server does not speak it on this port)"
    ),
    "tls_required": "the server requires TLS (set the TLS settings of this dependency)",
}

# Prefix of a readiness check's value when the cause is a misconfiguration.
MISCONFIGURED = "misconfigured"

_LIBPQ: tuple[tuple[str, Kind], ...] = (
    ("password authentication failed", "bad_credentials"),
    ("no password supplied", "bad_credentials"),
    ("SCRAM exchange", "bad_credentials"),
    ("certificate verify failed", "untrusted_certificate"),
    ("does not match host name", "untrusted_certificate"),
    ("root certificate file", "untrusted_certificate"),
    ("server does not support SSL", "server_without_tls"),
    ("no encryption", "tls_required"),
)


class ServerWithoutTLS(ConnectionError):
    """Raised by a check that found the server answering in plaintext."""


class Diagnosed(Exception):
    """A failure already diagnosed (by a background connector), raised again by a check."""

    def __init__(self, diagnosis: Diagnosis) -> None:
        super().__init__(str(diagnosis))
        self.diagnosis = diagnosis


@dataclasses.dataclass(frozen=True, slots=True)
class Diagnosis:
    kind: Kind | None
    detail: str

    @property
    def misconfigured(self) -> bool:
        return self.kind is not None

    def __str__(self) -> str:
        if self.kind is None:
            return self.detail
        return f"{MISCONFIGURED}: {LABELS[self.kind]}: {self.detail}"


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps (cause, context, SQLAlchemy's `orig`), outermost first."""
    seen: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending and len(seen) < 16:
        current = pending.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        for inner in (
            current.__cause__,
            current.__context__,
            getattr(current, "orig", None),
        ):
            if isinstance(inner, BaseException):
                pending.append(inner)
    return seen


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def _kind_of(exc: BaseException, tls_handshake: bool) -> Kind | None:
    name = type(exc).__name__
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "untrusted_certificate"
    if isinstance(exc, ServerWithoutTLS):
        return "server_without_tls"
    # redis-py's AuthenticationError (and its WRONGPASS / NOAUTH forms), aiokafka's
    # SaslAuthenticationFailed: matched by name, so this module imports neither client.
    if name.startswith("Authentication") or name == "SaslAuthenticationFailed":
        return "bad_credentials"
    text = str(exc)
    if "WRONGPASS" in text or "NOAUTH" in text:
        return "bad_credentials"
    if name in ("OperationalError", "ConnectionTimeout") or text.startswith("connection failed"):
        for needle, kind in _LIBPQ:
            if needle in text:
                return kind
    if tls_handshake and (
        isinstance(exc, (ssl.SSLEOFError, ConnectionResetError))
        or (isinstance(exc, ssl.SSLError) and "WRONG_VERSION_NUMBER" in text)
    ):
        # A plaintext server reads the TLS ClientHello as garbage and hangs up. Only
        # on a fresh connection's handshake: a reset of an established one is a server
        # going away (a failover), which must not read as a misconfiguration.
        return "server_without_tls"
    return None


def diagnose(exc: BaseException, *, tls_handshake: bool = False) -> Diagnosis:
    """Classify a connection failure. `tls_handshake`: it came from a new connection with
    TLS on, so a hang-up before any answer means the server does not speak TLS."""
    if isinstance(exc, Diagnosed):
        return exc.diagnosis
    chain = _chain(exc)
    # Innermost first: the driver's own words, not a wrapper's (SQLAlchemy adds a link).
    for inner in reversed(chain):
        kind = _kind_of(inner, tls_handshake)
        if kind is not None:
            detail = _one_line(inner)
            if kind == "server_without_tls" and not str(inner).strip():
                detail += ": the server hung up on the TLS handshake"
            return Diagnosis(kind, detail)
    # SQLAlchemy's message carries a link and the whole statement; the driver's says it all.
    innermost = next((e for e in chain if type(e).__module__.startswith("psycopg")), exc)
    return Diagnosis(None, f"{type(innermost).__name__}: {_one_line(innermost)}")


async def answers_plaintext_redis(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether `host:port` answers a plaintext PING (a TLS handshake to such a server gets
    no answer at all: the server waits for the end of an inline command that never comes)."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"PING\r\n")
            await writer.drain()
            line = await reader.readline()
    except (OSError, TimeoutError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    # +PONG, or -NOAUTH when it has a password: a RESP answer either way.
    return line[:1] in (b"+", b"-")
