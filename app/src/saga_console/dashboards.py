"""Grafana dashboard JSON (what the chart's dashboard ConfigMaps carry) as panels a console
can draw from Prometheus itself: for each panel its kind, place on the grid, unit and PromQL
targets, and the dashboard's template variables with the substitution Grafana would make.

Pure: no I/O. A panel the console cannot draw is kept and marked `unsupported` with the
reason, never dropped, so that the console can say what it leaves out.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Grafana's default for a Prometheus datasource whose scrape interval is not set.
DEFAULT_SCRAPE_INTERVAL_SECONDS = 15.0


class DashboardError(ValueError):
    """The JSON is not a dashboard this module can read; the message says where."""


class UnresolvedVariable(ValueError):
    """An expression still names a variable after substitution."""

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__(f"no value for {', '.join('$' + n for n in names)}")
        self.names = tuple(names)


class PanelKind(enum.StrEnum):
    TIMESERIES = "timeseries"
    STAT = "stat"
    UNSUPPORTED = "unsupported"


# Grafana migrates its retired panel types to these on load, so the console may do the same.
_KINDS = {
    "timeseries": PanelKind.TIMESERIES,
    "graph": PanelKind.TIMESERIES,
    "stat": PanelKind.STAT,
    "singlestat": PanelKind.STAT,
}


@dataclass(frozen=True, slots=True)
class GridPos:
    """Grafana's grid: 24 columns wide; y and h in rows of 30 px."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True, slots=True)
class Target:
    ref_id: str
    expr: str
    legend_format: str | None
    hidden: bool = False


@dataclass(frozen=True, slots=True)
class Panel:
    id: int
    title: str
    kind: PanelKind
    grafana_type: str
    grid: GridPos
    unit: str | None
    description: str
    targets: tuple[Target, ...]
    # Why the console cannot draw it; None when it can.
    unsupported_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    kind: str  # Grafana's type: query, datasource, custom, constant, interval, ...
    label: str | None
    query: str | None
    current: str | None


@dataclass(frozen=True, slots=True)
class Dashboard:
    uid: str
    title: str
    refresh: str | None
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...]

    @property
    def unsupported(self) -> tuple[Panel, ...]:
        return tuple(p for p in self.panels if p.kind is PanelKind.UNSUPPORTED)


# --- reading ------------------------------------------------------------------------------


def load_dashboard(source: str | bytes | Mapping[str, Any]) -> Dashboard:
    """A dashboard from its JSON text (a ConfigMap's data value) or the parsed object."""
    if isinstance(source, str | bytes):
        try:
            board = json.loads(source)
        except json.JSONDecodeError as exc:
            raise DashboardError(f"not JSON: {exc}") from None
    else:
        board = source
    if not isinstance(board, Mapping):
        raise DashboardError("a dashboard is a JSON object")
    panels = tuple(_panel(raw, where) for raw, where in _walk_panels(board.get("panels", [])))
    ids = [p.id for p in panels]
    if len(ids) != len(set(ids)):
        raise DashboardError(f"panel ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}")
    return Dashboard(
        uid=_string(board, "uid", "dashboard"),
        title=_string(board, "title", "dashboard"),
        refresh=board.get("refresh") or None,
        panels=panels,
        variables=tuple(_variables(board)),
    )


def dashboards_in_configmap(configmap: Mapping[str, Any]) -> dict[str, Dashboard]:
    """Every `*.json` key of a dashboard ConfigMap, by key."""
    data = configmap.get("data") or {}
    return {key: load_dashboard(text) for key, text in data.items() if key.endswith(".json")}


def _walk_panels(raw: Any, where: str = "panels") -> Iterator[tuple[Mapping[str, Any], str]]:
    if not isinstance(raw, list):
        raise DashboardError(f"{where} is not a list")
    for index, panel in enumerate(raw):
        at = f"{where}[{index}]"
        if not isinstance(panel, Mapping):
            raise DashboardError(f"{at} is not an object")
        yield panel, at
        # A collapsed row keeps its panels inside it; they are panels all the same.
        if panel.get("type") == "row" and panel.get("panels"):
            yield from _walk_panels(panel["panels"], f"{at}.panels")


def _panel(raw: Mapping[str, Any], where: str) -> Panel:
    grafana_type = _string(raw, "type", where)
    panel_id = raw.get("id")
    if not isinstance(panel_id, int) or isinstance(panel_id, bool):
        raise DashboardError(f"{where}.id is not an integer")
    grid = raw.get("gridPos")
    if not isinstance(grid, Mapping) or not all(
        isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")
    ):
        raise DashboardError(f"{where}.gridPos needs integers x, y, w, h")
    targets = tuple(_target(t, f"{where}.targets[{i}]") for i, t in enumerate(_targets(raw)))
    kind = _KINDS.get(grafana_type, PanelKind.UNSUPPORTED)
    reason = None
    if kind is PanelKind.UNSUPPORTED:
        reason = f"panel type {grafana_type!r}"
    elif not _is_prometheus(raw.get("datasource")):
        reason = f"datasource {raw.get('datasource')!r} is not Prometheus"
    elif any(not t.expr for t in targets):
        reason = "a target without a PromQL expression"
    unit = ((raw.get("fieldConfig") or {}).get("defaults") or {}).get("unit")
    return Panel(
        id=panel_id,
        title=str(raw.get("title") or ""),
        kind=PanelKind.UNSUPPORTED if reason else kind,
        grafana_type=grafana_type,
        grid=GridPos(grid["x"], grid["y"], grid["w"], grid["h"]),
        unit=unit if isinstance(unit, str) and unit else None,
        description=str(raw.get("description") or ""),
        targets=targets,
        unsupported_reason=reason,
    )


