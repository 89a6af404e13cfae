"""saga_console.dashboards: the chart's real Grafana dashboards, as the rendered ConfigMaps
carry them, translate panel by panel with every PromQL expression kept once, and their
variables substitute away; then the rules on small made-up dashboards."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from typing import Any

import chart_metrics
import pytest
from helm import CHART, NAMESPACE, RELEASE, render
from saga_console.dashboards import (
    Dashboard,
    DashboardError,
    GridPos,
    PanelKind,
    UnresolvedVariable,
    dashboards_in_configmap,
    duration,
    interval_values,
    load_dashboard,
    substitute,
    variables_in,
)

VALUES = {"namespace": NAMESPACE, "job": f"{RELEASE}-saga-stack"}
STEP = 30.0


def exprs_anywhere(node: Any) -> Iterator[str]:
    """Every "expr" in the JSON, wherever it sits: counted apart from the module under test."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from exprs_anywhere(value)
    elif isinstance(node, list):
        for item in node:
            yield from exprs_anywhere(item)


@pytest.fixture(scope="module")
def rendered() -> dict[str, tuple[dict[str, Any], Dashboard]]:
    """'<ConfigMap>/<key>' -> (the JSON as Grafana gets it, its translation)."""
    objects = render()
    boards = chart_metrics.dashboards(objects)
    translated = {
        f"{cm['metadata']['name']}/{key}": board
        for cm in objects
        if cm.get("kind") == "ConfigMap"
        and cm["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
        for key, board in dashboards_in_configmap(cm).items()
    }
    assert boards, "the chart renders no dashboard"
    assert set(translated) == set(boards)
    return {name: (boards[name], translated[name]) for name in boards}


def test_the_configmaps_carry_every_dashboard_file_of_the_chart(
    rendered: dict[str, tuple[dict[str, Any], Dashboard]],
) -> None:
    files = {p.name: json.loads(p.read_text()) for p in (CHART / "dashboards").glob("*.json")}
    carried = {name.rsplit("/", 1)[1]: raw for name, (raw, _) in rendered.items()}
    assert carried == files


def test_every_panel_of_every_dashboard_translates(
    rendered: dict[str, tuple[dict[str, Any], Dashboard]],
) -> None:
    for name, (raw, board) in rendered.items():
        assert board.uid == raw["uid"] and board.title == raw["title"], name
        assert board.unsupported == (), [(p.title, p.unsupported_reason) for p in board.panels]
        assert [p.id for p in board.panels] == [p["id"] for p in raw["panels"]], name
        for panel, source in zip(board.panels, raw["panels"], strict=True):
            assert panel.kind in (PanelKind.TIMESERIES, PanelKind.STAT), panel.title
            assert panel.title == source["title"]
            assert panel.grid == GridPos(**source["gridPos"])
            assert panel.grid.x >= 0 and panel.grid.x + panel.grid.w <= 24, panel.title
            assert panel.unit == source["fieldConfig"]["defaults"]["unit"], panel.title
            assert panel.targets, f"{panel.title} has no query"
            assert [(t.ref_id, t.expr, t.legend_format) for t in panel.targets] == [
                (t["refId"], t["expr"], t.get("legendFormat")) for t in source["targets"]
            ]


def test_every_expression_of_a_dashboard_is_in_exactly_one_panel_target(
    rendered: dict[str, tuple[dict[str, Any], Dashboard]],
) -> None:
    for name, (raw, board) in rendered.items():
        in_json = collections.Counter(exprs_anywhere(raw["panels"]))
        in_targets = collections.Counter(t.expr for p in board.panels for t in p.targets)
        assert in_targets == in_json, name
        assert sum(in_json.values()) == len(chart_metrics.dashboard_exprs(raw))


def test_the_variables_are_the_dashboards_and_substitute_away(
    rendered: dict[str, tuple[dict[str, Any], Dashboard]],
) -> None:
    for name, (_, board) in rendered.items():
        names = {v.name for v in board.variables}
        assert {"namespace", "job"} <= names, name
        for panel in board.panels:
            for target in panel.targets:
                assert variables_in(target.expr) <= names | {"__rate_interval", "__interval"}
                query = substitute(target.expr, VALUES, STEP)
                assert "$" not in query and "[[" not in query, (panel.title, query)
                if 'namespace="$namespace"' in target.expr:
                    assert f'namespace="{NAMESPACE}"' in query
        # The variables' own queries (the job list depends on the namespace) too.
        for variable in board.variables:
            if variable.query:
                assert "$" not in substitute(variable.query, VALUES, STEP), variable.name


# --- made-up dashboards: the rules --------------------------------------------------------


def panel(panel_id: int, kind: str = "timeseries", **extra: Any) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": kind,
        "title": f"panel {panel_id}",
        "gridPos": {"x": 0, "y": panel_id * 8, "w": 12, "h": 8},
        "targets": [{"refId": "A", "expr": f'up{{job="$job"}} * {panel_id}'}],
        **extra,
    }


def board(*panels: dict[str, Any]) -> dict[str, Any]:
    return {"uid": "u", "title": "t", "panels": list(panels)}


