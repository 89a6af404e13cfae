"""The container rules of issue 20, for every pod the chart renders (the app, its workers,
console, hook Jobs, reconcile CronJob and load Job, and the bundled PostgreSQL, Redis and
Kafka) in every profile. Each exception is named here with its reason, and
docs/security.md says the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.helm import PROFILES, pod_spec, pod_templates, render, render_error

LOG_FILES_MI = 500  # room for nodes that keep a container's log to 5 files of 100 MiB
EVERY_POD = {"loadGenerator.enabled": True}
MIN_ID = 10000  # no overlap with the system and first user ids of any node or image
# PostgreSQL refuses a data directory owned by another uid, and initdb needs the uid in
# the image's /etc/passwd: it keeps the image's postgres user.
IMAGE_USER_KEPT = {"StatefulSet/saga-postgresql"}
# Patroni holds the leader lease and publishes the primary through the Kubernetes API.
NEEDS_API_TOKEN = {"StatefulSet/saga-postgresql"}
LONG_RUNNING = {"Deployment", "StatefulSet"}
DIGEST = "sha256:" + "ab" * 32


def mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1.0, "Gi": 1024.0}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / 2**20


def pods(profile: Path) -> list[tuple[str, dict[str, Any]]]:
    objects = render([profile], values=EVERY_POD)
    return [(f"{o['kind']}/{o['metadata']['name']}", pod_spec(o)) for o in pod_templates(objects)]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = spec.get("initContainers", []) + spec["containers"]
    return found


def profile_id(profile: Path) -> str:
    return profile.stem


@pytest.mark.parametrize("profile", PROFILES, ids=profile_id)
def test_every_container_requests_and_limits_its_ephemeral_storage(profile: Path) -> None:
    """An eviction for disk names the pod that overran, not a neighbour: the limit covers the
    pod's emptyDirs at their size limits and the container's log files."""
    rendered = pods(profile)
    assert {name.split("/")[0] for name, _ in rendered} >= {"Deployment", "Job"}, rendered
    for name, spec in rendered:
        scratch = sum(
            mebibytes(v["emptyDir"]["sizeLimit"])
            for v in spec.get("volumes", [])
            if "sizeLimit" in v.get("emptyDir", {})
        )
        for container in containers(spec):
            where = f"{profile.stem} {name} {container['name']}"
            resources = container.get("resources", {})
            request = resources.get("requests", {}).get("ephemeral-storage")
            limit = resources.get("limits", {}).get("ephemeral-storage")
            assert request and limit, f"{where}: no ephemeral-storage request or limit"
            assert mebibytes(request) <= mebibytes(limit), where
            assert mebibytes(limit) >= scratch + LOG_FILES_MI, (
                f"{where}: limit {limit} below the emptyDirs ({scratch:g} Mi) and the logs"
            )


@pytest.mark.parametrize("profile", PROFILES, ids=profile_id)
def test_every_root_filesystem_is_read_only(profile: Path) -> None:
    for name, spec in pods(profile):
        for container in containers(spec):
            context = container.get("securityContext", {})
            assert context.get("readOnlyRootFilesystem") is True, (
                f"{profile.stem} {name} {container['name']}: writable root filesystem"
            )


@pytest.mark.parametrize("profile", PROFILES, ids=profile_id)
def test_every_process_runs_as_a_high_non_root_id(profile: Path) -> None:
    for name, spec in pods(profile):
        pod_context = spec.get("securityContext", {})
        for container in containers(spec):
            context = {**pod_context, **container.get("securityContext", {})}
            where = f"{profile.stem} {name} {container['name']}"
            assert context.get("runAsNonRoot") is True, where
            if name in IMAGE_USER_KEPT:
                continue
            uid, gid = context.get("runAsUser", 0), context.get("runAsGroup", 0)
            assert uid >= MIN_ID and gid >= MIN_ID, f"{where}: uid {uid}, gid {gid}"


@pytest.mark.parametrize("profile", PROFILES, ids=profile_id)
def test_long_running_containers_have_distinct_liveness_and_readiness(profile: Path) -> None:
    """Readiness takes a pod out of its Service while it cannot serve; liveness restarts it
    only when it is stuck. One probe for both restarts a pod that is merely busy or loading."""
    checked = 0
    for name, spec in pods(profile):
        if name.split("/")[0] not in LONG_RUNNING:
            continue
        for container in spec["containers"]:
            where = f"{profile.stem} {name} {container['name']}"
            liveness, readiness = container.get("livenessProbe"), container.get("readinessProbe")
            assert liveness and readiness, f"{where}: a probe is missing"
            strip = ("periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold")
            what = [{k: v for k, v in p.items() if k not in strip} for p in (liveness, readiness)]
            assert what[0] != what[1], f"{where}: liveness and readiness ask the same thing"
            checked += 1
    assert checked >= 1


@pytest.mark.parametrize("profile", PROFILES, ids=profile_id)
def test_only_pods_that_call_the_api_get_a_token(profile: Path) -> None:
    for name, spec in pods(profile):
        if name in NEEDS_API_TOKEN and spec.get("serviceAccountName"):
            continue
        assert spec.get("automountServiceAccountToken") is False, f"{profile.stem} {name}"


@pytest.mark.parametrize("subchart", ["postgresql", "redis", "kafka"])
def test_a_data_layer_image_can_be_pinned_by_digest(subchart: str) -> None:
    objects = render(values={f"{subchart}.image.digest": DIGEST})
    images = {
        c["image"]
        for o in pod_templates(objects)
        if o["metadata"]["name"].startswith(f"saga-{subchart}")
        for c in containers(pod_spec(o))
    }
    assert images and all(i.endswith(f"@{DIGEST}") and ":" not in i.split("@")[0] for i in images)


def test_a_digest_that_is_not_one_is_refused_before_the_cluster() -> None:
    message = render_error(values={"kafka.image.digest": "latest"})
    assert "digest" in message


def test_a_user_can_raise_the_limit_and_keep_the_rest() -> None:
    profile = next(p for p in PROFILES if p.stem == "local")
    objects = render([profile], values={"resources.limits.ephemeral-storage": "1Gi"})
    (app,) = [o for o in pod_templates(objects) if o["metadata"]["name"] == "saga-saga-stack"]
    resources = pod_spec(app)["containers"][0]["resources"]
    assert resources["limits"]["ephemeral-storage"] == "1Gi"
    assert resources["requests"]["ephemeral-storage"] == "64Mi"
    assert "memory" in resources["limits"]


def exec_words(container: dict[str, Any]) -> list[str]:
    """Every word a container runs: its command and args, its probes' and hooks' commands."""
    words: list[str] = [*container.get("command", []), *container.get("args", [])]
    handlers = [container.get(p, {}) for p in ("startupProbe", "livenessProbe", "readinessProbe")]
    handlers += list(container.get("lifecycle", {}).values())
    for handler in handlers:
        words += handler.get("exec", {}).get("command", [])
    return words


@pytest.mark.parametrize("profile", PROFILES, ids=profile_id)
def test_every_script_a_container_runs_from_a_config_map_is_in_it(profile: Path) -> None:
    """A probe naming a script its ConfigMap does not carry fails only in a cluster."""
    objects = render([profile], values=EVERY_POD)
    data = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
    checked = 0
    for obj in pod_templates(objects):
        spec = pod_spec(obj)
        maps = {
            v["name"]: v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v
        }
        for container in containers(spec):
            mounted = {
                m["mountPath"].rstrip("/") + "/": data[maps[m["name"]]]
                for m in container.get("volumeMounts", [])
                if maps.get(m["name"]) in data and "subPath" not in m
            }
            for word in exec_words(container):
                for path, keys in mounted.items():
                    if word.startswith(path):
                        where = f"{profile.stem} {obj['metadata']['name']} {container['name']}"
                        assert word[len(path) :] in keys, f"{where}: {word} is not in its ConfigMap"
                        checked += 1
    bundled = any(o["kind"] == "StatefulSet" for o in pod_templates(objects))
    assert checked > 0 or not bundled
