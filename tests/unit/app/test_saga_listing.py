"""GET /sagas and GET /sagas/stats without a database (pure): the cursor, the RFC 3339
timestamps, and the query parameters that are refused before any query runs. The queries
themselves run against PostgreSQL in tests/integration/test_app_saga_listing.py."""

from __future__ import annotations

import types
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from saga_service.adapters.postgres.queries import SagaPosition
from saga_service.domain.saga import SagaState
from saga_service.entrypoints.api import SagaStateCounts, create_app
from saga_service.entrypoints.saga_listing import (
    CURSOR_PATTERN,
    TIMESTAMP_PATTERN,
    decode_cursor,
    encode_cursor,
    parse_timestamp,
)
from saga_service.settings import Settings

SAGA = uuid.UUID("0f9d6a52-61d7-4c3e-9d0b-3b1c2d4e5f60")


def client() -> TestClient:
    settings = Settings(
        database_host="unused",
        database_password="unused",
        redis_host="unused",
        kafka_bootstrap_servers="unused",
    )
    # No pool: a request that got past validation would fail, so a 422 here proves the
    # parameter was refused before any query.
    runtime = types.SimpleNamespace(
        settings=settings, instance_id="unit", pool=None, shutting_down=False
    )
    return TestClient(create_app(runtime), raise_server_exceptions=False)  # type: ignore[arg-type]


# --- the cursor ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "created_at",
    [
        datetime(2026, 12, 4, 20, 30, 0, 123456, tzinfo=UTC),
        datetime(2026, 12, 4, 21, 30, 0, 1, tzinfo=timezone(timedelta(hours=1))),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_a_cursor_gives_back_the_position_it_was_made_from(created_at: datetime) -> None:
    token = encode_cursor(SagaPosition(created_at, SAGA))
    assert CURSOR_PATTERN.fullmatch(token)
    assert decode_cursor(token) == SagaPosition(created_at, SAGA)


@given(st.from_regex(CURSOR_PATTERN, fullmatch=True))
def test_every_string_the_published_pattern_admits_is_a_cursor(token: str) -> None:
    # The document promises the pattern is the whole rule: nothing it admits is refused.
    position = decode_cursor(token)
    assert decode_cursor(encode_cursor(position)) == position


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        f"1.{SAGA.hex.upper()}",
        f"12345678901234567.{SAGA.hex}",
        f"1.{SAGA.hex}\n",
        f"1.{SAGA}",
        f"+1.{SAGA.hex}",
        f"1.{SAGA.hex[:-1]}",
    ],
)
def test_a_string_that_is_not_a_cursor_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match="not a cursor"):
        decode_cursor(token)


def test_a_time_a_cursor_cannot_hold_is_refused_when_encoding() -> None:
    with pytest.raises(ValueError, match="outside what a cursor holds"):
        encode_cursor(SagaPosition(datetime(2300, 1, 1, tzinfo=UTC), SAGA))


# --- timestamps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-04T20:30:00Z", datetime(2026, 12, 4, 20, 30, tzinfo=UTC)),
        ("2026-12-04t20:30:00z", datetime(2026, 12, 4, 20, 30, tzinfo=UTC)),
        ("2026-12-04T21:30:00+01:00", datetime(2026, 12, 4, 20, 30, tzinfo=UTC)),
        ("2026-12-04T20:30:00.123456789Z", datetime(2026, 12, 4, 20, 30, 0, 123456, tzinfo=UTC)),
        ("0001-01-01T00:00:00+01:00", datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))),
    ],
)
def test_rfc_3339_date_times_are_taken(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.tzinfo is not None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2026-12-04", "not an RFC 3339"),
        ("2026-12-04T20:30:00", "not an RFC 3339"),  # no offset: which instant?
        ("1700000000", "not an RFC 3339"),  # pydantic's datetime would read unix seconds
        ("2026-12-04 20:30:00Z", "not an RFC 3339"),
        ("2026-12-04T20:30:00Z\n", "not an RFC 3339"),
        ("0000-01-01T00:00:00Z", "not an RFC 3339"),
        ("2016-12-31T23:59:60Z", "not an RFC 3339"),  # a leap second: datetime has none
        ("2026-12-04T20:30:00+24:00", "not an RFC 3339"),
        ("2026-02-30T00:00:00Z", "not a valid date-time"),
        ("2026-04-31T00:00:00Z", "not a valid date-time"),
    ],
)
def test_anything_else_is_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_timestamp(text)


@given(st.from_regex(TIMESTAMP_PATTERN, fullmatch=True))
def test_what_the_pattern_admits_is_taken_or_refused_as_an_impossible_date(text: str) -> None:
    try:
        parsed = parse_timestamp(text)
    except ValueError as exc:
        # Only the calendar is left to refuse (30 February), as the document's format does.
        assert "not a valid date-time" in str(exc)
        day, month = int(text[8:10]), int(text[5:7])
        assert day > 28 or month == 2, text
    else:
        assert isinstance(parsed, datetime)
        assert parsed.tzinfo is not None


# --- the query parameters, refused before any query ---------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/sagas", {"limit": "0"}, "limit"),
        ("/sagas", {"limit": "201"}, "limit"),
        ("/sagas", {"limit": "ten"}, "limit"),
        ("/sagas", {"state": "DONE"}, "state"),
        ("/sagas", [("state", "COMPLETED"), ("state", "completed")], "state"),
        ("/sagas", {"customer_id": ""}, "customer_id"),
        ("/sagas", {"customer_id": "   "}, "customer_id"),
        ("/sagas", {"customer_id": "a\x00b"}, "customer_id"),
        ("/sagas", {"customer_id": "x" * 129}, "customer_id"),
        ("/sagas", {"since": "2026-12-04"}, "since"),
        ("/sagas", {"until": "1700000000"}, "until"),
        ("/sagas", {"until": "2026-02-30T00:00:00Z"}, "until"),
        ("/sagas", {"cursor": "abc"}, "cursor"),
        ("/sagas/stats", {"since": "yesterday"}, "since"),
    ],
)
def test_a_bad_filter_is_a_422_naming_the_parameter(path: str, params: Any, field: str) -> None:
    response = client().get(path, params=params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_request"
    # A list parameter's errors also name the position: state.1.
    assert [e["loc"][:2] for e in body["detail"]] == [["query", field]]
    assert field in body["message"]


def test_stats_is_its_own_path_not_a_saga_id() -> None:
    # Declared after /sagas/{saga_id}, "stats" would be refused as a malformed UUID.
    response = client().get("/sagas/stats", params={"since": "bad"})
    assert [e["loc"] for e in response.json()["detail"]] == [["query", "since"]]


def test_the_counts_name_every_saga_state() -> None:
    assert set(SagaStateCounts.model_fields) == {state.value for state in SagaState}