def _targets(raw: Mapping[str, Any]) -> list[Any]:
    targets = raw.get("targets", [])
    if not isinstance(targets, list):
        raise DashboardError(f"targets of panel {raw.get('id')} is not a list")
    return targets


def _target(raw: Any, where: str) -> Target:
    if not isinstance(raw, Mapping):
        raise DashboardError(f"{where} is not an object")
    expr = raw.get("expr", "")
    legend = raw.get("legendFormat")
    if not isinstance(expr, str) or (legend is not None and not isinstance(legend, str)):
        raise DashboardError(f"{where}: expr and legendFormat are strings")
    return Target(
        ref_id=str(raw.get("refId") or ""),
        expr=expr,
        legend_format=legend or None,
        hidden=bool(raw.get("hide", False)),
    )


def _is_prometheus(datasource: Any) -> bool:
    # No datasource, or one named by a variable ("${datasource}"), is the default one, which
    # the chart's dashboards choose among Prometheus datasources.
    if datasource is None or isinstance(datasource, str):
        return True
    return isinstance(datasource, Mapping) and datasource.get("type") in (None, "prometheus")


def _variables(board: Mapping[str, Any]) -> Iterator[Variable]:
    listed = (board.get("templating") or {}).get("list") or []
    for index, raw in enumerate(listed):
        where = f"templating.list[{index}]"
        if not isinstance(raw, Mapping):
            raise DashboardError(f"{where} is not an object")
        query = raw.get("query")
        if isinstance(query, Mapping):  # newer Grafana: {"query": "...", "refId": ...}
            query = query.get("query")
        current = (raw.get("current") or {}).get("value")
        yield Variable(
            name=_string(raw, "name", where),
            kind=str(raw.get("type") or ""),
            label=raw.get("label") or None,
            query=query if isinstance(query, str) and query else None,
            current=current if isinstance(current, str) else None,
        )


def _string(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise DashboardError(f"{where}.{key} is not a non-empty string")
    return value


# --- substitution -------------------------------------------------------------------------

# Grafana's three spellings: $name, ${name} (also ${name:format}) and the retired [[name]].
_VARIABLE = re.compile(
    r"\$(?P<plain>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<format>[A-Za-z]+))?\}"
    r"|\[\[(?P<old>[A-Za-z_][A-Za-z0-9_]*)\]\]"
)


def duration(seconds: float) -> str:
    """A Prometheus duration: whole seconds when it is one, else milliseconds."""
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, not {seconds}")
    millis = round(seconds * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def interval_values(
    step_seconds: float, scrape_interval_seconds: float = DEFAULT_SCRAPE_INTERVAL_SECONDS
) -> dict[str, str]:
    """Grafana's interval variables for a query at this step. $__rate_interval is Grafana's
    rule: at least four scrapes, so that rate() always has two samples to work with."""
    rate = max(step_seconds + scrape_interval_seconds, 4 * scrape_interval_seconds)
    return {
        "__interval": duration(step_seconds),
        "__interval_ms": str(round(step_seconds * 1000)),
        "__rate_interval": duration(rate),
    }


def _escaped(value: str) -> str:
    # The chart's expressions put every variable inside a double-quoted PromQL string; a
    # quote or backslash in a value must not end it (and so change the query).
    return value.replace("\\", "\\\\").replace('"', '\\"')


def substitute(
    expr: str,
    values: Mapping[str, str],
    step_seconds: float,
    scrape_interval_seconds: float = DEFAULT_SCRAPE_INTERVAL_SECONDS,
) -> str:
    """`expr` with every template variable replaced: `values` for the dashboard's own
    ($namespace, $job), the step for Grafana's intervals. Raises UnresolvedVariable naming
    every variable that has no value, rather than send Prometheus a query with a `$` left."""
    known = interval_values(step_seconds, scrape_interval_seconds)
    known.update({name: _escaped(value) for name, value in values.items()})
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match["plain"] or match["braced"] or match["old"]
        if match["format"] not in (None, "raw"):
            raise ValueError(f"format {match['format']!r} of ${{{name}}} is not supported")
        if name not in known:
            missing.append(name)
            return match[0]
        return known[name]

    result = _VARIABLE.sub(replace, expr)
    if missing:
        raise UnresolvedVariable(sorted(set(missing)))
    return result


def variables_in(expr: str) -> set[str]:
    """The template variables an expression names."""
    return {m["plain"] or m["braced"] or m["old"] for m in _VARIABLE.finditer(expr)}
