"""The spans the app makes (observability/spans.py), through the OpenTelemetry SDK with its
in-memory exporter: one trace across hops, the ids the log lines carry, nothing exported
when off or for probes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from saga_service.observability import spans, tracing


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans.install(provider)
    yield exporter
    spans.shutdown()


def only(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    return span


def test_a_hop_is_a_child_of_the_span_that_wrote_its_traceparent(
    exported: InMemorySpanExporter,
) -> None:
    with spans.started("POST", None, kind=SpanKind.SERVER) as request:
        written = tracing.current_traceparent()
    with spans.started("OrderPlaced process", tracing.parse_traceparent(written)) as step:
        pass
    root, child = exported.get_finished_spans()
    assert root.parent is None and root.kind is SpanKind.SERVER
    assert child.parent is not None and child.parent.span_id == root.context.span_id
    assert child.context.trace_id == root.context.trace_id
    assert step.trace.trace_id == request.trace.trace_id
    assert step.trace.span_id != request.trace.span_id


def test_the_log_context_carries_the_exported_span_s_ids(exported: InMemorySpanExporter) -> None:
    parent = tracing.new_trace()
    with spans.started("step", parent) as span:
        bound = tracing.trace_var.get()
    assert bound == span.trace
    exported_span = only(exported)
    assert format(exported_span.context.span_id, "016x") == span.trace.span_id
    assert format(exported_span.context.trace_id, "032x") == parent.trace_id
    assert tracing.trace_var.get() is None, "the context is unbound after the block"


def test_rename_attributes_and_failure_reach_the_span(exported: InMemorySpanExporter) -> None:
    with pytest.raises(RuntimeError), spans.started("GET", None) as span:
        span.rename("GET /orders/{order_id}")
        span.set({"http.response.status_code": 500})
        raise RuntimeError("boom")
    done = only(exported)
    assert done.name == "GET /orders/{order_id}"
    assert done.attributes is not None and done.attributes["http.response.status_code"] == 500
    assert done.status.status_code is StatusCode.ERROR
    assert [e.name for e in done.events] == ["exception"]


def test_a_block_not_exported_still_gets_its_own_span_id(exported: InMemorySpanExporter) -> None:
    parent = tracing.new_trace()
    with spans.started("GET", parent, exported=False) as span:
        assert tracing.trace_var.get() == span.trace
    assert span.trace.trace_id == parent.trace_id and span.trace.span_id != parent.span_id
    assert exported.get_finished_spans() == ()


def test_off_by_default_the_trace_context_still_travels() -> None:
    assert not spans.enabled()
    parent = tracing.new_trace()
    with spans.started("step", parent) as span:
        assert tracing.current_traceparent() == span.trace.traceparent()
    assert span.trace.trace_id == parent.trace_id


def test_an_unsampled_parent_is_honoured(exported: InMemorySpanExporter) -> None:
    parent = tracing.TraceContext(tracing.new_trace().trace_id, tracing.new_span_id(), "00")
    with spans.started("step", parent) as span:
        pass
    assert span.trace.flags == "00" and span.trace.trace_id == parent.trace_id
    assert exported.get_finished_spans() == ()
