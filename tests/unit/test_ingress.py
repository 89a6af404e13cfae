"""The way in on the local cluster: the controller `make up` runs (ci/ingress/manifests/)
and the local profile's routes to it, checked against each other. The e2e tier sends
requests through them (tests/e2e/test_ingress.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import k8s_openapi
import pytest
import yaml
from helm import RELEASE, REPO_ROOT, helm, one, pod_spec, render
from kind_config import kind_config

INGRESS_DIR = REPO_ROOT / "ci" / "ingress"
LOCAL = REPO_ROOT / "values" / "local.yaml"
APP = f"{RELEASE}-saga-stack"
CONTROLLER_NAMESPACE = "saga-ingress"


def manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((INGRESS_DIR / "manifests").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def shell_defaults(path: Path) -> dict[str, str]:
    """KEY=value and : "${KEY:=value}" assignments of a sourced shell file."""
    text = path.read_text()
    found: dict[str, str] = dict(re.findall(r'^: "\$\{(\w+):=([^}]*)\}"', text, re.M))
    for line in re.findall(r"^((?:\w+=\S+ ?)+)$", text, re.M):
        found.update(tuple(pair.split("=", 1)) for pair in line.split())
    return found


PORTS = shell_defaults(REPO_ROOT / "ci" / "cluster" / "lib.sh")
VERSIONS = shell_defaults(REPO_ROOT / "ci" / "versions.sh")


def traefik() -> dict[str, Any]:
    deployment: dict[str, Any] = one(manifests(), "Deployment", "traefik")
    return deployment


def entry_points() -> dict[str, int]:
    args = pod_spec(traefik())["containers"][0]["args"]
    return {
        m.group(1): int(m.group(2))
        for a in args
        if (m := re.fullmatch(r"--entryPoints\.(\w+)\.address=:(\d+)", a))
    }


def test_the_controller_objects_validate(k8s_schemas: list[str]) -> None:
    for version in k8s_schemas:
        for obj in manifests():
            assert k8s_openapi.validate(obj, version) == [], (version, obj["kind"])


def test_the_controller_runs_restricted_from_the_pinned_image() -> None:
    namespace = one(manifests(), "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    spec = pod_spec(traefik())
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    assert container["image"] == f"saga-stack.local/traefik:{VERSIONS['TRAEFIK_VERSION']}"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"]["limits"]["memory"]
    # what stays off (ci/ingress/README.md): the API and dashboard, HTTP/3, the CRD provider
    args = " ".join(container["args"])
    assert "--api" not in args and "http3" not in args.lower()
    assert "kubernetesCRD" not in args and "--global.sendAnonymousUsage=false" in args


def test_the_host_ports_reach_the_entry_points_the_gateway_listens_on() -> None:
    service = one(manifests(), "Service", "traefik")
    node_ports = {p["name"]: p["nodePort"] for p in service["spec"]["ports"] if "nodePort" in p}
    assert node_ports == {
        "web": int(PORTS["INGRESS_NODE_PORT_HTTP"]),
        "websecure": int(PORTS["INGRESS_NODE_PORT_HTTPS"]),
    }
    targets = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    ports = {p["name"]: p["containerPort"] for p in pod_spec(traefik())["containers"][0]["ports"]}
    assert {name: ports[targets[name]] for name in node_ports} == {
        name: entry_points()[name] for name in node_ports
    }
    gateway = one(manifests(), "Gateway", "saga-gateway")
    listeners = {x["protocol"]: x["port"] for x in gateway["spec"]["listeners"]}
    assert listeners == {"HTTP": entry_points()["web"], "HTTPS": entry_points()["websecure"]}
    # kind publishes those NodePorts on the host in both modes (ci/cluster/kind-config.sh)
    for args in ([], ["--offline"]):
        (control_plane,) = [n for n in kind_config(*args)["nodes"] if n["role"] == "control-plane"]
        assert {
            (m["hostPort"], m["containerPort"], m["listenAddress"])
            for m in control_plane["extraPortMappings"]
        } == {
            (int(PORTS["INGRESS_HTTP_PORT"]), int(PORTS["INGRESS_NODE_PORT_HTTP"]), "127.0.0.1"),
            (int(PORTS["INGRESS_HTTPS_PORT"]), int(PORTS["INGRESS_NODE_PORT_HTTPS"]), "127.0.0.1"),
        }


def test_the_local_profile_routes_the_app_and_console_through_the_controller() -> None:
    objects = render([LOCAL])
    ingress_class = one(manifests(), "IngressClass")["metadata"]["name"]
    gateway = one(manifests(), "Gateway", "saga-gateway")
    app_ingress = one(objects, "Ingress", APP)
    assert app_ingress["spec"]["ingressClassName"] == ingress_class
    (rule,) = app_ingress["spec"]["rules"]
    assert rule["host"] == "saga.localhost"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": APP, "port": {"name": "http"}}
    console_ingress = one(objects, "Ingress", f"{APP}-console")
    assert console_ingress["spec"]["ingressClassName"] == ingress_class
    assert [r["host"] for r in console_ingress["spec"]["rules"]] == ["console.saga.localhost"]
    route = one(objects, "HTTPRoute", APP)
    assert route["spec"]["parentRefs"] == [
        {"name": gateway["metadata"]["name"], "namespace": gateway["metadata"]["namespace"]}
    ]
    assert route["spec"]["hostnames"] == ["gateway.saga.localhost"]
    # every name is one the local certificate covers (ci/ingress/up.sh)
    for host in ("saga.localhost", "gateway.saga.localhost", "console.saga.localhost"):
        assert host == "saga.localhost" or host.endswith(".saga.localhost")


# Traefik's own default for --serversTransport.forwardingTimeouts.idleConnTimeout.
CONTROLLER_DEFAULT_IDLE_SECONDS = 90


def test_the_pods_outlast_the_controller_s_idle_connections() -> None:
    """The controller reuses a pooled connection until its idle timeout; a pod that closes
    it first, at the instant a request goes out on it, makes that request a 502."""
    args = pod_spec(traefik())["containers"][0]["args"]
    overrides = [
        int(m.group(1))
        for a in args
        if (m := re.fullmatch(r"--serversTransport\.forwardingTimeouts\.idleConnTimeout=(\d+)s", a))
    ]
    idle = max(overrides, default=CONTROLLER_DEFAULT_IDLE_SECONDS)
    objects = render([LOCAL])
    app_seconds = int(one(objects, "ConfigMap", APP)["data"]["HTTP_KEEP_ALIVE_SECONDS"])
    console = pod_spec(one(objects, "Deployment", f"{APP}-console"))["containers"][0]
    env = {e["name"]: e.get("value") for e in console["env"]}
    assert app_seconds > idle
    assert int(env["HTTP_KEEP_ALIVE_SECONDS"]) > idle


def test_the_local_profile_lets_the_controller_through_the_policies() -> None:
    objects = render([LOCAL])
    controller = {"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": CONTROLLER_NAMESPACE}}}  # fmt: skip
    for name in (f"{APP}-app", f"{APP}-console"):
        policy = one(objects, "NetworkPolicy", name)
        peers = [peer for rule in policy["spec"]["ingress"] for peer in rule.get("from", [])]
        assert controller in peers, name


def notes(*args: str) -> str:
    proc = helm("install", RELEASE, str(REPO_ROOT / "charts" / "saga-stack"), "--dry-run=client",
                "-n", "saga", *args)  # fmt: skip
    text: str = proc.stdout.split("NOTES:", 1)[1]
    return text


def test_notes_give_the_urls_on_the_published_ports() -> None:
    text = notes("-f", str(LOCAL))
    assert "http://saga.localhost:8080/   (Ingress, class traefik)" in text
    assert "https://saga.localhost:8443/   (Ingress, class traefik)" in text
    assert "http://gateway.saga.localhost:8080/   (Gateway API HTTPRoute)" in text
    assert "http://console.saga.localhost:8080/   (Ingress)" in text
    assert "curl -s -X POST http://saga.localhost:8080/orders" in text
    # the port-forward stays clear of the port the ingress holds
    assert "port-forward service/saga-saga-stack 8090:80" in text


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, "curl -s -X POST localhost:8080/orders"),
        ({"ingress.enabled": "true"}, "curl -s -X POST http://saga.local/orders"),
        (
            {"ingress.enabled": "true", "clientPorts.http": "8000"},
            "curl -s -X POST http://saga.local:8000/orders",
        ),
    ],
)
def test_notes_send_the_examples_where_the_app_is_reached(
    values: dict[str, str], expected: str
) -> None:
    sets = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
    assert expected in notes(*sets)


def test_load_runs_of_the_local_profile_come_in_through_the_controller() -> None:
    objects = render([LOCAL], {"loadGenerator.enabled": True})
    (job,) = [o for o in objects if o["kind"] == "Job" and "-load-" in o["metadata"]["name"]]
    env = {e["name"]: e.get("value") for e in pod_spec(job)["containers"][0]["env"]}
    service = one(manifests(), "Service", "traefik")
    meta = service["metadata"]
    assert env["LOADGEN_TARGET"] == f"http://{meta['name']}.{meta['namespace']}.svc.cluster.local"
    assert env["LOADGEN_HOST"] == "saga.localhost"
    policy = one(objects, "NetworkPolicy", f"{APP}-load-generator")
    peers = [peer for rule in policy["spec"]["egress"] for peer in rule.get("to", [])]
    assert {"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": meta["namespace"]}}} in peers  # fmt: skip
    # the Service's port 80 is the entry point the Ingress is served on
    (web,) = [p for p in service["spec"]["ports"] if p["port"] == 80]
    assert web["targetPort"] == "web"
