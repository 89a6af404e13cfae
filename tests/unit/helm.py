"""Rendering the chart with the project's pinned helm, for the unit tests.

Tests assert on parsed objects, never on text, so everything here returns
dicts. ``render`` raises ``RenderError`` carrying helm's message when helm
refuses the values; ``render_error`` is the inverse for bad-value tests.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "saga-stack"
PROFILES = sorted((REPO_ROOT / "values").glob("*.yaml"))
RELEASE = "saga"
NAMESPACE = "shop"

Manifest = dict[str, Any]


class RenderError(RuntimeError):
    """helm refused to render; the message is helm's own."""


@functools.cache
def helm_binary(name: str = "helm") -> str:
    """The pinned helm from .tools/bin (ci/bootstrap.sh --helm), else PATH's."""
    local = REPO_ROOT / ".tools" / "bin" / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: run `ci/bootstrap.sh --helm` (or `make tools`)")
    return found


def _set_args(values: Mapping[str, Any] | None) -> list[str]:
    args: list[str] = []
    for key, value in (values or {}).items():
        if isinstance(value, bool):
            args += ["--set", f"{key}={str(value).lower()}"]
        elif isinstance(value, str):
            args += ["--set-string", f"{key}={value}"]
        else:
            # JSON keeps lists, maps, numbers and null as they are
            import json

            args += ["--set-json", f"{key}={json.dumps(value)}"]
    return args


def helm(*args: str, binary: str = "helm", check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/saga-stack-helm-cache"}
    proc = subprocess.run(
        [helm_binary(binary), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    if check and proc.returncode != 0:
        raise RenderError(proc.stderr.strip() or proc.stdout.strip())
    return proc


def template_args(
    values_files: Iterable[Path | str] = (),
    values: Mapping[str, Any] | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for path in values_files:
        args += ["-f", str(path)]
    return args + _set_args(values) + list(extra)


def render(
    values_files: Iterable[Path | str] = (),
    values: Mapping[str, Any] | None = None,
    *,
    binary: str = "helm",
    extra: Sequence[str] = (),
) -> list[Manifest]:
    """Every object helm renders, hooks included, as dicts."""
    proc = helm(*template_args(values_files, values, extra), binary=binary)
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def render_error(
    values_files: Iterable[Path | str] = (),
    values: Mapping[str, Any] | None = None,
) -> str:
    """helm's error message for values it must refuse; fails if helm accepts them."""
    proc = helm(*template_args(values_files, values), check=False)
    if proc.returncode == 0:
        raise AssertionError(f"helm accepted values it should refuse: {values}")
    return proc.stderr


def find(objects: Iterable[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: Iterable[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet", "CronJob"}


def pod_template(obj: Manifest) -> dict[str, Any]:
    """The pod template of a workload (a CronJob's is inside its jobTemplate)."""
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    template: dict[str, Any] = spec["template"]
    return template


def pod_spec(obj: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = pod_template(obj)["spec"]
    return spec


def pod_templates(objects: Iterable[Manifest]) -> list[Manifest]:
    return [o for o in objects if o["kind"] in POD_TEMPLATE_KINDS]


def hook_jobs(objects: Iterable[Manifest]) -> list[Manifest]:
    """The Jobs Helm runs as hooks (migrate, topics): they run the app with its settings."""
    jobs = find(objects, "Job")
    return [j for j in jobs if "helm.sh/hook" in j["metadata"].get("annotations", {})]
