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
