"""The container rules of issue 20, for the pods this chart renders itself (the app, its
workers, console, hook Jobs, reconcile CronJob and load Job) in every profile. The bundled
data-layer charts (PostgreSQL, Redis, Kafka) are not held to them yet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.helm import PROFILES, pod_spec, pod_templates, render

CHART_LABEL = "saga-stack-"  # helm.sh/chart of this chart's own objects (not its subcharts')
LOG_FILES_MI = 500  # room for nodes that keep a container's log to 5 files of 100 MiB
EVERY_POD = {"loadGenerator.enabled": True}


def mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1.0, "Gi": 1024.0}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / 2**20


def own_pods(profile: Path) -> list[tuple[str, dict[str, Any]]]:
    objects = render([profile], values=EVERY_POD)
    return [
        (f"{o['kind']}/{o['metadata']['name']}", pod_spec(o))
        for o in pod_templates(objects)
        if o["metadata"]["labels"].get("helm.sh/chart", "").startswith(CHART_LABEL)
    ]


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_every_container_requests_and_limits_its_ephemeral_storage(profile: Path) -> None:
    """An eviction for disk names the pod that overran, not a neighbour: the limit covers the
    pod's emptyDirs at their size limits and the container's log files."""
    pods = own_pods(profile)
    assert {name.split("/")[0] for name, _ in pods} >= {"Deployment", "Job"}, pods
    for name, spec in pods:
        scratch = sum(
            mebibytes(v["emptyDir"]["sizeLimit"])
            for v in spec.get("volumes", [])
            if "sizeLimit" in v.get("emptyDir", {})
        )
        for container in spec.get("initContainers", []) + spec["containers"]:
            where = f"{profile.stem} {name} {container['name']}"
            resources = container.get("resources", {})
            request = resources.get("requests", {}).get("ephemeral-storage")
            limit = resources.get("limits", {}).get("ephemeral-storage")
            assert request and limit, f"{where}: no ephemeral-storage request or limit"
            assert mebibytes(request) <= mebibytes(limit), where
            assert mebibytes(limit) >= scratch + LOG_FILES_MI, (
                f"{where}: limit {limit} below the emptyDirs ({scratch:g} Mi) and the logs"
            )


def test_a_user_can_raise_the_limit_and_keep_the_rest() -> None:
    profile = next(p for p in PROFILES if p.stem == "local")
    objects = render([profile], values={"resources.limits.ephemeral-storage": "1Gi"})
    (app,) = [o for o in pod_templates(objects) if o["metadata"]["name"] == "saga-saga-stack"]
    resources = pod_spec(app)["containers"][0]["resources"]
    assert resources["limits"]["ephemeral-storage"] == "1Gi"
    assert resources["requests"]["ephemeral-storage"] == "64Mi"
    assert "memory" in resources["limits"]
