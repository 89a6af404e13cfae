"""Spans (`tracing.*`): off by default; with an endpoint, the app and the job workers get
OpenTelemetry's own variables (endpoint, service name, sampler, their pod's place as resource
attributes) and a NetworkPolicy egress to the collector only, on the endpoint's port."""

from __future__ import annotations

from typing import Any

import pytest
from helm import RELEASE, REPO_ROOT, find, one, pod_spec, render, render_error

APP = f"{RELEASE}-saga-stack"
WORKER = f"{APP}-worker"
PEERS = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traces"}}}]
ON = {
    "jobs.enabled": True,
    "tracing.otlpEndpoint": "http://collector.traces.svc:4318",
    "tracing.collectorPeers": PEERS,
}


def app_config(objects: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = one(objects, "ConfigMap", APP)["data"]
    return data


def env_names(objects: list[dict[str, Any]], deployment: str) -> list[str]:
    container = pod_spec(one(objects, "Deployment", deployment))["containers"][0]
    return [e["name"] for e in container["env"]]


def egress_ports_to(policy: dict[str, Any], peers: list[dict[str, Any]]) -> list[int]:
    return [
        p["port"]
        for rule in policy["spec"].get("egress", [])
        if rule.get("to") == peers
        for p in rule["ports"]
    ]


def test_off_by_default() -> None:
    objects = render(values={"jobs.enabled": True})
    assert not [k for k in app_config(objects) if k.startswith("OTEL_")]
    assert "OTEL_RESOURCE_ATTRIBUTES" not in env_names(objects, APP)


def test_the_app_and_the_workers_get_the_sdk_s_variables_and_their_pod_s_place() -> None:
    objects = render(values={**ON, "tracing.sampleRatio": 0.25})
    assert {k: v for k, v in app_config(objects).items() if k.startswith("OTEL_")} == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.traces.svc:4318",
        "OTEL_SERVICE_NAME": "saga-service",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
    }
    for deployment in (APP, WORKER):
        names = env_names(objects, deployment)
        # a $(VAR) reference resolves only to variables defined before it
        assert names.index("POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES"), names
        container = pod_spec(one(objects, "Deployment", deployment))["containers"][0]
        attributes = next(e for e in container["env"] if e["name"] == "OTEL_RESOURCE_ATTRIBUTES")
        assert "k8s.pod.name=$(POD_NAME)" in attributes["value"]


@pytest.mark.parametrize(
    ("endpoint", "port"),
    [("http://collector.traces.svc:4318", 4318), ("https://otlp.example.com", 443)],
)
def test_egress_reaches_the_collector_peers_on_the_endpoint_s_port(
    endpoint: str, port: int
) -> None:
    objects = render(values={**ON, "tracing.otlpEndpoint": endpoint})
    policies = {p["metadata"]["name"]: p for p in find(objects, "NetworkPolicy")}
    assert egress_ports_to(policies[f"{APP}-app"], PEERS) == [port]
    assert egress_ports_to(policies[WORKER], PEERS) == [port]


def test_off_no_policy_names_a_collector() -> None:
    objects = render(values={"jobs.enabled": True, "tracing.collectorPeers": PEERS})
    for policy in find(objects, "NetworkPolicy"):
        assert egress_ports_to(policy, PEERS) == []


def test_an_endpoint_without_peers_is_refused_while_policies_are_on() -> None:
    message = render_error(values={"tracing.otlpEndpoint": "http://collector.traces.svc:4318"})
    assert "tracing.collectorPeers is empty" in message
    # without policies there is nothing to open
    render(
        values={
            "tracing.otlpEndpoint": "http://collector.traces.svc:4318",
            "networkPolicy.enabled": False,
        }
    )


def test_the_local_profile_sends_spans_to_the_jaeger_of_make_up() -> None:
    objects = render(values_files=[REPO_ROOT / "values" / "local.yaml"])
    endpoint = app_config(objects)["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert endpoint == "http://jaeger.saga-tracing.svc:4318"
    collector = {"app.kubernetes.io/name": "jaeger"}
    policy = one(objects, "NetworkPolicy", f"{APP}-app")
    peers = [peer for rule in policy["spec"].get("egress", []) for peer in rule.get("to", [])]
    assert any(peer.get("podSelector", {}).get("matchLabels") == collector for peer in peers)
