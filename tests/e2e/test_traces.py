"""Traces (ci/tracing/ and the chart's `tracing.*`): the app and the job workers export their
spans over OTLP to the cluster's Jaeger, and one saga is one trace there: the request that
placed the order, each step consumed from Kafka on whichever pod owned its partition, and the
order document's job on a worker, each span the child of the one that wrote its event. The
log lines carry the same ids. Figures go to $SAGA_STACK_RESULTS/e2e-traces.json.

The job runs when the queue reaches it: on the shared release after a load test that is
minutes later (its workers take a second a job), so the job's hop is checked on the newest
saga of the release whose job has run, which is this test's own when the queue is idle."""

from __future__ import annotations

import functools
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import logstore, tracestore
from tests.e2e.cluster import pod_usage, wait_for
from tests.e2e.ingress import HostClient, confirmed_orders, pod_of, release_hosts
from tests.e2e.releases import write_figures

# Orders to place at most until one saga's steps ran on two app pods (see test_central_logs).
MAX_ORDERS = 24
JOB = "order-document job"
# Each span's parent: the span that wrote the event it handles (the confirming step queues
# the job and publishes OrderConfirmed, which the saga's final consumer span handles).
PARENT_OF = {
    "OrderPlaced process": "POST /orders",
    "StockReserved process": "OrderPlaced process",
    "PaymentCharged process": "StockReserved process",
    "OrderConfirmed process": "PaymentCharged process",
}
FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[dict[str, Any]]:
    yield from write_figures("e2e-traces.json", FIGURES)


def whole_trace(trace_id: str) -> list[tracestore.Span] | None:
    """The saga's spans once the store has the request's and every step's."""
    spans = tracestore.trace(trace_id)
    names = {s.name for s in spans}
    return spans if {"POST /orders", *PARENT_OF} <= names else None


def test_one_saga_is_one_trace_across_the_pods_that_ran_it(release: str) -> None:
    spans: list[tracestore.Span] = []
    placed, request_span = 0, ""
    with HostClient("http", release_hosts(release)["ingress"]) as client:
        for order in confirmed_orders(client, "trace", MAX_ORDERS):
            placed += 1
            request_span = order.request_span_id
            spans = wait_for(
                f"trace {order.trace_id} whole in the trace store",
                functools.partial(whole_trace, order.trace_id),
                timeout=60,
            )
            if len({s.pod for s in spans if s.name != JOB}) >= 2:
                break
    by_id = {s.span_id: s for s in spans}
    app_pods = sorted({s.pod for s in spans if s.name != JOB})
    FIGURES["trace"] = {
        "orders_placed": placed,
        "spans": len(spans),
        "pods": sorted({s.pod for s in spans}),
        "names": sorted(s.name for s in spans),
    }
    assert len(app_pods) >= 2, f"{MAX_ORDERS} sagas, each run by one app pod only: {app_pods}"
    assert {s.namespace for s in spans} == {release}
    assert {s.service for s in spans} == {"saga-service"}
    # one tree: the request is the root, every other span hangs under a span of the trace
    (root,) = [s for s in spans if s.parent_id is None]
    assert root.name == "POST /orders" and root.span_id == request_span
    assert root.tags["http.response.status_code"] == 202
    for span in spans:
        assert span.parent_id is None or span.parent_id in by_id, f"{span.name} has no parent"
    # each hop is the child of the one that wrote its event
    assert parents_by_name(spans, PARENT_OF) == PARENT_OF
    saga_ids = {s.tags.get("saga.id") for s in spans if s.name in PARENT_OF}
    assert len(saga_ids) == 1 and None not in saga_ids, saga_ids
    saga_id = str(saga_ids.pop())

    FIGURES["store_usage"] = pod_usage(tracestore.NAMESPACE)
    # The app's log lines of the saga name these spans: a line leads to its span.
    lines = wait_for(
        f"saga {saga_id}'s lines in the log store",
        functools.partial(logstore.completed_saga, saga_id),
        timeout=60,
    )
    assert {line["span_id"] for line in logstore.app_lines(lines)} <= set(by_id), lines

    # The job: under the step that queued it, on a worker, in the saga's trace. The shared
    # release's queue may still hold the jobs of an earlier test's load (its workers take
    # a second per job, values/jobs-under-test.yaml), and this saga's job waits behind them.
    job_spans = wait_for(
        f"a saga of {release} whose order-document job ran, whole in the trace store",
        functools.partial(newest_trace_with_job, release),
        timeout=360,
    )
    job = next(s for s in job_spans if s.name == JOB)
    assert parents_by_name(job_spans, {**PARENT_OF, JOB: "PaymentCharged process"}) == {
        **PARENT_OF,
        JOB: "PaymentCharged process",
    }
    assert "-worker-" in job.pod, job
    FIGURES["job_trace"] = {"pods": sorted({s.pod for s in job_spans}), "spans": len(job_spans)}


def parents_by_name(spans: list[tracestore.Span], names: dict[str, str]) -> dict[str, str | None]:
    """For each span name in `names`, the name of its parent span in `spans`."""
    by_id = {s.span_id: s.name for s in spans}
    found = {s.name: by_id.get(s.parent_id or "") for s in spans}
    return {name: found.get(name) for name in names}


def newest_trace_with_job(namespace: str) -> list[tracestore.Span] | None:
    for spans in tracestore.traces_with(JOB):
        names = {s.name for s in spans}
        if {s.namespace for s in spans} == {namespace} and {"POST /orders", *PARENT_OF} <= names:
            return spans
    return None


def test_probes_and_scrapes_make_no_spans(release: str) -> None:
    """Kubelet probes and Prometheus scrapes hit every pod several times a second: none is
    exported (they would bury the sagas). Probes and requests go out in one trace (the same
    incoming traceparent) until every app pod has answered a probe and, after it, a request:
    a pod exports its spans in the order they end, so once each pod's request is in the
    store, a probe span exported before it would be too."""
    parent = "00-" + secrets.token_hex(16) + "-" + secrets.token_hex(8) + "-01"
    trace_id = parent.split("-")[1]
    probed: set[str] = set()
    answered: set[str] = set()
    requests = 0
    with HostClient("http", release_hosts(release)["ingress"]) as client:
        for _ in range(40):
            for path in ("/healthz/ready", "/metrics", f"/orders/{uuid.uuid4()}"):
                status, _, headers = client.call("GET", path, headers={"traceparent": parent})
                assert status in (200, 404), (path, status)
                pod = pod_of(headers)
                if path.startswith("/orders/"):
                    requests += 1
                    if pod in probed:
                        answered.add(pod)
                else:
                    probed.add(pod)
            # (a pod the HPA removes meanwhile is probed and never asked again)
            if len(answered) >= 2 and probed <= answered:
                break
    assert len(answered) >= 2, f"probed {sorted(probed)}, then asked only {sorted(answered)}"

    def every_request() -> list[tracestore.Span] | None:
        spans = tracestore.trace(trace_id)
        return spans if len(spans) >= requests else None

    spans = wait_for(
        f"the {requests} requests of trace {trace_id} in the store", every_request, timeout=60
    )
    assert sorted({s.name for s in spans}) == ["GET /orders/{order_id}"], spans
