"""The console's chart objects: off by default; when on, a restricted Deployment of the app
image running `saga-console`, its own ServiceAccount without a token, a NetworkPolicy that lets
it reach only the app's HTTP port, Prometheus and DNS, and the dashboards mounted from the
very ConfigMaps Grafana loads."""

from __future__ import annotations

from typing import Any

import k8s_openapi
import pytest
from helm import CHART, NAMESPACE, RELEASE, find, helm, one, pod_spec, render
from saga_console.server import ConsoleSettings

APP = f"{RELEASE}-saga-stack"
CONSOLE = f"{APP}-console"
ON = {"console.enabled": True}


def console_objects(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [
        o
        for o in render(values={**ON, **(values or {})})
        if o["metadata"]["labels"].get("app.kubernetes.io/component") == "console"
    ]


def env(deployment: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod_spec(deployment)["containers"][0]["env"]}


def test_off_by_default() -> None:
    objects = render()
    assert not [
        o
        for o in objects
        if o["metadata"]["labels"].get("app.kubernetes.io/component") == "console"
    ]


def test_objects_and_their_schemas(k8s_schemas: list[str]) -> None:
    objects = console_objects(
        {
            "console.ingress.enabled": True,
            "console.ingress.hosts": [
                {"host": "console.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}
            ],
            "console.httpRoute.enabled": True,
            "console.httpRoute.parentRefs": [{"name": "public"}],
        }
    )
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == [
        "Deployment",
        "HTTPRoute",
        "Ingress",
        "NetworkPolicy",
        "Service",
        "ServiceAccount",
    ]
    assert all(o["metadata"]["name"] == CONSOLE for o in objects)
    assert k8s_openapi.schema_errors(objects, k8s_schemas) == []


def test_deployment_runs_the_app_image_with_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render(values={**ON, "console.refreshSeconds": 30})
    console = one(objects, "Deployment", CONSOLE)
    app = one(objects, "Deployment", APP)
    container = pod_spec(console)["containers"][0]
    assert container["command"] == ["saga-console"] and "args" not in container
    assert container["image"] == pod_spec(app)["containers"][0]["image"]
    values = env(console)
    assert values["CONSOLE_APP_URL"] == f"http://{APP}:80"
    assert values["CONSOLE_PROMETHEUS_URL"] == "http://prometheus.saga-monitoring.svc:9090"
    assert values["CONSOLE_NAMESPACE"] == NAMESPACE
    assert values["CONSOLE_JOB"] == APP
    # What the chart sets is what the console's own settings accept.
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = ConsoleSettings()
    assert settings.console_refresh_seconds == 30 and settings.port == 8080
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz/live"
    spec = pod_spec(console)
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == CONSOLE
    assert one(objects, "ServiceAccount", CONSOLE)["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["tmp"]["mountPath"] == "/tmp"
    assert mounts["dashboards"]["readOnly"] is True
    assert mounts["dashboards"]["mountPath"] == values["CONSOLE_DASHBOARDS_DIR"]


def test_own_image_when_set() -> None:
    console = one(
        render(values={**ON, "console.image.repository": "reg/console", "console.image.tag": "7"}),
        "Deployment",
        CONSOLE,
    )
    assert pod_spec(console)["containers"][0]["image"] == "reg/console:7"


@pytest.mark.parametrize("grafana", [True, False])
def test_dashboards_come_from_the_grafana_configmaps(grafana: bool) -> None:
    objects = render(values={**ON, "monitoring.dashboards.enabled": grafana})
    files = sorted(p.name for p in (CHART / "dashboards").glob("*.json"))
    configmaps = [
        cm for cm in find(objects, "ConfigMap") if "-dashboard-" in cm["metadata"]["name"]
    ]
    assert sorted(k for cm in configmaps for k in cm["data"]) == files
    # Grafana's sidecar label only when Grafana's dashboards were asked for.
    assert all(("grafana_dashboard" in cm["metadata"]["labels"]) is grafana for cm in configmaps)
    volume = next(
        v
        for v in pod_spec(one(objects, "Deployment", CONSOLE))["volumes"]
        if v["name"] == "dashboards"
    )
    projected = sorted(s["configMap"]["name"] for s in volume["projected"]["sources"])
    assert projected == sorted(cm["metadata"]["name"] for cm in configmaps)


def test_network_policy_admits_only_the_app_prometheus_and_dns() -> None:
    objects = render(
        values={
            **ON,
            "console.prometheusUrl": "https://prom.example.svc",
            "console.extraIngressFrom": [{"namespaceSelector": {"matchLabels": {"x": "y"}}}],
        }
    )
    policy = one(objects, "NetworkPolicy", CONSOLE)
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "console"
    assert spec["ingress"][0]["from"] == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"x": "y"}}},
    ]
    egress = spec["egress"]
    assert [sorted(p["port"] for p in rule["ports"]) for rule in egress] == [
        [53, 53],
        ["http"],
        [443],  # the scheme's port when the URL names none
    ]
    app_pods = one(objects, "Deployment", APP)["spec"]["template"]["metadata"]["labels"]
    assert egress[1]["to"][0]["podSelector"]["matchLabels"].items() <= app_pods.items()
    assert egress[2]["to"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "prometheus"
    }
    # The app's own policy (data layer egress) must not select the console's pods.
    console_pods = one(objects, "Deployment", CONSOLE)["spec"]["template"]["metadata"]["labels"]
    for other in find(objects, "NetworkPolicy"):
        if other["metadata"]["name"] in (CONSOLE, f"{APP}-default-deny"):
            continue
        selector = other["spec"]["podSelector"].get("matchLabels", {})
        assert not selector.items() <= console_pods.items(), other["metadata"]["name"]


def test_notes_tell_how_to_reach_the_console() -> None:
    proc = helm(
        "install",
        RELEASE,
        str(CHART),
        "--dry-run=client",
        "--namespace",
        NAMESPACE,
        "--set",
        "console.enabled=true",
    )
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert f"port-forward service/{CONSOLE} 8081:80" in notes
    default = helm("install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE)
    assert "Console" not in default.stdout.split("NOTES:", 1)[1]
