"""Monitoring objects: rendered when the Prometheus Operator API exists, rules that
parse, dashboards that are valid JSON, and only metrics the app really exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import k8s_openapi
import pytest
import yaml
from helm import REPO_ROOT, find, one, render
from prometheus_client import REGISTRY
from saga_service import metrics as app_metrics

MONITORING_API = ["--api-versions", "monitoring.coreos.com/v1"]
PROMTOOL = REPO_ROOT / ".tools" / "bin" / "promtool"
# Metrics that come from elsewhere in a kube-prometheus-stack cluster, not from the app.
FOREIGN_METRICS = {
    "up",  # Prometheus itself
    "kube_pod_container_status_restarts_total",  # kube-state-metrics
    "kube_horizontalpodautoscaler_status_desired_replicas",  # kube-state-metrics
    "container_cpu_usage_seconds_total",  # kubelet / cAdvisor
    "container_memory_working_set_bytes",  # kubelet / cAdvisor
}
PROMQL_FUNCTIONS = {
    "sum", "rate", "increase", "clamp_min", "histogram_quantile", "max", "deriv", "count",
    "absent", "by", "and", "or", "le", "on", "without",
}  # fmt: skip


def _app_metric_names() -> set[str]:
    """Every sample name the app's collectors produce (counters' _total, histograms' _bucket...)."""
    assert app_metrics.SAGAS_STARTED  # the module registered its collectors on import
    names: set[str] = set()
    for collector in list(REGISTRY._collector_to_names):
        names.update(REGISTRY._collector_to_names[collector])
    return {n for n in names if n.startswith("saga_")}


def _metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_labels)
    without_grouping = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", without_ranges)
    tokens = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_grouping))
    return {t for t in tokens if t not in PROMQL_FUNCTIONS and not re.fullmatch(r"e\d*", t)}


def test_rendered_only_when_the_api_exists_unless_forced() -> None:
    kinds = {"ServiceMonitor", "PrometheusRule"}
    assert not {o["kind"] for o in render()} & kinds
    assert {o["kind"] for o in render(extra=MONITORING_API)} >= kinds
    assert {o["kind"] for o in render(values={"monitoring.enabled": True})} >= kinds
    assert (
        not {o["kind"] for o in render(values={"monitoring.enabled": False}, extra=MONITORING_API)}
        & kinds
    )


def test_monitoring_objects_validate_against_their_crds(k8s_schemas: list[str]) -> None:
    objects = render(values={"monitoring.labels": {"release": "kps"}}, extra=MONITORING_API)
    for kind in ("ServiceMonitor", "PrometheusRule"):
        obj = one(objects, kind)
        assert obj["metadata"]["labels"]["release"] == "kps"
        for version in k8s_schemas:
            assert k8s_openapi.validate(obj, version) == []


def test_service_monitor_scrapes_the_app_service_port() -> None:
    objects = render(extra=MONITORING_API)
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service", "saga-saga-stack")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_network_policy_lets_prometheus_scrape() -> None:
    policy = one(render(extra=MONITORING_API), "NetworkPolicy", "saga-saga-stack-app")
    peers = policy["spec"]["ingress"][0]["from"]
    assert {"app.kubernetes.io/name": "prometheus"} in [
        p.get("podSelector", {}).get("matchLabels") for p in peers
    ]


@pytest.fixture(scope="module")
def rule_groups() -> list[dict[str, object]]:
    rule = one(render(extra=MONITORING_API), "PrometheusRule")
    groups: list[dict[str, object]] = rule["spec"]["groups"]
    return groups


def test_rules_pass_promtool(rule_groups: list[dict[str, object]], tmp_path: Path) -> None:
    assert PROMTOOL.is_file(), "promtool missing: run `ci/bootstrap.sh --promtool` (make tools)"
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule_groups}))
    proc = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(rules_file)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_really_rejects_a_broken_rule(tmp_path: Path) -> None:
    rules_file = tmp_path / "broken.yaml"
    rules_file.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "sum(rate(x[5m])"}]}]}
        )
    )
    proc = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(rules_file)], capture_output=True, text=True
    )
    assert proc.returncode != 0


def test_alerts_cover_what_matters(rule_groups: list[dict[str, object]]) -> None:
    alerts = {r["alert"] for g in rule_groups for r in g["rules"]}  # type: ignore[attr-defined]
    assert alerts >= {
        "SagaCompensationRateHigh",
        "SagaLatencyP99High",
        "SagaLockContention",
        "SagaOutboxLag",
        "SagaBacklogGrowing",
        "SagaPodRestarting",
    }


def test_rules_use_only_metrics_the_app_exports(rule_groups: list[dict[str, object]]) -> None:
    exported = _app_metric_names()
    used = {m for g in rule_groups for r in g["rules"] for m in _metric_names(r["expr"])}  # type: ignore[attr-defined]
    assert used - FOREIGN_METRICS <= exported, sorted(used - FOREIGN_METRICS - exported)
    assert used & exported, "the rules should use the app's own metrics"


def test_dashboards_are_valid_and_use_only_exported_metrics() -> None:
    objects = render()
    dashboards = [
        cm
        for cm in find(objects, "ConfigMap")
        if cm["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    assert dashboards, "no dashboard ConfigMap rendered"
    exported = _app_metric_names()
    for cm in dashboards:
        for name, text in cm["data"].items():
            board = json.loads(text)
            assert board["uid"] and board["title"], name
            exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
            assert exprs, f"{name} has no queries"
            used = set().union(*(_metric_names(e.replace("$", "")) for e in exprs))
            unknown = used - FOREIGN_METRICS - exported - {"namespace", "job"}
            assert not unknown, f"{name} queries metrics the app does not export: {sorted(unknown)}"
    assert not find(
        render(values={"monitoring.dashboards.enabled": False}),
        "ConfigMap",
        "saga-saga-stack-dashboard-saga-overview",
    )


def test_metric_name_extraction() -> None:
    assert _metric_names('sum(rate(saga_started_total{job="x"}[5m])) > 1e-9') == {
        "saga_started_total"
    }
