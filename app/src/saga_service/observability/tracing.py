"""W3C trace context and correlation ids carried through contextvars.

HTTP `traceparent` -> stored on the saga and outbox row -> Kafka header -> consumer,
which continues the trace with a new span id.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str
    span_id: str
    flags: str = "01"

    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> TraceContext:
        return TraceContext(self.trace_id, new_span_id(), self.flags)


def new_span_id() -> str:
    return secrets.token_hex(8)


def new_trace() -> TraceContext:
    return TraceContext(secrets.token_hex(16), new_span_id())


def parse_traceparent(value: str | None) -> TraceContext | None:
    """Parse a W3C traceparent; None when absent or invalid (all-zero ids are invalid)."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if not match:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == "ff" or trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return TraceContext(trace_id, span_id, flags)


def continue_trace(traceparent: str | None) -> TraceContext:
    """A new span under the incoming parent, or a fresh trace."""
    parent = parse_traceparent(traceparent)
    return parent.child() if parent else new_trace()


trace_var: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar(
    "trace", default=None
)
correlation_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)
saga_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("saga_id", default=None)
order_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("order_id", default=None)


def new_correlation_id() -> str:
    return str(uuid.uuid4())


@contextlib.contextmanager
def bound(
    *,
    trace: TraceContext | None = None,
    correlation_id: str | None = None,
    saga_id: str | None = None,
    order_id: str | None = None,
) -> Iterator[None]:
    """Bind log/trace context for the duration of a block (only the given fields)."""
    tokens: list[tuple[contextvars.ContextVar[object], contextvars.Token[object]]] = []
    pairs: list[tuple[contextvars.ContextVar[object], object]] = [
        (trace_var, trace),  # type: ignore[list-item]
        (correlation_var, correlation_id),  # type: ignore[list-item]
        (saga_var, saga_id),  # type: ignore[list-item]
        (order_var, order_id),  # type: ignore[list-item]
    ]
    for var, value in pairs:
        if value is not None:
            tokens.append((var, var.set(value)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current_traceparent() -> str | None:
    trace = trace_var.get()
    return trace.traceparent() if trace else None
