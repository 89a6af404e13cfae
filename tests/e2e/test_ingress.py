"""Traffic from the host through the cluster's ingress controller (Traefik, ci/ingress/),
as a user reaches the app after `make up`: the chart's Ingress and its Gateway API
HTTPRoute on the session's release, over HTTP and HTTPS on the ports the control-plane
node publishes on 127.0.0.1. The figures go to $SAGA_STACK_RESULTS/e2e-ingress.json.
"""

from __future__ import annotations

import collections
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from saga_loadgen.stats import latency_summary

from tests.e2e.cluster import APP_SELECTOR, RELEASE, kubectl, kubectl_json, ready_pods, wait_for
from tests.e2e.ingress import GATEWAY, NAMESPACE, HostClient, local_ca, pod_of, release_hosts
from tests.e2e.releases import write_figures

APP = f"{RELEASE}-saga-stack"
FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="module")
def ca() -> ssl.SSLContext:
    return local_ca()


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[dict[str, Any]]:
    yield from write_figures("e2e-ingress.json", FIGURES)


def conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status.get("conditions", [])}


def test_the_gateway_and_the_routes_report_accepted_and_programmed(release: str) -> None:
    gateway = kubectl_json("get", "gateway", GATEWAY, "-n", NAMESPACE)
    want = {("Accepted", "True"), ("Programmed", "True")}
    assert conditions(gateway["status"]).items() >= want, gateway["status"]
    for listener in gateway["status"]["listeners"]:
        assert conditions(listener).get("Programmed") == "True", listener
    route = kubectl_json("get", "httproute", APP, "-n", release)
    parents = route["status"]["parents"]
    assert [p["controllerName"] for p in parents] == ["traefik.io/gateway-controller"], parents
    assert conditions(parents[0]).items() >= {("Accepted", "True"), ("ResolvedRefs", "True")}, (
        parents
    )
    assert route["spec"]["hostnames"] == [release_hosts(release)["httpRoute"]]
    # the Ingress is Traefik's: it published its Service's address in the status
    ingress = kubectl_json("get", "ingress", APP, "-n", release)
    assert ingress["spec"]["ingressClassName"] == "traefik"
    assert ingress["status"]["loadBalancer"].get("ingress"), ingress["status"]


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("route", ["ingress", "httpRoute"])
def test_a_saga_placed_from_the_host_completes(
    release: str, ca: ssl.SSLContext, route: str, scheme: str
) -> None:
    with HostClient(scheme, release_hosts(release)[route], ca) as client:
        status, _, _ = client.call("PUT", "/stock/host-sku", {"quantity": 1000})
        assert status == 200
        status, body, headers = client.place_order(f"host-{route}-{scheme}", "host-sku")
        assert status == 202, body
        assert client.wait_final(body["order_id"]) == "CONFIRMED"
        assert pod_of(headers).startswith(APP)


def test_the_certificate_names_the_host_and_nothing_else_is_trusted(
    release: str, ca: ssl.SSLContext
) -> None:
    host = release_hosts(release)["ingress"]
    with (
        HostClient("https", host, ssl.create_default_context()) as system_trust,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        system_trust.call("GET", "/healthz/ready")
    with (
        HostClient("https", "other.example", ca) as other_name,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        other_name.call("GET", "/healthz/ready")
    with HostClient("https", host, ca) as client:
        assert client.call("GET", "/healthz/ready")[0] == 200


def test_requests_through_the_ingress_spread_over_every_app_pod(release: str) -> None:
    """One keep-alive connection from the host: Traefik balances per request, not per
    connection, so every pod gets a share even from a single client connection."""
    pods = {p["metadata"]["name"] for p in ready_pods(release, APP_SELECTOR)}
    served: collections.Counter[str] = collections.Counter()
    with HostClient("http", release_hosts(release)["ingress"]) as client:
        for _ in range(200):
            status, _, headers = client.call("GET", "/healthz/ready")
            assert status == 200
            served[pod_of(headers)] += 1
    total = sum(served.values())
    shares = {pod: round(n / total, 3) for pod, n in sorted(served.items())}
    FIGURES["spread"] = {"requests": total, "connections": 1, "pods": len(pods), "share": shares}
    assert set(served) == pods, f"served by {shares}, Ready pods {sorted(pods)}"
    # round robin over N pods: each share is 1/N give or take a pod change mid-run
    assert min(shares.values()) >= 0.5 / len(pods), shares


def test_an_app_pod_deleted_while_orders_run_through_the_ingress_fails_none(
    release: str,
) -> None:
    """Four keep-alive clients send orders at about 20/s in all while an app pod is
    deleted and replaced; every request is answered 202, and every order ends."""
    host = release_hosts(release)["ingress"]
    with HostClient("http", host) as client:
        assert client.call("PUT", "/stock/drain-sku", {"quantity": 100000})[0] == 200
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def sender(index: int) -> None:
        n = 0
        with HostClient("http", host) as client:
            while not stop.is_set():
                n += 1
                began = time.monotonic()
                try:
                    status, body, headers = client.place_order(f"drain-{index}-{n}", "drain-sku")
                    row = {"status": status, "order": body.get("order_id"), "pod": pod_of(headers)}
                except Exception as exc:  # a refused or cut connection is a failed request too
                    row = {"status": 0, "error": f"{type(exc).__name__}: {exc}"}
                row["seconds"] = time.monotonic() - began
                with lock:
                    results.append(row)
                stop.wait(max(0.0, 0.2 - (time.monotonic() - began)))

    threads = [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for("40 orders through the ingress", lambda: len(results) >= 40 or None, timeout=60)
        before = {p["metadata"]["name"] for p in ready_pods(release, APP_SELECTOR)}
        victim = sorted(before)[0]
        deleted_at = len(results)
        kubectl("delete", "pod", victim, "-n", release, "--wait=false")
        wait_for(
            "the deleted pod gone and as many app pods Ready as before",
            lambda: (
                (
                    (names := {p["metadata"]["name"] for p in ready_pods(release, APP_SELECTOR)})
                    and victim not in names
                    and len(names) >= len(before)
                )
                or None
            ),
            timeout=180,
        )
        replaced_at = len(results)
        wait_for("40 more orders", lambda: len(results) >= replaced_at + 40 or None, timeout=60)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    failed = [r for r in results if r["status"] != 202]
    by_pod = collections.Counter(str(r.get("pod")) for r in results[deleted_at:])
    FIGURES["pod_deleted"] = {
        "requests": len(results),
        "during_replacement": replaced_at - deleted_at,
        "failed": len(failed),
        "failures": failed[:10],
        "deleted_pod_answered_after_delete": by_pod.get(victim, 0),
        "post_latency_ms": latency_summary(r["seconds"] for r in results),
    }
    assert not failed, FIGURES["pod_deleted"]
    with HostClient("http", host) as client:
        finals = collections.Counter(client.wait_final(r["order"]) for r in results)
    assert set(finals) == {"CONFIRMED"}, finals
