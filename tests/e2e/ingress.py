"""The way in from the host: the cluster's Traefik (ci/ingress/) on the ports the
control-plane node publishes on 127.0.0.1, as a user's browser or curl reaches it.

Names under .localhost reach 127.0.0.1 in browsers and curl without an /etc/hosts entry,
but not through the C library's resolver that Python uses: a client here connects to
127.0.0.1 and names the host in the Host header and, over HTTPS, in the TLS server name,
which is what such a client sends.
"""

from __future__ import annotations

import json
import os
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from tests.e2e.cluster import kubectl_json

NAMESPACE = "saga-ingress"
GATEWAY = "saga-gateway"
# ci/cluster/lib.sh: INGRESS_HTTP_PORT / INGRESS_HTTPS_PORT
PORTS = {
    "http": int(os.environ.get("INGRESS_HTTP_PORT", "8080")),
    "https": int(os.environ.get("INGRESS_HTTPS_PORT", "8443")),
}


def release_hosts(namespace: str) -> dict[str, str]:
    """The host names a release of the e2e tier answers on: its own, so that releases up
    at the same time do not share a route. Covered by the local certificate (*.saga.localhost)."""
    return {
        "ingress": f"{namespace}.saga.localhost",
        "httpRoute": f"{namespace}-gw.saga.localhost",
        "console": f"{namespace}-console.saga.localhost",
    }


def release_host_values(namespace: str) -> list[str]:
    """helm arguments that give a release of the local profile its own host names."""
    hosts = release_hosts(namespace)

    def rules(host: str) -> str:
        return json.dumps([{"host": host, "paths": [{"path": "/", "pathType": "Prefix"}]}])

    return [
        "--set-json", f"ingress.hosts={rules(hosts['ingress'])}",
        "--set-json", f"httpRoute.hostnames={json.dumps([hosts['httpRoute']])}",
        "--set-json", f"console.ingress.hosts={rules(hosts['console'])}",
    ]  # fmt: skip


def local_ca() -> ssl.SSLContext:
    """Trusts the CA that made the controller's certificate (ci/ingress/up.sh publishes it
    as a ConfigMap), and nothing else."""
    pem = kubectl_json("get", "configmap", "saga-ingress-ca", "-n", NAMESPACE)["data"]["ca.crt"]
    return ssl.create_default_context(cadata=pem)


def pod_of(headers: httpx.Headers) -> str:
    """The pod that answered: `x-served-by` is "<pod>-<pid>-<random>"."""
    return str(headers["x-served-by"]).rsplit("-", 2)[0]


class HostClient:
    """HTTP(S) to one host name through the published port: keep-alive, like most clients."""

    def __init__(self, scheme: str, host: str, context: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.scheme = scheme
        self._client = httpx.Client(
            base_url=f"{scheme}://127.0.0.1:{PORTS[scheme]}",
            headers={"host": host},
            verify=context if context is not None else True,
            timeout=10,
        )

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, httpx.Headers]:
        response = self._client.request(
            method, path, json=body, headers=headers, extensions={"sni_hostname": self.host}
        )
        text = response.text
        parsed = json.loads(text) if text and text.lstrip().startswith(("{", "[")) else text
        return response.status_code, parsed, response.headers

    def place_order(self, customer: str, sku: str) -> tuple[int, Any, httpx.Headers]:
        return self.call(
            "POST",
            "/orders",
            {
                "customer_id": customer,
                "items": [{"sku": sku, "quantity": 1, "unit_price_cents": 100}],
            },
        )

    def wait_final(self, order_id: str, timeout: float = 120) -> str:
        """The order's status once it is no longer PENDING, or PENDING after `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body, _ = self.call("GET", f"/orders/{order_id}")
            if status == 200 and body["status"] != "PENDING":
                return str(body["status"])
            time.sleep(0.5)
        return "PENDING"

    def __enter__(self) -> HostClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()


@dataclass(frozen=True, slots=True)
class Confirmed:
    """An order placed through the ingress and confirmed: the answer to its POST."""

    order_id: str
    saga_id: str
    trace_id: str
    request_span_id: str  # the POST's span, from the answer's traceparent


def confirmed_orders(client: HostClient, prefix: str, count: int) -> Iterator[Confirmed]:
    """Up to `count` orders, one at a time, each yielded once its saga confirmed it (stock
    for all of them is put in place first)."""
    status, body, _ = client.call("PUT", f"/stock/{prefix}-sku", {"quantity": count})
    assert status == 200, body
    for n in range(1, count + 1):
        status, body, headers = client.place_order(f"{prefix}-{n}", f"{prefix}-sku")
        assert status == 202, body
        assert client.wait_final(body["order_id"]) == "CONFIRMED", body
        # 00-<trace id>-<span id>-<flags>
        _, trace_id, span_id, _ = headers["traceparent"].split("-")
        yield Confirmed(str(body["order_id"]), str(body["saga_id"]), trace_id, span_id)
