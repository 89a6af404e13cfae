"""Saga events as they travel on Kafka: a strict JSON envelope, parsed without I/O."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from saga_service.domain.saga import EVENT_TYPES, SagaState

SCHEMA_VERSION = 1


class MalformedEvent(ValueError):
    """A message that can never be processed (it goes to the dead-letter topic)."""


@dataclass(frozen=True, slots=True)
class SagaEvent:
    event_id: uuid.UUID
    event_type: str
    saga_id: uuid.UUID
    order_id: uuid.UUID
    state: SagaState  # the state the saga entered; its step is what the consumer runs

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "v": SCHEMA_VERSION,
                "event_id": str(self.event_id),
                "event_type": self.event_type,
                "saga_id": str(self.saga_id),
                "order_id": str(self.order_id),
                "state": self.state.value,
            },
            separators=(",", ":"),
        ).encode()

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.to_json())
        return result


def _uuid(data: dict[str, Any], key: str) -> uuid.UUID:
    value = data.get(key)
    if not isinstance(value, str):
        raise MalformedEvent(f"field {key!r} missing or not a string")
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise MalformedEvent(f"field {key!r} is not a UUID") from exc


def parse_event(raw: bytes | None, key: bytes | None = None) -> SagaEvent:
    """Parse and check one Kafka message value; raise MalformedEvent with the reason."""
    if raw is None:
        raise MalformedEvent("empty message value")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvent(f"value is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedEvent("value is not a JSON object")
    if data.get("v") != SCHEMA_VERSION:
        raise MalformedEvent(f"unsupported schema version {data.get('v')!r}")
    event_type = data.get("event_type")
    if event_type not in EVENT_TYPES:
        raise MalformedEvent(f"unknown event_type {event_type!r}")
    try:
        state = SagaState(str(data.get("state")))
    except ValueError as exc:
        raise MalformedEvent(f"unknown state {data.get('state')!r}") from exc
    event = SagaEvent(
        event_id=_uuid(data, "event_id"),
        event_type=str(event_type),
        saga_id=_uuid(data, "saga_id"),
        order_id=_uuid(data, "order_id"),
        state=state,
    )
    if key is not None and key != str(event.saga_id).encode():
        raise MalformedEvent("message key does not match saga_id")
    return event
