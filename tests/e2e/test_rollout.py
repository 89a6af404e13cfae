"""A rolling update under load: while the chart's load generator sends orders at a steady
rate through the ingress controller (the local profile's `loadGenerator.through: ingress`,
as a client outside the cluster), `helm upgrade` changes the app's pod template and every
app pod is replaced. The generator is a keep-alive HTTP client, as most real clients are;
the controller keeps its own connections to the pods, which stay on a stopping pod until
it sees the endpoint go: the app's drain (docs/app-contract.md, SIGTERM) must move them
without a failed request. The figures (with the consumer group's rebalance pauses, which
the new pods log) go to $SAGA_STACK_RESULTS/e2e-rollout.json.
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
    ready_pods,
    wait_for,
)
from tests.e2e.releases import RESULTS
from tests.e2e.scaling import finished, load_jobs

# The rollout must end inside the load: its upgrade's hook Jobs plus one surge pod after
# another took 40-90 s here, for 3 to 5 pods (the HPA scales the app out under this load).
LOAD_SECONDS = 150


def job_lines(namespace: str, job: dict[str, Any]) -> list[dict[str, Any]]:
    log = kubectl("logs", "-n", namespace, f"job/{job['metadata']['name']}")
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def sending(namespace: str, run_id: str) -> dict[str, Any] | None:
    """The run's Job once it has reported at least 5 seconds of load."""
    for job in load_jobs(namespace):
        env = job["spec"]["template"]["spec"]["containers"][0].get("env", [])
        if {"name": "LOADGEN_RUN_ID", "value": run_id} not in env:
            continue
        progress = [
            line
            for line in job_lines(namespace, job)
            if line.get("type") == "progress" and line.get("phase") == "load"
        ]
        return job if len(progress) >= 5 else None
    return None


def rebalance_pauses(namespace: str, pods: list[dict[str, Any]]) -> list[float]:
    """The pause of every consumer-group rebalance the pods logged (each member logs its own
    time from revoke to assignment; aiokafka's rebalances stop every member at once)."""
    pauses: list[float] = []
    for pod in pods:
        log = kubectl("logs", "-n", namespace, pod["metadata"]["name"], "-c", "app")
        pauses += [
            float(json.loads(line)["pause_seconds"])
            for line in log.splitlines()
            if '"consumer group rebalanced"' in line
        ]
    return pauses


def test_a_rolling_update_under_load_fails_no_request(release: str) -> None:
    run_id = f"rollout-{int(time.time())}"
    before = {p["metadata"]["uid"] for p in ready_pods(release, APP_SELECTOR)}
    # No --wait: the load scales the app out, and Helm would wait for those pods too while
    # the load runs down; the generator's own progress says when it is under way.
    helm(
        "upgrade", RELEASE, str(CHART), "-n", release, "--reuse-values",
        "--set", "loadGenerator.enabled=true",
        "--set", f"loadGenerator.runId={run_id}",
        "--set", "loadGenerator.rate=15",
        "--set", f"loadGenerator.duration={LOAD_SECONDS}",
        "--set", "loadGenerator.waitSeconds=180",
    )  # fmt: skip
    job = wait_for("the load generator under way", lambda: sending(release, run_id), timeout=300)

    started = time.monotonic()
    helm(
        "upgrade", RELEASE, str(CHART), "-n", release, "--reuse-values",
        "--set-string", f"podAnnotations.saga-stack\\.io/rollout={run_id}",
    )  # fmt: skip
    kubectl("rollout", "status", f"deployment/{APP_SERVICE}", "-n", release, "--timeout=300s")
    rollout_seconds = time.monotonic() - started
    during = [
        line
        for line in job_lines(release, job)
        if line.get("type") == "progress" and line.get("phase") == "load"
    ]
    assert len(during) < LOAD_SECONDS, (
        f"the rollout took {rollout_seconds:.0f} s and ended after the {LOAD_SECONDS} s load "
        f"({len(during)} s of it had passed): nothing was proven"
    )
    new_pods = ready_pods(release, APP_SELECTOR)
    after = {p["metadata"]["uid"] for p in new_pods}
    assert after and not before & after, "not every app pod was replaced"
    pauses = rebalance_pauses(release, new_pods)

    name = job["metadata"]["name"]

    def done() -> dict[str, Any] | None:
        return next((j for j in load_jobs(release) if j["metadata"]["name"] == name), None)

    job = wait_for(
        "the load generator Job to finish",
        lambda: j if (j := done()) is not None and finished(j) else None,
        timeout=420,
        every=5,
    )
    summary = job_lines(release, job)[-1]
    assert summary["type"] == "summary", summary
    assert summary["accepted"] > 0, summary
    assert summary["errors"] == 0, summary["errors_by_status"]
    assert summary["sagas"]["stuck"] == 0 and summary["sagas"]["tracked"] > 0, summary["sagas"]
    figures = {
        "rollout_seconds": round(rollout_seconds, 1),
        "pods_replaced": len(before),
        "offered": summary["offered"],
        "accepted": summary["accepted"],
        "errors": summary["errors"],
        "post_latency_ms": summary["post_latency_ms"],
        "sagas": summary["sagas"],
        # as seen by the pods that replaced the old ones
        "rebalance_pause_s": {
            "count": len(pauses),
            "max": round(max(pauses, default=0.0), 3),
            "total": round(sum(pauses), 3),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "e2e-rollout.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))
