"""apiAuth: the app's API_TOKENS from a Secret (the user's, or one the chart generates), given
to the app and the load generator only; off by default, on in the production profile."""

from __future__ import annotations

import base64
from typing import Any

from helm import PROFILES, RELEASE, find, one, pod_spec, render

APP = f"{RELEASE}-saga-stack"
GENERATED = f"{APP}-api-tokens"


def env_refs(workload: dict[str, Any]) -> dict[str, Any]:
    return {
        e["name"]: e.get("valueFrom", {}).get("secretKeyRef")
        for c in pod_spec(workload)["containers"]
        for e in c.get("env", [])
    }


def test_off_by_default_nothing_asks_for_a_token() -> None:
    objects = render(values={"loadGenerator.enabled": True})
    assert not find(objects, "Secret", GENERATED)
    for workload in find(objects, "Deployment") + find(objects, "Job"):
        assert "API_TOKENS" not in env_refs(workload)
        assert "LOADGEN_API_TOKEN" not in env_refs(workload)


def test_on_the_chart_generates_a_long_token_for_the_app_and_the_load_generator() -> None:
    objects = render(values={"apiAuth.enabled": True, "loadGenerator.enabled": True})
    secret = one(objects, "Secret", GENERATED)
    token = base64.b64decode(secret["data"]["api-tokens"]).decode()
    assert len(token) == 48 and token.isalnum()
    ref = {"name": GENERATED, "key": "api-tokens"}
    assert env_refs(one(objects, "Deployment", APP))["API_TOKENS"] == ref
    (load,) = [j for j in find(objects, "Job") if "LOADGEN_TARGET" in env_refs(j)]
    assert env_refs(load)["LOADGEN_API_TOKEN"] == ref


def test_only_the_app_gets_the_tokens() -> None:
    objects = render(values={"apiAuth.enabled": True, "jobs.enabled": True})
    holders = [
        w["metadata"]["name"]
        for w in find(objects, "Deployment") + find(objects, "Job") + find(objects, "CronJob")
        if "API_TOKENS" in env_refs(w)
    ]
    assert holders == [APP]


def test_a_secret_of_your_own_is_used_as_it_is() -> None:
    objects = render(
        values={
            "apiAuth.enabled": True,
            "apiAuth.existingSecret": "shop-tokens",
            "apiAuth.existingSecretKey": "writers",
        }
    )
    assert not find(objects, "Secret", GENERATED)
    assert env_refs(one(objects, "Deployment", APP))["API_TOKENS"] == {
        "name": "shop-tokens",
        "key": "writers",
    }


def test_the_production_profile_asks_for_tokens_from_its_credentials_secret() -> None:
    (production,) = [p for p in PROFILES if p.stem == "production"]
    objects = render([production])
    assert env_refs(one(objects, "Deployment", APP))["API_TOKENS"] == {
        "name": "saga-credentials",
        "key": "api-tokens",
    }
