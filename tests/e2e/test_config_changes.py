"""A setting the app reloads (docs/app-contract.md, SAGA_RUNTIME_CONFIG) changed on a live
release with `helm upgrade`: the same pods, none restarted, take the new value from the
runtime ConfigMap once the kubelet has updated the mounted file. Which values roll the pods
and which do not is the table tests/unit/test_chart_restarts.py derives from renders
($SAGA_STACK_RESULTS/config-restarts.md); this is that table's "no" proven on a cluster.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.e2e.cluster import (
    APP_SELECTOR,
    APP_SERVICE,
    CHART,
    RELEASE,
    helm,
    kubectl,
    kubectl_json,
    ready_pods,
    wait_for,
)
from tests.e2e.releases import RESULTS

READ_CONFIG = (
    "import urllib.request; "
    "print(urllib.request.urlopen('http://127.0.0.1:8080/config', timeout=5).read().decode())"
)


def config_of(namespace: str, pod: str) -> dict[str, Any]:
    """What GET /config of this pod says is in effect."""
    out = kubectl("exec", "-n", namespace, pod, "-c", "app", "--", "python3", "-c", READ_CONFIG)
    answer: dict[str, Any] = json.loads(out)
    return answer


def app_pods(namespace: str) -> dict[str, str]:
    """Ready app pods: name -> uid."""
    pods = ready_pods(namespace, APP_SELECTOR)
    return {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}


def set_log_level(namespace: str, level: str) -> None:
    helm(
        "upgrade", RELEASE, str(CHART), "-n", namespace, "--reuse-values", "--wait",
        "--set", f"config.logLevel={level}",
    )  # fmt: skip


def test_a_reloadable_setting_takes_effect_in_the_same_pods(release: str) -> None:
    pods = app_pods(release)
    assert pods
    generation = kubectl_json("get", "deployment", "-n", release, APP_SERVICE)["metadata"][
        "generation"
    ]
    level = next(iter(config_of(release, name) for name in pods))["settings"]["LOG_LEVEL"]
    new = "DEBUG" if level != "DEBUG" else "INFO"
    started = time.monotonic()
    set_log_level(release, new)
    try:
        deployment = kubectl_json("get", "deployment", "-n", release, APP_SERVICE)
        assert deployment["metadata"]["generation"] == generation, "the pod template changed"

        def in_effect() -> dict[str, dict[str, Any]] | None:
            seen = {name: config_of(release, name) for name in pods}
            return seen if all(c["settings"]["LOG_LEVEL"] == new for c in seen.values()) else None

        seen = wait_for(f"LOG_LEVEL={new} in every app pod", in_effect, timeout=240, every=5)
        took = time.monotonic() - started
        assert app_pods(release) == pods, "an app pod was restarted or replaced"
        assert all(c["sources"]["LOG_LEVEL"] == "file" for c in seen.values()), seen
    finally:
        set_log_level(release, level)
    RESULTS.mkdir(parents=True, exist_ok=True)
    figures = {"setting": "LOG_LEVEL", "from": level, "to": new, "pods": len(pods),
               "seconds_until_in_effect_everywhere": round(took, 1)}  # fmt: skip
    (RESULTS / "e2e-config-reload.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))
