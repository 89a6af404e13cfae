"""Spans exported with the OpenTelemetry SDK over OTLP/HTTP, when an endpoint is configured.

One saga is one trace. The request that places the order is its root span; every event a
consumer handles is a span whose parent is the span that wrote the event (its traceparent
travels in the outbox row and the Kafka headers, observability/tracing.py); the order
document's job is a span under the step that queued it. So the trace shows each hop, the
pod that ran it (the resource's k8s.pod.name) and the waits between them.

The span ids are the ones the JSON log lines carry (`trace_id`, `span_id`), so a line leads
to its span and back. Without an endpoint nothing is exported and nothing else changes: the
trace context still travels and the logs still carry it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry import trace as otel
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from saga_service.observability import tracing
from saga_service.observability.tracing import TraceContext

log = logging.getLogger(__name__)

Attribute = str | int | float | bool

_provider: TracerProvider | None = None
_tracer: otel.Tracer | None = None


def configure(endpoint: str, *, service: str, resource: Mapping[str, str]) -> None:
    """Export spans to the OTLP/HTTP collector at `endpoint` (its base URL; /v1/traces is
    added). The sampler is the SDK's, from OTEL_TRACES_SAMPLER (default: the parent's
    decision, else always); OTEL_RESOURCE_ATTRIBUTES adds to `resource`."""
    attributes: dict[str, str] = {"service.name": service, **resource}
    provider = TracerProvider(resource=Resource.create(attributes))
    exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", timeout=5)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
    install(provider)
    log.info("exporting spans", extra={"endpoint": endpoint, "service": service})


def install(provider: TracerProvider) -> None:
    """Make spans through `provider` from now on (its processors decide where they go)."""
    global _provider, _tracer
    shutdown()
    _provider, _tracer = provider, provider.get_tracer("saga_service")


def shutdown() -> None:
    """Export what is still buffered (at most a few seconds) and stop exporting."""
    global _provider, _tracer
    if _provider is not None:
        _provider.shutdown()
    _provider, _tracer = None, None


def enabled() -> bool:
    return _tracer is not None


@dataclass(slots=True)
class Span:
    """The span of a block: its trace context (bound for the block's logs and the events it
    writes) and, when spans are exported, the span to describe."""

    trace: TraceContext
    _span: otel.Span | None = None

    def rename(self, name: str) -> None:
        if self._span is not None:
            self._span.update_name(name)

    def set(self, attributes: Mapping[str, Attribute]) -> None:
        if self._span is not None:
            self._span.set_attributes(attributes)

    def fail(self, description: str) -> None:
        if self._span is not None:
            self._span.set_status(Status(StatusCode.ERROR, description))


def _remote_parent(parent: TraceContext) -> otel_context.Context:
    span_context = otel.SpanContext(
        trace_id=int(parent.trace_id, 16),
        span_id=int(parent.span_id, 16),
        is_remote=True,
        trace_flags=otel.TraceFlags(int(parent.flags, 16)),
    )
    return otel.set_span_in_context(otel.NonRecordingSpan(span_context), otel_context.Context())


@contextlib.contextmanager
def started(
    name: str,
    parent: TraceContext | None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Attribute] | None = None,
    exported: bool = True,
) -> Iterator[Span]:
    """A span under `parent` (a new trace when None) for the duration of the block, its
    context bound for the block's logs and outgoing events. An exception that leaves the
    block marks the span failed and is recorded on it. Not `exported`: the block still gets
    its own span id, nothing is sent."""
    if _tracer is None or not exported:
        trace = parent.child() if parent else tracing.new_trace()
        with tracing.bound(trace=trace):
            yield Span(trace)
        return
    context = _remote_parent(parent) if parent else otel_context.Context()
    with _tracer.start_as_current_span(
        name, context=context, kind=kind, attributes=attributes
    ) as span:
        ids = span.get_span_context()
        trace = TraceContext(
            format(ids.trace_id, "032x"),
            format(ids.span_id, "016x"),
            format(ids.trace_flags, "02x"),
        )
        with tracing.bound(trace=trace):
            yield Span(trace, span)
