"""Monitoring objects: rendered when the Prometheus Operator API exists, rules that
parse, dashboards that are valid JSON, and only metrics the app really exports."""

from __future__ import annotations

import subprocess
from pathlib import Path

import chart_metrics
import k8s_openapi
import pytest
import yaml
from chart_metrics import FOREIGN_METRICS, MONITORING_API, metric_names
from helm import REPO_ROOT, find, one, render
from prometheus_client import REGISTRY
from saga_service.observability import metrics as app_metrics

PROMTOOL = REPO_ROOT / ".tools" / "bin" / "promtool"


def _app_metric_names() -> set[str]:
    """Every sample name the app's collectors produce (counters' _total, histograms' _bucket...)."""
    assert app_metrics.SAGAS_STARTED  # the module registered its collectors on import
    names: set[str] = set()
    for collector in list(REGISTRY._collector_to_names):
        names.update(REGISTRY._collector_to_names[collector])
    return {n for n in names if n.startswith("saga_")}


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
    groups: list[dict[str, object]] = chart_metrics.rule_groups(render(extra=MONITORING_API))
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
    used: set[str] = set().union(*chart_metrics.rule_metrics(rule_groups).values())
    assert used - FOREIGN_METRICS <= exported, sorted(used - FOREIGN_METRICS - exported)
    assert used & exported, "the rules should use the app's own metrics"


def test_dashboards_are_valid_and_use_only_exported_metrics() -> None:
    boards = chart_metrics.dashboards(render())
    assert boards, "no dashboard ConfigMap rendered"
    exported = _app_metric_names()
    for name, board in boards.items():
        assert board["uid"] and board["title"], name
        assert chart_metrics.dashboard_exprs(board), f"{name} has no queries"
        unknown = chart_metrics.dashboard_metrics(board) - FOREIGN_METRICS - exported
        assert not unknown, f"{name} queries metrics the app does not export: {sorted(unknown)}"
    assert not find(
        render(values={"monitoring.dashboards.enabled": False}),
        "ConfigMap",
        "saga-saga-stack-dashboard-saga-overview",
    )


def test_metric_name_extraction() -> None:
    assert metric_names('sum(rate(saga_started_total{job="x"}[5m])) > 1e-9') == {
        "saga_started_total"
    }
    assert metric_names(
        "histogram_quantile(0.99, sum by (le, step) (rate(saga_step_duration_seconds_bucket"
        '{namespace="$namespace"}[5m])))'
    ) == {"saga_step_duration_seconds_bucket"}


def test_app_metrics_used_names_where_each_is_used() -> None:
    used = chart_metrics.app_metrics_used(render(extra=MONITORING_API))
    assert "alert SagaOutboxLag" in used["saga_outbox_lag_seconds"]
    assert any(w.startswith("dashboard ") for w in used["saga_started_total"])
    assert not set(used) & FOREIGN_METRICS
    assert set(used) <= _app_metric_names()
