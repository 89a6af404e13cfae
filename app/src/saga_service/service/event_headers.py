"""The headers every outbox event carries: the trace and correlation id of the request that
caused it, else those stored with its saga (a step run by the recovery sweep has no request)."""

from __future__ import annotations

from saga_service.adapters.postgres.commands import SagaRow
from saga_service.observability import tracing


def event_headers(saga: SagaRow | None = None) -> dict[str, str]:
    headers: dict[str, str] = {}
    traceparent = tracing.current_traceparent() or (saga.traceparent if saga else None)
    if traceparent:
        headers["traceparent"] = traceparent
    correlation = tracing.correlation_var.get() or (saga.correlation_id if saga else None)
    if correlation:
        headers["correlation_id"] = correlation
    return headers
