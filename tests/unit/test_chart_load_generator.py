"""The load generator Job: off by default, a new Job per setting, reaches only the app."""

from __future__ import annotations

from typing import Any

import k8s_openapi
from helm import RELEASE, find, one, pod_spec, render, render_error

APP = f"{RELEASE}-saga-stack"
ON = {"loadGenerator.enabled": True}


def load_jobs(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        o
        for o in find(objects, "Job")
        if o["metadata"]["labels"].get("app.kubernetes.io/component") == "load-generator"
    ]


def load_job(values: dict[str, Any]) -> dict[str, Any]:
    job: dict[str, Any] = one(load_jobs(render(values={**ON, **values})), "Job")
    return job


def env(job: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod_spec(job)["containers"][0]["env"]}


def test_off_by_default() -> None:
    objects = render()
    assert not load_jobs(objects)
    assert not find(objects, "NetworkPolicy", f"{APP}-load-generator")


def test_runs_the_app_image_against_the_service(k8s_schemas: list[str]) -> None:
    objects = render(values={**ON, "loadGenerator.rate": 35, "loadGenerator.duration": 90})
    job = one(load_jobs(objects), "Job")
    container = pod_spec(job)["containers"][0]
    assert container["args"] == ["loadgen"]
    assert (
        container["image"]
        == one(objects, "Deployment", "saga-saga-stack")["spec"]["template"]["spec"]["containers"][
            0
        ]["image"]
    )
    assert env(job)["LOADGEN_TARGET"] == f"http://{APP}:80"
    assert env(job)["LOADGEN_RATE"] == "35" and env(job)["LOADGEN_DURATION"] == "90"
    assert job["spec"]["backoffLimit"] == 0
    assert k8s_openapi.schema_errors([job], k8s_schemas) == []


def test_a_changed_setting_or_run_id_is_a_new_job() -> None:
    names = {
        load_job(values)["metadata"]["name"]
        for values in ({}, {"loadGenerator.rate": 21}, {"loadGenerator.runId": "again"})
    }
    assert len(names) == 3
    assert load_job({})["metadata"]["name"] == load_job({})["metadata"]["name"]


def test_is_not_selected_by_the_app_service() -> None:
    objects = render(values=ON)
    selector = one(objects, "Service", APP)["spec"]["selector"]
    labels = load_job({})["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= labels.items()


def test_network_policy_lets_it_reach_the_app_http_port_only() -> None:
    policy = one(render(values=ON), "NetworkPolicy", f"{APP}-load-generator")
    assert policy["spec"]["policyTypes"] == ["Egress"]
    [rule] = policy["spec"]["egress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "app"


def test_bad_settings_are_refused_naming_the_key() -> None:
    assert "/loadGenerator/rate" in render_error(values={**ON, "loadGenerator.rate": 0})
    assert "/loadGenerator/runId" in render_error(values={**ON, "loadGenerator.runId": "a b"})
    assert "/loadGenerator/declineRatio" in render_error(
        values={**ON, "loadGenerator.declineRatio": 2}
    )
