"""Central logs (ci/logging/): every pod's lines reach one store through the node agents,
without the app knowing of it, and one saga is followed there across the pods that
handled it by its saga id, its order id or its trace id; the store's web UI answers on the
host. Figures go to $SAGA_STACK_RESULTS/e2e-logs.json."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import logstore
from tests.e2e.cluster import kubectl_json, pod_usage, wait_for
from tests.e2e.ingress import HostClient, confirmed_orders, release_hosts
from tests.e2e.releases import write_figures

POD = logstore.POD
# Orders to place at most until one saga has been handled by two pods: its "order placed"
# line comes from the pod that took the request (Traefik alternates the pods) and its steps
# from the consumer of its partition; each order has about even odds of crossing pods.
MAX_ORDERS = 24
FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[dict[str, Any]]:
    yield from write_figures("e2e-logs.json", FIGURES)


def test_one_saga_is_found_by_its_saga_order_and_trace_id_across_the_pods_that_ran_it(
    release: str,
) -> None:
    placed = 0
    lines: list[dict[str, Any]] = []
    with HostClient("http", release_hosts(release)["ingress"]) as client:
        for order in confirmed_orders(client, "logs", MAX_ORDERS):
            placed += 1
            saga_id, order_id = order.saga_id, order.order_id
            lines = wait_for(
                f"saga {saga_id}'s lines, first to last, in the log store",
                functools.partial(logstore.completed_saga, saga_id),
                timeout=60,
            )
            if len(logstore.pods(logstore.app_lines(lines))) >= 2:
                break
    app = logstore.app_lines(lines)
    pods = sorted(logstore.pods(lines))
    FIGURES["saga"] = {"orders_placed": placed, "lines": len(lines), "pods": pods}
    assert len(logstore.pods(app)) >= 2, f"{MAX_ORDERS} sagas, each run by one app pod: {pods}"
    assert {line["kubernetes.pod_namespace"] for line in lines} == {release}
    assert {line["order_id"] for line in lines} == {order_id}
    steps = [line["step"] for line in app if line.get("_msg") == "saga step done"]
    assert steps[-1] == "confirm_order", steps
    # every line carries the saga's one trace: the request's, each hop's, the job's once it ran
    traces = {line.get("trace_id") for line in lines}
    assert len(traces) == 1 and None not in traces, traces
    trace_id = str(traces.pop())

    # The same lines by each of the three ids (the app's: the job may land in between).
    def key(found: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
        return [(line["_time"], line[POD], line["_msg"]) for line in logstore.app_lines(found)]

    assert key(logstore.saga_lines("order_id", order_id)) == key(lines)
    assert key(logstore.saga_lines("trace_id", trace_id)) == key(lines)


def test_every_pod_of_the_release_has_its_lines_in_the_store(release: str) -> None:
    """The data layer, the console, the job workers: not only the app. Collected by the node
    agents from the kubelet's files, so a pod needs nothing to be in the store."""
    running = {
        p["metadata"]["name"]
        for p in kubectl_json("get", "pods", "-n", release)["items"]
        if p["status"].get("phase") == "Running"
    }

    seen: dict[str, int] = {}

    def every_pod_seen() -> bool:
        rows = logstore.query(
            f"kubernetes.pod_namespace:={logstore.quoted(release)} | stats by ({POD}) count() n"
        )
        seen.clear()
        seen.update({row[POD]: int(row["n"]) for row in rows})
        return running <= set(seen)

    try:
        wait_for(
            "a line of every running pod of the release in the store", every_pod_seen, timeout=90
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; none from {sorted(running - set(seen))}") from None
    FIGURES["lines_per_pod"] = dict(sorted(seen.items()))
    FIGURES["store_and_agents_usage"] = pod_usage(logstore.NAMESPACE)


def test_the_store_s_web_ui_and_api_answer_on_the_host() -> None:
    page = logstore.get("/select/vmui/")
    assert page.status_code == 200
    assert "<html" in page.text.lower()
    # the store's own namespace is left out of the collection
    assert logstore.query(f"kubernetes.pod_namespace:={logstore.quoted(logstore.NAMESPACE)}") == []
