"""Which metrics the chart's PrometheusRule and Grafana dashboards query, read from
rendered objects (``helm.render``).

Shared by tests/unit/test_chart_monitoring.py (checked against the app's metric registry)
and tests/integration/test_app_metrics_scrape.py (checked against a scrape of a running
app): ``import chart_metrics`` in the unit tier, ``from tests.unit import chart_metrics``
elsewhere. Pure: no helm, no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

# helm.render(extra=MONITORING_API) renders the ServiceMonitor and PrometheusRule.
MONITORING_API = ["--api-versions", "monitoring.coreos.com/v1"]

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
    "absent", "by", "and", "or", "le", "on", "without", "time",
}  # fmt: skip
# Grafana template variables ($namespace, $job) once the "$" is stripped.
DASHBOARD_VARIABLES = {"namespace", "job"}

Manifest = dict[str, Any]


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (labels, ranges, grouping and functions dropped)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_labels)
    without_grouping = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", without_ranges)
    tokens = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_grouping))
    return {t for t in tokens if t not in PROMQL_FUNCTIONS and not re.fullmatch(r"e\d*", t)}


def rule_groups(objects: Iterable[Manifest]) -> list[dict[str, Any]]:
    """The groups of the one rendered PrometheusRule."""
    (rule,) = [o for o in objects if o.get("kind") == "PrometheusRule"]
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def rule_metrics(groups: Iterable[dict[str, Any]]) -> dict[str, set[str]]:
    """alert (or record) name -> the metric names its expression uses."""
    return {
        r.get("alert") or r.get("record"): metric_names(r["expr"])
        for g in groups
        for r in g["rules"]
    }


def dashboards(objects: Iterable[Manifest]) -> dict[str, dict[str, Any]]:
    """'<ConfigMap name>/<file>' -> the parsed dashboard, for every Grafana dashboard ConfigMap."""
    return {
        f"{cm['metadata']['name']}/{key}": json.loads(text)
        for cm in objects
        if cm.get("kind") == "ConfigMap"
        and cm["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
        for key, text in cm["data"].items()
    }


def dashboard_exprs(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def dashboard_metrics(board: dict[str, Any]) -> set[str]:
    """Metric names a dashboard queries (template variables dropped)."""
    used: set[str] = set()
    for expr in dashboard_exprs(board):
        used |= metric_names(expr.replace("$", ""))
    return used - DASHBOARD_VARIABLES


def app_metrics_used(objects: Iterable[Manifest]) -> dict[str, set[str]]:
    """Every metric of the app (not FOREIGN_METRICS) that the rendered PrometheusRule or a
    dashboard uses -> where: {"alert SagaOutboxLag", "dashboard <cm>/<file>", ...}."""
    objects = list(objects)
    where: dict[str, set[str]] = {}
    for alert, names in rule_metrics(rule_groups(objects)).items():
        for name in names - FOREIGN_METRICS:
            where.setdefault(name, set()).add(f"alert {alert}")
    for board_name, board in dashboards(objects).items():
        for name in dashboard_metrics(board) - FOREIGN_METRICS:
            where.setdefault(name, set()).add(f"dashboard {board_name}")
    return where
