#!/usr/bin/env python3
"""Generate the values table of each chart's README.md from values.yaml comments.

A key is documented by a `# -- text` comment on the lines right above it
(further `#` lines continue the text). The table goes between the markers
`<!-- values:start -->` and `<!-- values:end -->` in the chart's README.md;
everything else in the README is hand-written and left alone.

  ci/chart-readme.py            rewrite the tables
  ci/chart-readme.py --check    exit 1, naming the chart, when a table is stale
                                or a key has no `# --` comment
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHARTS = [
    REPO / "charts" / "saga-stack",
    *sorted((REPO / "charts" / "saga-stack" / "charts").iterdir()),
]
START, END = "<!-- values:start -->", "<!-- values:end -->"
KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")
DOC_LINE = re.compile(r"^\s*# -- ?(?P<text>.*)$")
MORE_LINE = re.compile(r"^\s*#(?!\s*--) ?(?P<text>.*)$")


@dataclass
class Entry:
    path: str
    description: str
    default: Any


def _lookup(values: Any, path: list[str]) -> Any:
    for part in path:
        values = values[part]
    return values


def parse(values_file: Path) -> tuple[list[Entry], list[str]]:
    """Documented keys in file order, and the keys nobody documented."""
    values = yaml.safe_load(values_file.read_text()) or {}
    entries: list[Entry] = []
    undocumented: list[str] = []
    stack: list[tuple[int, str]] = []
    documented_prefixes: list[str] = []
    pending: list[str] | None = None
    for line in values_file.read_text().splitlines():
        if (doc := DOC_LINE.match(line)) is not None:
            pending = [doc["text"]]
            continue
        if pending is not None and (more := MORE_LINE.match(line)) is not None:
            pending.append(more["text"])
            continue
        match = KEY_LINE.match(line)
        if match is None:
            if line.strip() and not line.lstrip().startswith("#"):
                pending = None
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parents = [k for _, k in stack]
        path = [*parents, match["key"]]
        dotted = ".".join(path)
        try:
            default = _lookup(values, path)
        except (KeyError, TypeError):
            # a key inside a documented default (e.g. behavior.scaleUp): part of that default
            pending = None
            continue
        stack.append((indent, match["key"]))
        if pending is not None:
            entries.append(Entry(dotted, " ".join(t.strip() for t in pending).strip(), default))
            documented_prefixes.append(dotted + ".")
        elif (not isinstance(default, dict) or not default) and not any(
            dotted.startswith(p) for p in documented_prefixes
        ):
            undocumented.append(dotted)
        pending = None
    return entries, undocumented


def _type(value: Any) -> str:
    return {
        bool: "bool",
        int: "int",
        float: "float",
        str: "string",
        list: "list",
        dict: "object",
    }.get(type(value), "null")


def _default(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"))
    return f"`{text}`".replace("|", "\\|")


def table(entries: list[Entry]) -> str:
    rows = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for e in entries:
        description = e.description.replace("|", "\\|")
        rows.append(f"| `{e.path}` | {_type(e.default)} | {_default(e.default)} | {description} |")
    return "\n".join(rows)


def updated_readme(chart: Path) -> tuple[str, str, list[str]]:
    readme = chart / "README.md"
    entries, undocumented = parse(chart / "values.yaml")
    current = (
        readme.read_text()
        if readme.exists()
        else f"# {chart.name}\n\n## Values\n\n{START}\n{END}\n"
    )
    if START not in current or END not in current:
        raise SystemExit(f"{readme}: the markers {START} and {END} are missing")
    head, rest = current.split(START, 1)
    _, tail = rest.split(END, 1)
    return current, f"{head}{START}\n{table(entries)}\n{END}{tail}", undocumented


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="report drift instead of rewriting")
    args = parser.parse_args()
    failed = False
    for chart in CHARTS:
        current, wanted, undocumented = updated_readme(chart)
        name = chart.relative_to(REPO)
        if undocumented:
            failed = True
            print(
                f"{name}/values.yaml: keys without a '# --' comment: {', '.join(undocumented)}",
                file=sys.stderr,
            )
        if current == wanted:
            continue
        if args.check:
            failed = True
            print(
                f"{name}/README.md is stale: run ci/chart-readme.py (or `make chart-readme`)",
                file=sys.stderr,
            )
        else:
            (chart / "README.md").write_text(wanted)
            print(f"wrote {name}/README.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
