"""What GET /sagas and GET /sagas/stats take: RFC 3339 timestamps, the page cursor and the
page size. Pure, so the rules are unit-tested without a database.

Both the timestamp and the cursor are published with a pattern in the OpenAPI document, and
every string the pattern admits is either valid or refused here for a reason the document's
`format` also gives (a 30 February): a client, or the contract fuzzer, can trust the
document. The patterns mean the same to Python's re, pydantic's Rust regex and ECMA-262.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

from saga_service.adapters.postgres.queries import SagaPosition

LIMIT_DEFAULT = 50
LIMIT_MAX = 200

_YEAR = "(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"  # 0001-9999, as datetime
_MONTH = "(0[1-9]|1[0-2])"
_DAY = "(0[1-9]|[12][0-9]|3[01])"
# No leap second (:60): datetime cannot hold one, and JSON Schema's date-time takes it only
# at 23:59:60 UTC, which no pattern can tell from 22:05:60+01:00.
_TIME = "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]([.][0-9]{1,9})?"
_OFFSET = "([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
# RFC 3339 `date-time`: the offset is required, so a time always means one instant.
TIMESTAMP_PATTERN = re.compile(f"^{_YEAR}-{_MONTH}-{_DAY}[Tt]{_TIME}{_OFFSET}$")

# "<created_at as microseconds since the epoch>.<saga_id as 32 hex digits>". Clients treat it
# as opaque; it is spelled out so that the document can say exactly which strings it takes.
# 16 digits reach 1653-2286, well inside what datetime holds.
CURSOR_PATTERN = re.compile(r"^-?[0-9]{1,16}[.][0-9a-f]{32}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def parse_timestamp(value: Any) -> Any:
    """An RFC 3339 date-time as an aware datetime; anything else is left to pydantic, which
    refuses what is not a datetime (a datetime given in Python passes unchanged)."""
    if not isinstance(value, str):
        return value
    if not TIMESTAMP_PATTERN.fullmatch(value):
        raise ValueError("not an RFC 3339 date-time with an offset (like 2026-12-04T20:30:00Z)")
    try:
        return datetime.fromisoformat(value.upper())
    except ValueError as exc:
        raise ValueError(f"not a valid date-time: {exc}") from None


# The document says string, date-time, and the pattern: what pydantic's own datetime would
# also take (unix seconds, a date without a time, no offset) is refused.
Timestamp = Annotated[
    datetime,
    BeforeValidator(parse_timestamp),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": TIMESTAMP_PATTERN.pattern}),
]


def encode_cursor(position: SagaPosition) -> str:
    micros = (position.created_at - _EPOCH) // _MICROSECOND
    token = f"{micros}.{position.saga_id.hex}"
    if not CURSOR_PATTERN.fullmatch(token):
        raise ValueError(f"created_at {position.created_at} is outside what a cursor holds")
    return token


def decode_cursor(token: str) -> SagaPosition:
    """The position a cursor names; every string CURSOR_PATTERN admits names one."""
    if not CURSOR_PATTERN.fullmatch(token):
        raise ValueError("not a cursor of this API (take next_cursor from a page)")
    micros, _, saga_hex = token.partition(".")
    return SagaPosition(_EPOCH + int(micros) * _MICROSECOND, uuid.UUID(hex=saga_hex))
