"""Autoscaling on the saga backlog, on a release of its own: Prometheus scrapes the app,
prometheus-adapter serves the backlog as an external metric, and under a load step from
the chart's load-generator Job the HPA adds pods, then removes them once the load stops.

The release's HPA has the backlog as its only metric (CPU and memory off), so any
scaling seen here is the backlog's doing. Each saga step waits 100 ms
(SAGA_STEP_DELAY_MS, as a slow downstream call would), so one pod's capacity is set by
its consumer concurrency rather than by how busy the machine's two cores are.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.cluster import (
    APP_SELECTOR,
    APP_SERVICE,
    CHART,
    RELEASE,
    helm,
    install_values,
    kubectl,
    kubectl_json,
    ready_pods,
    wait_for,
)
from tests.e2e.releases import installed_release
from tests.e2e.scaling import (
    EXTERNAL_API,
    app_pods_ready,
    external_backlog,
    finished,
    load_jobs,
    prometheus,
    quantity,
    scaling_values,
)
from tests.unit import chart_metrics
from tests.unit import helm as unit_helm


@pytest.fixture(scope="module")
def monitoring(cluster: list[str]) -> None:
    """Prometheus and the adapter, which `make up` / `ci/up.sh` install beside the releases."""
    service = kubectl_json("get", "apiservice", f"v1beta1.{EXTERNAL_API.split('/')[0]}")
    available = [c for c in service["status"].get("conditions", []) if c["type"] == "Available"]
    assert available and available[0]["status"] == "True", (
        f"the external metrics API is not available ({available}): ci/up.sh installs "
        "Prometheus and prometheus-adapter (ci/monitoring/up.sh does it alone)"
    )


@pytest.fixture(scope="module")
def scaling_release(monitoring: None) -> Iterator[str]:
    with installed_release(
        [*install_values(), *scaling_values()], prefix="saga-scale"
    ) as namespace:
        yield namespace


def test_prometheus_scrapes_every_app_pod(scaling_release: str) -> None:
    pods = {p["metadata"]["name"] for p in ready_pods(scaling_release, APP_SELECTOR)}
    query = f'up{{namespace="{scaling_release}", service="{APP_SERVICE}"}}'

    def every_pod_up() -> list[dict[str, Any]] | None:
        series = prometheus(query)
        scraped = {s["metric"]["pod"] for s in series if s["value"][1] == "1"}
        return series if scraped == pods else None

    up = wait_for("Prometheus to scrape every app pod", every_pod_up, timeout=120)
    assert len(up) == len(pods)


def test_the_backlog_is_an_external_metric(scaling_release: str) -> None:
    backlog = wait_for(
        "the adapter to serve the release's backlog",
        lambda: [external_backlog(scaling_release)],
        timeout=120,
    )
    assert backlog[0] >= 0


def test_hpa_scales_out_on_the_backlog_and_back_in(scaling_release: str) -> None:
    hpa = kubectl_json("get", "hpa", "-n", scaling_release, APP_SERVICE)
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["External"]
    assert app_pods_ready(scaling_release) == 1

    helm(
        "upgrade", RELEASE, str(CHART), "-n", scaling_release, "--reuse-values",
        "--set", "loadGenerator.enabled=true",
        "--set", "loadGenerator.rate=40",
        "--set", "loadGenerator.duration=60",
        "--set", "loadGenerator.waitSeconds=240",
        # The run overloads one pod on purpose: how many requests its 64 slots could not
        # send on time depends on the machine, so the generator's own gate is off and the
        # test checks what must hold anywhere (no failed request, no stuck saga).
        "--set", "loadGenerator.extraEnv[0].name=LOADGEN_MAX_ERROR_RATIO",
        "--set-string", "loadGenerator.extraEnv[0].value=1",
    )  # fmt: skip

    def scaled_out() -> dict[str, Any] | None:
        status: dict[str, Any] = kubectl_json("get", "hpa", "-n", scaling_release, APP_SERVICE)[
            "status"
        ]
        if status.get("desiredReplicas", 1) >= 2 and app_pods_ready(scaling_release) >= 2:
            return status
        return None

    status = wait_for("the HPA to add a Ready app pod under load", scaled_out, timeout=300)
    [current] = [m["external"]["current"] for m in status["currentMetrics"]]
    assert quantity(current["averageValue"]) > 0

    job = wait_for(
        "the load generator Job to finish",
        lambda: next((j for j in load_jobs(scaling_release) if finished(j)), None),
        timeout=600,
        every=5,
    )
    log = kubectl("logs", "-n", scaling_release, f"job/{job['metadata']['name']}")
    summary = json.loads(log.strip().splitlines()[-1])
    assert job["status"].get("succeeded") == 1, summary
    assert summary["accepted"] > 0, summary
    # Scale-ins happen while requests are still under way: a pod leaving fails none of them.
    assert summary["errors"] == 0, summary["errors_by_status"]
    assert summary["sagas"]["stuck"] == 0 and summary["sagas"]["tracked"] > 0, summary["sagas"]
    print(json.dumps({k: summary[k] for k in ("offered", "sent", "unsent", "accepted")}))

    wait_for(
        "the HPA to go back to one pod once the backlog is gone",
        lambda: (
            kubectl_json("get", "hpa", "-n", scaling_release, APP_SERVICE)["status"].get(
                "desiredReplicas"
            )
            == 1
            and app_pods_ready(scaling_release) == 1
        ),
        timeout=420,
        every=5,
    )
    assert external_backlog(scaling_release) == 0


def test_dashboard_and_alert_queries_run_on_the_live_prometheus(scaling_release: str) -> None:
    """What Grafana would show: every dashboard query, for this release, returns data from
    the live Prometheus (the app's metrics, `up`, and the kubelets' cAdvisor series), except
    the kube-state-metrics ones, which nothing collects here, and the job workers' ones,
    since this release runs none; every alert expression evaluates."""
    objects = unit_helm.render(extra=chart_metrics.MONITORING_API)
    failures = []
    for board_name, board in chart_metrics.dashboards(objects).items():
        for expr in chart_metrics.dashboard_exprs(board):
            if "$job-worker" in expr:
                # The job workers' panels: this release runs no workers (jobs are off by
                # default), so their series cannot exist here.
                continue
            query = expr.replace("$namespace", scaling_release).replace("$job", APP_SERVICE)
            names = chart_metrics.dashboard_metrics({"panels": [{"targets": [{"expr": expr}]}]})
            result = prometheus(query)
            if not {n for n in names if n.startswith("kube_")} and not result:
                failures.append(f"{board_name}: no data for {query}")
    for group in chart_metrics.rule_groups(objects):
        for rule in group["rules"]:
            prometheus(rule["expr"])  # raises on a query Prometheus refuses
    assert failures == []
