"""Every value a chart documents is read by one of its templates (cert-manager's chart lint
does the same): a value nothing reads is a setting that silently does nothing.

A leaf of values.yaml counts as read when a template names it, or names a map above it
(`toYaml .Values.resources` passes the whole map on). EXCEPTIONS are the keys read by
something other than the chart's own templates, each with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm import CHART, find, render

CHARTS = [CHART, *sorted(p for p in (CHART / "charts").iterdir() if (p / "values.yaml").is_file())]

EXCEPTIONS = {
    "global": "values shared with a parent chart; allowed so that the chart works inside one",
    "enabled": "a subchart's switch, read by Helm through the parent's dependency condition",
}

REFERENCE = re.compile(r"\.Values\.([A-Za-z0-9_.]+)")


def leaves(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from leaves(value, path + ".")
        else:
            yield path


def unread(chart: Path) -> list[str]:
    values = yaml.safe_load((chart / "values.yaml").read_text())
    text = "\n".join(p.read_text() for p in sorted((chart / "templates").iterdir()))
    references = set(REFERENCE.findall(text))
    found = []
    for leaf in leaves(values):
        parts = leaf.split(".")
        named = any(".".join(parts[:i]) in references for i in range(1, len(parts) + 1))
        if not named and leaf not in EXCEPTIONS:
            found.append(leaf)
    return found


@pytest.mark.parametrize("chart", CHARTS, ids=lambda p: p.name)
def test_every_value_is_read_by_a_template(chart: Path) -> None:
    assert unread(chart) == [], f"{chart.name}: values no template reads"


def test_the_check_finds_a_value_nothing_reads(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "values.yaml").write_text("used: 1\nresources:\n  cpu: 1\nforgotten:\n  deep: 2\n")
    (tmp_path / "templates" / "a.yaml").write_text(
        "x: {{ .Values.used }}\n{{ toYaml .Values.resources }}\n"
    )
    assert unread(tmp_path) == ["forgotten.deep"]


def test_each_hook_job_takes_its_own_retry_limit() -> None:
    """topics.job.backoffLimit was documented and never read: both Jobs used the
    migrations' limit. The Kafka access Job retries like the topics Job."""
    jobs = find(render(values={"migrations.backoffLimit": 7, "topics.job.backoffLimit": 2}), "Job")
    limits = {
        j["metadata"]["labels"]["app.kubernetes.io/component"]: j["spec"]["backoffLimit"]
        for j in jobs
    }
    assert limits == {"migrate-job": 7, "topics-job": 2, "kafka-access-job": 2}
