"""W3C trace context parsing (pure)."""

from __future__ import annotations

from saga_service.observability.tracing import continue_trace, parse_traceparent

VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_parse_valid_and_continue_keeps_trace_id() -> None:
    parent = parse_traceparent(VALID)
    assert parent is not None and parent.trace_id == "0af7651916cd43dd8448eb211c80319c"
    child = continue_trace(VALID)
    assert child.trace_id == parent.trace_id and child.span_id != parent.span_id
    assert parse_traceparent(child.traceparent()) == child


def test_invalid_traceparents_start_a_new_trace() -> None:
    for bad in (None, "", "garbage", "ff-" + VALID[3:], "00-" + "0" * 32 + "-b7ad6b7169203331-01"):
        assert parse_traceparent(bad) is None
        assert len(continue_trace(bad).trace_id) == 32