def test_a_panel_the_console_cannot_draw_is_reported_with_the_reason() -> None:
    loki = {"type": "loki", "uid": "logs"}
    translated = load_dashboard(
        board(
            panel(1),
            panel(2, "table"),
            panel(3, "graph"),
            panel(4, "singlestat"),
            panel(5, datasource=loki),
            panel(6, targets=[{"refId": "A"}]),
        )
    )
    kinds = {p.id: (p.kind, p.unsupported_reason) for p in translated.panels}
    assert kinds == {
        1: (PanelKind.TIMESERIES, None),
        2: (PanelKind.UNSUPPORTED, "panel type 'table'"),
        3: (PanelKind.TIMESERIES, None),
        4: (PanelKind.STAT, None),
        5: (PanelKind.UNSUPPORTED, f"datasource {loki!r} is not Prometheus"),
        6: (PanelKind.UNSUPPORTED, "a target without a PromQL expression"),
    }
    assert [p.id for p in translated.unsupported] == [2, 5, 6]
    assert translated.panels[1].targets, "an unsupported panel keeps its targets"


def test_the_panels_of_a_collapsed_row_are_not_lost() -> None:
    row = panel(10, "row", targets=[], panels=[panel(11), panel(12, "stat")])
    translated = load_dashboard(json.dumps(board(panel(1), row)))
    assert [(p.id, p.kind) for p in translated.panels] == [
        (1, PanelKind.TIMESERIES),
        (10, PanelKind.UNSUPPORTED),
        (11, PanelKind.TIMESERIES),
        (12, PanelKind.STAT),
    ]


@pytest.mark.parametrize(
    ("dashboard", "where"),
    [
        ("{", "not JSON"),
        ("[]", "a dashboard is a JSON object"),
        (board(panel(1), panel(1)), "panel ids repeat: [1]"),
        (board({**panel(1), "gridPos": {"x": 0}}), "panels[0].gridPos"),
        (board({**panel(1), "id": "one"}), "panels[0].id"),
        (board(panel(1, targets=[{"expr": 5}])), "panels[0].targets[0]"),
        ({"uid": "u", "panels": []}, "dashboard.title"),
        ({**board(), "templating": {"list": [{"type": "query"}]}}, "templating.list[0].name"),
    ],
)
def test_json_that_is_not_a_dashboard_is_refused_saying_where(dashboard: Any, where: str) -> None:
    with pytest.raises(DashboardError) as caught:
        load_dashboard(dashboard)
    assert where in str(caught.value)


def test_variables_keep_their_query_label_and_current_value() -> None:
    templating = {
        "list": [
            {"name": "ns", "type": "query", "label": "Namespace", "query": "label_values(up, ns)"},
            {"name": "job", "type": "query", "query": {"query": "label_values(up, job)"}},
            {"name": "env", "type": "custom", "current": {"text": "prod", "value": "prod"}},
        ]
    }
    translated = load_dashboard({**board(), "templating": templating})
    assert [(v.name, v.kind, v.label, v.query, v.current) for v in translated.variables] == [
        ("ns", "query", "Namespace", "label_values(up, ns)", None),
        ("job", "query", None, "label_values(up, job)", None),
        ("env", "custom", None, None, "prod"),
    ]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('up{job="$job"}', 'up{job="api"}'),
        ('up{job="${job}"}', 'up{job="api"}'),
        ('up{job="${job:raw}"}', 'up{job="api"}'),
        ('up{job="[[job]]"}', 'up{job="api"}'),
        ("rate(x[$__rate_interval])", "rate(x[60s])"),
        ("rate(x[$__interval])", "rate(x[30s])"),
        ("x > $__interval_ms", "x > 30000"),
        ('up{job=~"api$"}', 'up{job=~"api$"}'),  # a regex anchor is no variable
        ('up{job="$jobs"}', None),  # $jobs is not $job followed by "s"
    ],
)
def test_substitution(expr: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(UnresolvedVariable) as caught:
            substitute(expr, {"job": "api"}, STEP)
        assert caught.value.names == ("jobs",)
    else:
        assert substitute(expr, {"job": "api"}, STEP) == expected


def test_a_value_cannot_end_the_promql_string_it_is_put_in() -> None:
    query = substitute('up{job="$job"}', {"job": 'a"} or vector(1) or {x="\\'}, STEP)
    assert query == 'up{job="a\\"} or vector(1) or {x=\\"\\\\"}'


def test_every_missing_variable_is_named_and_formats_other_than_raw_are_refused() -> None:
    with pytest.raises(UnresolvedVariable, match=r"\$namespace, \$pod"):
        substitute('x{namespace="$namespace", pod="${pod}", n="$namespace"}', {}, STEP)
    with pytest.raises(ValueError, match="format 'regex'"):
        substitute('x{job=~"${job:regex}"}', {"job": "a"}, STEP)


@pytest.mark.parametrize(
    ("step", "scrape", "interval", "rate"),
    [
        (30.0, 15.0, "30s", "60s"),  # four scrapes is the floor
        (120.0, 15.0, "120s", "135s"),  # a step and one scrape beyond it
        (0.5, 15.0, "500ms", "60s"),
        (10.0, 30.0, "10s", "120s"),
    ],
)
def test_interval_variables_follow_the_step(
    step: float, scrape: float, interval: str, rate: str
) -> None:
    values = interval_values(step, scrape)
    assert values["__interval"] == interval
    assert values["__rate_interval"] == rate


def test_a_duration_is_positive() -> None:
    assert duration(1.25) == "1250ms"
    with pytest.raises(ValueError, match="positive"):
        duration(0)
