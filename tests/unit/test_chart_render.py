"""Every profile and a matrix of toggles render to valid Kubernetes objects.

Each rendering is validated, strictly, against the OpenAPI schemas of the
newest three Kubernetes minor lines (and the Gateway API / monitoring CRDs).
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path
from typing import Any

import k8s_openapi
import pytest
from helm import PROFILES, Manifest, find, helm, one, render

# A values set that turns every data-layer subchart off and points at external services.
EXTERNAL = {
    "postgresql.enabled": False,
    "externalDatabase.host": "db.example.com",
    "externalDatabase.password": "db-secret",
    "redis.enabled": False,
    "externalRedis.host": "cache.example.com",
    "externalRedis.password": "cache-secret",
    "kafka.enabled": False,
    "externalKafka.bootstrapServers": ["k1.example.com:9092", "k2.example.com:9092"],
}

TOGGLES: dict[str, dict[str, Any]] = {
    "autoscaling": {"autoscaling.enabled": True},
    "ingress": {"ingress.enabled": True, "ingress.className": "nginx"},
    "httpRoute": {
        "httpRoute.enabled": True,
        "httpRoute.parentRefs": [{"name": "public", "namespace": "gateways"}],
        "httpRoute.hostnames": ["saga.example.com"],
    },
    # the subcharts own their policies, switched separately
    "networkPolicy": {
        "networkPolicy.enabled": False,
        "postgresql.networkPolicy.enabled": False,
        "redis.networkPolicy.enabled": False,
        "kafka.networkPolicy.enabled": False,
    },
    "pdb": {"pdb.enabled": True},
    "existingSecret": {"existingSecret": "saga-credentials"},
}


JOBS: dict[str, Any] = {"jobs.enabled": True}
JOBS_CASES: dict[str, dict[str, Any]] = {
    "": {},
    "+autoscaling+pdb": {"jobs.autoscaling.enabled": True, "jobs.pdb.enabled": True},
    "+networkPolicy": TOGGLES["networkPolicy"],
    "+existingSecret+app-autoscaling": {**TOGGLES["existingSecret"], **TOGGLES["autoscaling"]},
    "-reconcile": {"jobs.reconcile.enabled": False},
}


def _matrix() -> list[tuple[str, dict[str, Any]]]:
    cases: list[tuple[str, dict[str, Any]]] = []
    names = list(TOGGLES)
    for mask in itertools.product([False, True], repeat=len(names)):
        chosen = [n for n, on in zip(names, mask, strict=True) if on]
        for data_mode in ("bundled", "external"):
            values: dict[str, Any] = {}
            for name in chosen:
                values.update(TOGGLES[name])
            if data_mode == "external":
                values.update(EXTERNAL)
            label = "+".join(chosen) or "defaults"
            cases.append((f"{label}/{data_mode}", values))
    # each subchart off on its own, the others bundled
    for sub, extra in (
        (
            "postgresql",
            {"externalDatabase.host": "db.example.com", "externalDatabase.password": "x"},
        ),
        ("redis", {"externalRedis.mode": "sentinel", "externalRedis.sentinelNodes": ["s1:26379"]}),
        ("kafka", {"externalKafka.bootstrapServers": ["k1:9092"]}),
    ):
        cases.append((f"only-{sub}-external", {f"{sub}.enabled": False, **extra}))
    # background jobs on (worker, its Service, HPA, PDB, policy, reconcile CronJob)
    for label, extra in JOBS_CASES.items():
        for data_mode in ("bundled", "external"):
            values = {**JOBS, **extra, **(EXTERNAL if data_mode == "external" else {})}
            cases.append((f"jobs{label}/{data_mode}", values))
    return cases


MATRIX = _matrix()


@functools.cache
def _render_case(case_id: str) -> tuple[Manifest, ...]:
    values = dict(MATRIX)[case_id]
    return tuple(render(values=values))


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_profile_lints_strictly(profile: Path) -> None:
    proc = helm(
        "lint", "--strict", str(profile.parents[1] / "charts" / "saga-stack"), "-f", str(profile)
    )
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_profile_renders_valid_objects(profile: Path, k8s_schemas: list[str]) -> None:
    objects = render([profile])
    assert one(objects, "Deployment", "saga-saga-stack")
    assert k8s_openapi.schema_errors(objects, k8s_schemas) == []


def test_there_are_the_promised_profiles() -> None:
    assert {p.stem for p in PROFILES} >= {"local", "ha", "production"}


@pytest.mark.parametrize("case_id", [c for c, _ in MATRIX])
def test_toggle_matrix_renders_valid_objects(case_id: str, k8s_schemas: list[str]) -> None:
    objects = _render_case(case_id)
    assert k8s_openapi.schema_errors(objects, k8s_schemas) == []


@pytest.mark.parametrize("case_id", [c for c, _ in MATRIX])
def test_each_toggle_produces_or_drops_its_object(case_id: str) -> None:
    values = dict(MATRIX)[case_id]
    objects = _render_case(case_id)
    app, worker = "saga-saga-stack", "saga-saga-stack-worker"
    assert bool(find(objects, "HorizontalPodAutoscaler", app)) == ("autoscaling.enabled" in values)
    assert bool(find(objects, "Ingress")) == ("ingress.enabled" in values)
    assert bool(find(objects, "HTTPRoute")) == ("httpRoute.enabled" in values)
    assert bool(find(objects, "PodDisruptionBudget", app)) == ("pdb.enabled" in values)
    assert bool(find(objects, "NetworkPolicy")) == ("networkPolicy.enabled" not in values)
    jobs = values.get("jobs.enabled", False)
    assert bool(find(objects, "Deployment", worker)) == jobs
    assert bool(find(objects, "Service", worker)) == jobs
    assert bool(find(objects, "NetworkPolicy", worker)) == (
        jobs and "networkPolicy.enabled" not in values
    )
    assert bool(find(objects, "HorizontalPodAutoscaler", worker)) == (
        "jobs.autoscaling.enabled" in values
    )
    assert bool(find(objects, "PodDisruptionBudget", worker)) == ("jobs.pdb.enabled" in values)
    assert bool(find(objects, "CronJob")) == (jobs and "jobs.reconcile.enabled" not in values)
    assert ("JOBS_ENABLED" in one(objects, "ConfigMap", app)["data"]) == jobs
    statefulsets = {o["metadata"]["name"] for o in find(objects, "StatefulSet")}
    for sub, name in (
        ("postgresql", "saga-postgresql"),
        ("redis", "saga-redis-master"),
        ("kafka", "saga-kafka"),
    ):
        assert (name in statefulsets) == (values.get(f"{sub}.enabled", True) is not False)


def test_matrix_is_large_enough() -> None:
    # 2^6 toggle combinations x 2 data-layer modes + 3 single-subchart cases
    # + 5 background-job cases x 2 data-layer modes
    assert len(MATRIX) == 141
    assert sum(1 for _, values in MATRIX if values.get("jobs.enabled")) == 10
