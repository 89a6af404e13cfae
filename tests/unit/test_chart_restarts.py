"""Which value changes roll the app pods (issue 12), computed from renders.

For each value of CHANGES the chart is rendered twice, before and after the change, and
the app Deployment's pod template compared: a different template is a new ReplicaSet, so
the pods roll. Settings the app reloads live in the runtime ConfigMap, which the template
carries no checksum of; scaling only touches `spec.replicas` or the HPA. The table goes to
$SAGA_STACK_RESULTS/config-restarts.md (default ~/.cache/saga-stack/results) so that it
can be quoted; the live e2e test checks the same answers on a cluster (same pod UIDs).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm import CHART, RELEASE, Manifest, one, render
from saga_service.settings import RELOADABLE, Settings, with_runtime_config
from test_chart_render import EXTERNAL

RESULTS = Path(os.environ.get("SAGA_STACK_RESULTS", Path.home() / ".cache/saga-stack/results"))
TABLE = RESULTS / "config-restarts.md"

APP = f"{RELEASE}-saga-stack"
RUNTIME = f"{APP}-runtime"
AUTOSCALING = {"autoscaling.enabled": True}
PDB = {"pdb.enabled": True}


@dataclasses.dataclass(frozen=True)
class Change:
    value: str
    to: Any
    rolls: bool
    base: tuple[tuple[str, Any], ...] = ()

    @property
    def base_values(self) -> dict[str, Any]:
        return dict(self.base)

    @property
    def changed_values(self) -> dict[str, Any]:
        return {**self.base_values, self.value: self.to}

    @property
    def label(self) -> str:
        shown = json.dumps(self.to) if not isinstance(self.to, str) else self.to
        context = ", ".join(f"{k}={json.dumps(v)}" for k, v in self.base if k not in EXTERNAL)
        external = " (external services)" if any(k in EXTERNAL for k, _ in self.base) else ""
        return f"`{self.value}` → `{shown}`" + (f" (with {context})" if context else "") + external


TRACING = {
    "tracing.otlpEndpoint": "http://collector.traces.svc:4318",
    "tracing.collectorPeers": [{"namespaceSelector": {}}],
}


def _with(values: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(values.items())


CHANGES = [
    # reloaded by the running app from the runtime ConfigMap
    Change("config.logLevel", "DEBUG", rolls=False),
    Change("config.lockTtlMs", 8000, rolls=False),
    Change("config.lockAcquireTimeoutMs", 3000, rolls=False),
    Change("config.stepDelayMs", 250, rolls=False),
    # scaling
    Change("replicas", 5, rolls=False),
    Change("replicas", 4, rolls=False, base=_with(AUTOSCALING)),
    Change("autoscaling.maxReplicas", 20, rolls=False, base=_with(AUTOSCALING)),
    Change("autoscaling.enabled", True, rolls=False),
    Change("pdb.maxUnavailable", 2, rolls=False, base=_with({**PDB, "replicas": 4})),
    Change("service.port", 8081, rolls=False),
    # read at start only
    Change("config.sagaLeaseSeconds", 45, rolls=True),
    Change("config.sagaStartLeaseSeconds", 600, rolls=True),
    Change("config.databasePoolSize", 20, rolls=True),
    Change("shutdown.appGraceSeconds", 15, rolls=True),
    Change("topics.partitions", 12, rolls=True),
    Change("resources", {"requests": {"cpu": "200m", "memory": "256Mi"}}, rolls=True),
    Change("image.tag", "1.2.3", rolls=True),
    Change("externalDatabase.password", "rotated", rolls=True, base=_with(EXTERNAL)),
    Change("extraEnv", [{"name": "FEATURE_X", "value": "on"}], rolls=True),
    Change("probes.readiness.periodSeconds", 10, rolls=True),
    # the SDK reads its sampler once, when the process starts
    Change("tracing.sampleRatio", 0.5, rolls=True, base=_with(TRACING)),
]


def _cache_key(values: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    # Renders are cached by their values, written as the JSON that --set-json takes.
    return tuple((k, json.dumps(v, sort_keys=True)) for k, v in values.items())


@functools.cache
def _render_key(key: tuple[tuple[str, str], ...]) -> tuple[Manifest, ...]:
    return tuple(render(values={k: json.loads(v) for k, v in key}))


def _objects(key_values: dict[str, Any]) -> list[Manifest]:
    return list(_render_key(_cache_key(key_values)))


def pod_template(objects: list[Manifest]) -> dict[str, Any]:
    template: dict[str, Any] = one(objects, "Deployment", APP)["spec"]["template"]
    return template


def changed_objects(before: list[Manifest], after: list[Manifest]) -> list[str]:
    """The objects of the release that differ, as `Kind/name` (the app Deployment split into
    its pod template and the rest)."""

    def index(objects: list[Manifest]) -> dict[str, Manifest]:
        return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}

    old, new = index(before), index(after)
    found = []
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        if name == f"Deployment/{APP}" and a is not None and b is not None:
            rest_a = {**a, "spec": {k: v for k, v in a["spec"].items() if k != "template"}}
            rest_b = {**b, "spec": {k: v for k, v in b["spec"].items() if k != "template"}}
            if rest_a != rest_b:
                found.append(f"{name} (spec, not the pod template)")
            if a["spec"]["template"] != b["spec"]["template"]:
                found.append(f"{name} (pod template)")
            continue
        found.append(name if a and b else f"{name} ({'added' if b else 'removed'})")
    return found


@dataclasses.dataclass(frozen=True)
class Outcome:
    change: Change
    rolls: bool
    changed: list[str]


@functools.cache
def generated_anew(key: tuple[tuple[str, str], ...]) -> frozenset[str]:
    """Objects that differ between two renders of the same values: the passwords and the
    Kafka cluster id that `helm template` generates each time (on a live release the
    charts look the existing ones up, so an upgrade keeps them)."""
    again = render(values={k: json.loads(v) for k, v in key})
    return frozenset(changed_objects(list(_render_key(key)), again))


@functools.cache
def outcomes() -> tuple[Outcome, ...]:
    found = []
    for change in CHANGES:
        before, after = _objects(change.base_values), _objects(change.changed_values)
        rolls = pod_template(before) != pod_template(after)
        noise = generated_anew(_cache_key(change.base_values))
        changed = [name for name in changed_objects(before, after) if name not in noise]
        found.append(Outcome(change, rolls, changed))
    return tuple(found)


def markdown(results: tuple[Outcome, ...]) -> str:
    lines = [
        "# Which value changes roll the app pods",
        "",
        "Computed by tests/unit/test_chart_restarts.py from two renders of the chart per "
        "value (the default values, or those named, before and after the change): the pods "
        "roll when the app Deployment's pod template differs. Left out of the last column: "
        "objects that every `helm template` generates anew (passwords, the Kafka cluster id), "
        "which a live release keeps.",
        "",
        "| value changed | rolls app pods | what changes |",
        "|---|---|---|",
    ]
    for outcome in results:
        what = ", ".join(f"`{name}`" for name in outcome.changed) or "nothing"
        lines.append(f"| {outcome.change.label} | {'yes' if outcome.rolls else 'no'} | {what} |")
    return "\n".join(lines) + "\n"


def test_each_value_rolls_the_pods_or_not_as_expected() -> None:
    results = outcomes()
    RESULTS.mkdir(parents=True, exist_ok=True)
    TABLE.write_text(markdown(results))
    wrong = [
        f"{o.change.label}: rolls={o.rolls}, expected {o.change.rolls} (changed: {o.changed})"
        for o in results
        if o.rolls != o.change.rolls
    ]
    assert wrong == [], f"see {TABLE}"


def test_a_value_that_rolls_nothing_still_changes_the_release() -> None:
    """Otherwise "no roll" could just mean a value nothing reads."""
    silent = [o.change.label for o in outcomes() if not o.changed]
    assert silent == []


@pytest.mark.parametrize(
    "change", [c for c in CHANGES if c.value == "replicas"], ids=lambda c: c.label
)
def test_scaling_never_rolls_the_pods(change: Change) -> None:
    before, after = _objects(change.base_values), _objects(change.changed_values)
    assert pod_template(before) == pod_template(after)


def runtime_file(objects: list[Manifest]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(one(objects, "ConfigMap", RUNTIME)["data"]["settings.json"])
    return data


@pytest.mark.parametrize(
    "change",
    [c for c in CHANGES if c.value.startswith("config.") and not c.rolls],
    ids=lambda c: c.value,
)
def test_a_reloadable_value_reaches_the_running_pods_through_the_runtime_file(
    change: Change,
) -> None:
    before, after = _objects(change.base_values), _objects(change.changed_values)
    changed = {k: v for k, v in runtime_file(after).items() if runtime_file(before).get(k) != v}
    assert list(changed.values()) == [change.to], changed
    deployment = one(after, "Deployment", APP)
    spec = deployment["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["runtime-config"]["configMap"]["name"] == RUNTIME
    mount = mounts["runtime-config"]
    # subPath mounts never see the kubelet's updates
    assert mount["readOnly"] is True and "subPath" not in mount
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["SAGA_RUNTIME_CONFIG"] == f"{mount['mountPath']}/settings.json"


def test_the_runtime_file_holds_what_the_app_reloads_and_the_app_accepts_it() -> None:
    objects = _objects({"config.logLevel": "WARNING", "config.stepDelayMs": 75})
    document = runtime_file(objects)
    assert set(document) == set(RELOADABLE)
    base = Settings(
        database_host="db",
        database_password="x",
        redis_host="redis",
        kafka_bootstrap_servers="kafka:9092",
    )
    content = one(objects, "ConfigMap", RUNTIME)["data"]["settings.json"].encode()
    settings = with_runtime_config(base, content)
    assert (settings.log_level, settings.saga_step_delay_ms) == ("WARNING", 75)


def test_extra_env_wins_over_the_runtime_file_as_over_every_setting() -> None:
    objects = _objects({"extraEnv": [{"name": "SAGA_STEP_DELAY_MS", "value": "100"}]})
    assert "SAGA_STEP_DELAY_MS" not in runtime_file(objects)
    assert set(runtime_file(objects)) == set(RELOADABLE) - {"SAGA_STEP_DELAY_MS"}


def test_every_app_setting_of_the_chart_is_in_the_table() -> None:
    """A new `config.*` value must say whether it rolls the pods."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    in_table = {c.value for c in CHANGES}
    assert {f"config.{k}" for k in values["config"]} <= in_table
