"""Scaling benchmark (a command, not a test): how fast the backlog HPA reacts to a load step,
and what 1, 2 and 3 app pods deliver on this machine.

    python -m tests.bench.scaling_bench [--signal backlog|work|resources] [--steps 3]
                                        [--rate 40] [--duration 60] [--out bench-results]

Needs the cluster with Prometheus and prometheus-adapter (`make up`, or it runs
`ci/up.sh --no-install`). Installs a release of its own (namespace saga-bench-*, removed
at the end) with an HPA of 1 to 3 pods on one signal:
- backlog (the e2e tier's): the saga backlog from the external metrics API, each saga
  step waiting 100 ms as a slow downstream call would;
- work: the leading signal, backlog + messages running (75 % of a pod's consumer slots
  per pod), with the same step delay;
- resources: CPU (70 %) and memory (80 %) of the app's requests, from metrics-server,
  with no step delay, so that the app is bound by its CPU.

1. Load steps (--steps of them, each from one pod): the chart's load-generator Job sends
   --rate orders/s for --duration s. Sampled every 2 s: replicas wanted and Ready,
   backlog and work (external metrics API), p99 end-to-end saga latency and
   completions/s (Prometheus), the offered load (the Job's per-second lines). Figures:
   seconds from the first order sent to the first extra pod Ready (target 20 s), median
   and worst over the steps; how long after the load the HPA was back to one pod; the p99
   of the tracked sagas once started (first step to final state: the overload target,
   2 s) beside their end-to-end p99.
2. Throughput: HPA off, 1, 2 then 3 pods, each offered --saturate orders/s for
   --window s, more than they can take: completions/s from the first completion to
   the last (the backlog drained), when the app works at capacity (Prometheus), as a
   ratio to 1 pod, with the app's CPU use beside it. `make bench` measures it with
   `--signal resources`: no step delay, so the pods are bound by the machine's CPU.
   Where the CPU went, per level: each workload's cores beside its CPU limit, each
   container's share of throttled CFS periods (cpu.stat), and the host's busy cores (the
   cluster's nodes, control plane and add-ons share them with the release).

Writes bench-results/scaling-bench-<signal>.json and .png (the first step's timeline in
scaling-bench-<signal>-timeline.png), and prints the JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.e2e.cluster import (
    APP_SELECTOR,
    APP_SERVICE,
    CHART,
    RELEASE,
    REPO,
    CommandFailed,
    helm,
    install_values,
    kubectl,
    kubectl_json,
    wait_for,
)
from tests.e2e.scaling import (
    WORK,
    external_backlog,
    finished,
    load_jobs,
    prometheus,
    prometheus_range,
    resource_scaling_values,
    scaling_values,
    work_scaling_values,
)

SIGNAL_VALUES = {
    "backlog": scaling_values,
    "work": work_scaling_values,
    "resources": resource_scaling_values,
}

SAMPLE_EVERY = 2.0


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def scalar(query: str, at: float | None = None) -> float:
    result = prometheus(query, at=at)
    return float(result[0]["value"][1]) if result else 0.0


def ensure_cluster() -> None:
    try:
        kubectl("get", "--raw", "/readyz", timeout=20)
    except (CommandFailed, OSError):
        say("no cluster answers: ci/up.sh --no-install")
        subprocess.run([str(REPO / "ci" / "up.sh"), "--no-install"], check=True)


def start_load(namespace: str, run_id: str, rate: float, duration: float, *extra: str) -> str:
    """Starts a load-generator Job through `helm upgrade`; returns its name."""
    before = {j["metadata"]["name"] for j in load_jobs(namespace)}
    helm(
        "upgrade", RELEASE, str(CHART), "-n", namespace, "--reuse-values", *extra,
        "--set", "loadGenerator.enabled=true",
        "--set", f"loadGenerator.runId={run_id}",
        "--set", f"loadGenerator.rate={rate}",
        "--set", f"loadGenerator.duration={duration}",
        "--set", "loadGenerator.waitSeconds=300",
        "--set", "loadGenerator.extraEnv[0].name=LOADGEN_POLL_SAMPLE",
        "--set-string", "loadGenerator.extraEnv[0].value=200",
    )  # fmt: skip
    return str(
        wait_for(
            "the load Job",
            lambda: next(
                (j["metadata"]["name"] for j in load_jobs(namespace) if j["metadata"]["name"]
                 not in before),
                None,
            ),
            timeout=120,
        )
    )  # fmt: skip


def job_lines(namespace: str, job: str) -> list[dict[str, Any]]:
    out = kubectl("logs", "-n", namespace, f"job/{job}", check=False)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def started_at(namespace: str, job: str) -> float:
    """Wall-clock time of the Job's first order (the `start` line, else the pod's start)."""
    for line in job_lines(namespace, job):
        if line.get("type") == "summary" and line.get("started_at"):
            return datetime.fromisoformat(line["started_at"]).timestamp()
    pods = kubectl_json("get", "pods", "-n", namespace, "-l", f"job-name={job}")["items"]
    return datetime.fromisoformat(pods[0]["status"]["startTime"]).timestamp()


def ready_since(pod: dict[str, Any]) -> float | None:
    for c in pod["status"].get("conditions", []):
        if c["type"] == "Ready" and c["status"] == "True":
            return datetime.fromisoformat(c["lastTransitionTime"]).timestamp()
    return None


def load_step(namespace: str, rate: float, duration: float, run_id: str) -> dict[str, Any]:
    initial = {p["metadata"]["name"] for p in app_pods(namespace)}
    job = start_load(namespace, run_id, rate, duration)
    say(f"load step: {rate}/s for {duration}s ({job}); sampling every {SAMPLE_EVERY}s")
    samples: list[dict[str, Any]] = []
    first_extra_ready: float | None = None
    back_to_one_since: float | None = None
    t0 = time.time()
    while time.time() - t0 < duration + 600:
        now = time.time()
        pods = app_pods(namespace)
        ready = [p for p in pods if ready_since(p) is not None]
        for pod in ready:
            since = ready_since(pod)
            if pod["metadata"]["name"] not in initial and since is not None:
                first_extra_ready = min(first_extra_ready or since, since)
        hpa = kubectl_json("get", "hpa", "-n", namespace, APP_SERVICE)["status"]
        selector = f'namespace="{namespace}"'
        samples.append(
            {
                "t": now,
                "desired": hpa.get("desiredReplicas"),
                "ready": len(ready),
                "backlog": external_backlog(namespace),
                "work": external_backlog(namespace, WORK),
                "p99_s": scalar(
                    "histogram_quantile(0.99, sum by (le) (rate("
                    f"saga_end_to_end_duration_seconds_bucket{{{selector}}}[30s])))"
                ),
                "completed_per_s": scalar(f"sum(rate(saga_completed_total{{{selector}}}[30s]))"),
            }
        )
        jobs = [j for j in load_jobs(namespace) if j["metadata"]["name"] == job]
        done = bool(jobs) and finished(jobs[0])
        if done and len(ready) == 1 and samples[-1]["desired"] == 1:
            back_to_one_since = back_to_one_since or now
            break
        time.sleep(max(0.0, SAMPLE_EVERY - (time.time() - now)))
    start = started_at(namespace, job)
    offered = [
        {"t": start + line["t"], "offered": line.get("offered"), "sent": line.get("sent")}
        for line in job_lines(namespace, job)
        if line.get("type") == "progress"
    ]
    summary = next((x for x in job_lines(namespace, job) if x.get("type") == "summary"), {})
    sagas = summary.get("sagas") or {}
    return {
        "rate": rate,
        "duration_s": duration,
        "load_started_at": start,
        "first_extra_pod_ready_s": None
        if first_extra_ready is None
        else round(first_extra_ready - start, 1),
        "back_to_one_pod_after_load_s": None
        if back_to_one_since is None
        else round(back_to_one_since - (start + duration), 1),
        "max_replicas_ready": max(s["ready"] for s in samples),
        "max_backlog": max(s["backlog"] for s in samples),
        "run_p99_ms": (sagas.get("run_latency_ms") or {}).get("p99"),
        "e2e_p99_ms": (sagas.get("e2e_latency_ms") or {}).get("p99"),
        "samples": [{**s, "t": round(s["t"] - start, 1)} for s in samples],
        "offered": [{**o, "t": round(o["t"] - start, 1)} for o in offered],
        "loadgen_summary": {k: summary.get(k) for k in ("ok", "accepted", "errors", "sagas")},
    }


def reaction(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The first-extra-pod and back-to-one figures of every step, with median and worst."""
    out: dict[str, Any] = {}
    for key in ("first_extra_pod_ready_s", "back_to_one_pod_after_load_s", "run_p99_ms"):
        runs = [step[key] for step in steps]
        seen = [r for r in runs if r is not None]
        out[key] = {
            "runs": runs,
            "median": statistics.median(seen) if seen else None,
            "worst": None if None in runs or not seen else max(seen),
        }
    return out


def app_pods(namespace: str) -> list[dict[str, Any]]:
    pods = kubectl_json("get", "pods", "-n", namespace, "-l", APP_SELECTOR)["items"]
    return [p for p in pods if p["metadata"].get("deletionTimestamp") is None]


def drained(namespace: str) -> bool:
    return (
        external_backlog(namespace) == 0
        and scalar(f'sum(saga_in_flight{{namespace="{namespace}"}})') == 0
    )


def cpu_limit_cores(container: dict[str, Any]) -> float | None:
    limit = container.get("resources", {}).get("limits", {}).get("cpu")
    if limit is None:
        return None
    return float(limit[:-1]) / 1000 if str(limit).endswith("m") else float(limit)


def workload_cpu(namespace: str, seconds: int, at: float) -> dict[str, dict[str, float | None]]:
    """Each workload's CPU over the window (cores, summed over its pods, from the kubelets'
    cAdvisor) beside its pods' summed CPU limits: a workload at its limit is throttled, and
    what it serves waits for it."""
    by_pod = prometheus(
        f'sum by (pod) (rate(container_cpu_usage_seconds_total{{namespace="{namespace}",'
        f' container!=""}}[{seconds}s]))',
        at=at,
    )
    owners: dict[str, str] = {}
    container_limits: dict[str, list[float | None]] = {}
    for pod in kubectl_json("get", "pods", "-n", namespace)["items"]:
        labels = pod["metadata"].get("labels", {})
        workload = labels.get("app.kubernetes.io/component") or pod["metadata"]["name"]
        owners[pod["metadata"]["name"]] = workload
        container_limits.setdefault(workload, []).extend(
            cpu_limit_cores(c) for c in pod["spec"]["containers"]
        )
    limits: dict[str, float | None] = {
        name: None if None in values else round(sum(v for v in values if v is not None), 2)
        for name, values in container_limits.items()
    }
    usage: dict[str, float] = {}
    for sample in by_pod:
        workload = owners.get(sample["metric"].get("pod", ""))
        if workload is not None:
            usage[workload] = usage.get(workload, 0.0) + float(sample["value"][1])
    return {
        name: {"cores": round(cores, 2), "limit_cores": limits.get(name)}
        for name, cores in sorted(usage.items(), key=lambda kv: -kv[1])
    }


CPU_STAT = (
    "f=/sys/fs/cgroup/cpu.stat; [ -r $f ] || f=/sys/fs/cgroup/cpu/cpu.stat;"
    " while read -r k v; do echo $k $v; done < $f"
)


def cpu_throttling(namespace: str) -> dict[str, dict[str, int]]:
    """Each running container's CFS counters (cpu.stat of cgroup v2, or of v1's cpu
    controller; read with the shell's own builtins: the images carry no coreutils), keyed
    "pod/container"."""
    counters: dict[str, dict[str, int]] = {}
    running = kubectl_json("get", "pods", "-n", namespace, "--field-selector=status.phase=Running")
    for pod in running["items"]:
        for container in pod["spec"]["containers"]:
            out = kubectl(
                "exec", "-n", namespace, pod["metadata"]["name"], "-c", container["name"], "--",
                "sh", "-c", CPU_STAT,
                check=False, timeout=20,
            )  # fmt: skip
            stat = dict(line.split() for line in out.splitlines() if len(line.split()) == 2)
            if "nr_periods" in stat:
                counters[f"{pod['metadata']['name']}/{container['name']}"] = {
                    "nr_periods": int(stat["nr_periods"]),
                    "nr_throttled": int(stat["nr_throttled"]),
                    "throttled_usec": int(stat["throttled_usec"])
                    if "throttled_usec" in stat
                    else int(stat.get("throttled_time", 0)) // 1000,  # v1: nanoseconds
                }
    return counters


def throttled_share(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
) -> dict[str, dict[str, float]]:
    """Per container over the window: the share of CFS periods in which it was throttled,
    and the seconds it stood throttled (containers without a CPU limit never are)."""
    shares = {}
    for name, end in after.items():
        start = before.get(name, {"nr_periods": 0, "nr_throttled": 0, "throttled_usec": 0})
        periods = end["nr_periods"] - start["nr_periods"]
        if periods > 0:
            shares[name] = {
                "throttled_periods": round(
                    (end["nr_throttled"] - start["nr_throttled"]) / periods, 3
                ),
                "throttled_s": round((end["throttled_usec"] - start["throttled_usec"]) / 1e6, 1),
            }
    return shares


def host_cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole host (/proc/stat): the cluster's own nodes, control
    plane and add-ons share the cores with the release."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def throughput(namespace: str, replicas: int, rate: float, window: float) -> dict[str, Any]:
    """Completions/s while the app is saturated: the load outruns it, so from the first
    completion to the last (the backlog drained) it works at capacity throughout."""
    helm(
        "upgrade", RELEASE, str(CHART), "-n", namespace, "--reuse-values",
        "--set", "autoscaling.enabled=false", "--set", "autoscaling.backlog.enabled=false",
        "--set", f"replicas={replicas}", "--set", "loadGenerator.enabled=false", "--wait",
    )  # fmt: skip
    wait_for(f"{replicas} app pods Ready", lambda: len(app_pods(namespace)) == replicas)
    wait_for("every pod to consume", lambda: drained(namespace), timeout=300, every=5)
    job = start_load(namespace, f"fixed{replicas}", rate, window)
    cfs_before = cpu_throttling(namespace)
    host_before = host_cpu_ticks()
    wait_for(
        "the load to end",
        lambda: any(finished(j) for j in load_jobs(namespace) if j["metadata"]["name"] == job),
        timeout=900,
    )
    (busy_after, total_after), (busy_before, total_before) = host_cpu_ticks(), host_before
    share = (busy_after - busy_before) / max(1, total_after - total_before)
    host_busy = round((os.cpu_count() or 1) * share, 2)
    wait_for("the backlog to drain", lambda: drained(namespace), timeout=900, every=5)
    throttled = throttled_share(cfs_before, cpu_throttling(namespace))
    say("throttled periods: " + ", ".join(
        f"{name} {t['throttled_periods']:.0%}" for name, t in throttled.items()
    ))  # fmt: skip
    start, end = started_at(namespace, job), time.time()
    counts = prometheus_range(
        f'sum(saga_completed_total{{namespace="{namespace}"}})', start - 5, end, step=1
    )
    base = counts[0][1]
    moving = [t for (_, before), (t, v) in itertools.pairwise(counts) if v > before]
    if not moving:
        summary = job_lines(namespace, job)[-1:]
        raise RuntimeError(f"no saga completed during the {replicas}-pod run; load: {summary}")
    first, last = moving[0] - 1, moving[-1]
    completed = counts[-1][1] - base
    per_s = completed / (last - first)
    cpu = scalar(
        f'sum(rate(process_cpu_seconds_total{{namespace="{namespace}"}}[{int(last - first)}s]))',
        at=last,
    )
    say(
        f"{replicas} pod(s): {per_s:.1f} sagas/s over {last - first:.0f}s, app CPU {cpu:.2f}"
        f" cores, the host's cores busy during the load {host_busy}"
    )
    workloads = workload_cpu(namespace, int(last - first), at=last)
    say("CPU by workload (cores / limit): " + ", ".join(
        f"{name} {w['cores']}/{w['limit_cores']}" for name, w in workloads.items()
    ))  # fmt: skip
    return {
        "replicas": replicas,
        "sagas_per_s": round(per_s, 2),
        "completed": int(completed),
        "saturated_s": round(last - first, 1),
        "app_cpu_cores": round(cpu, 2),
        "host_cores_busy": host_busy,
        "cpu_by_workload": workloads,
        "cpu_throttling": throttled,
    }


def save(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"scaling-bench-{report['signal']}.json").write_text(json.dumps(report, indent=2) + "\n")


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = report.get("load_step")
    if step is None:
        return plot_throughput(report, path)
    fig, axes = plt.subplots(4, 1, figsize=(9, 11), sharex=True)
    t = [s["t"] for s in step["samples"]]
    axes[0].plot([o["t"] for o in step["offered"]], [o["sent"] for o in step["offered"]])
    axes[0].set_ylabel("orders sent /s")
    axes[1].step(t, [s["desired"] for s in step["samples"]], where="post", label="wanted")
    axes[1].step(t, [s["ready"] for s in step["samples"]], where="post", label="Ready")
    axes[1].set_ylabel("app pods")
    axes[1].legend()
    axes[2].plot(t, [s["backlog"] for s in step["samples"]], label="backlog")
    axes[2].plot(t, [s.get("work", 0) for s in step["samples"]], label="work (backlog + running)")
    axes[2].set_ylabel("messages")
    axes[2].legend()
    axes[3].plot(t, [s["p99_s"] for s in step["samples"]])
    axes[3].set_ylabel("p99 saga latency (s)")
    axes[3].set_xlabel("seconds since the load step")
    reaction = step["first_extra_pod_ready_s"]
    if reaction is not None:
        for ax in axes:
            ax.axvline(reaction, color="grey", linestyle=":")
    fig.suptitle(
        f"Load step {step['rate']}/s for {step['duration_s']}s: first extra pod Ready "
        f"after {reaction}s"
    )
    fig.tight_layout()
    fig.savefig(path.with_name(path.stem + "-timeline.png"))
    plot_throughput(report, path)


def plot_throughput(report: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    levels = report["throughput"]
    if levels:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.bar([str(x["replicas"]) for x in levels], [x["sagas_per_s"] for x in levels])
        for x in levels:
            ax.annotate(f"x{x['ratio_to_1']}", (str(x["replicas"]), x["sagas_per_s"]))
        ax.set_xlabel("app pods")
        ax.set_ylabel("sagas completed /s")
        fig.tight_layout()
        fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--signal", choices=tuple(SIGNAL_VALUES), default="backlog", help="what the HPA reads"
    )
    parser.add_argument("--steps", type=int, default=3, help="load steps, one after another")
    parser.add_argument("--rate", type=float, default=40, help="orders/s of the load step")
    parser.add_argument("--duration", type=float, default=60, help="seconds of the load step")
    parser.add_argument("--saturate", type=float, default=70, help="orders/s offered per level")
    parser.add_argument("--window", type=int, default=40, help="seconds of load per level")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-load-step", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    args = parser.parse_args(argv)

    ensure_cluster()
    namespace = f"saga-bench-{secrets.token_hex(3)}"
    kubectl("create", "namespace", namespace)
    try:
        say(f"installing the release in {namespace}")
        helm(
            "install", RELEASE, str(CHART), "-n", namespace, *install_values(),
            *SIGNAL_VALUES[args.signal](),
            "--wait", "--wait-for-jobs", "--timeout", "15m",
        )  # fmt: skip
        wait_for("the adapter to serve the backlog", lambda: [external_backlog(namespace)])
        report: dict[str, Any] = {
            "host": {"cpus": len(os.sched_getaffinity(0))},
            "signal": args.signal,
        }
        if not args.skip_load_step:
            steps: list[dict[str, Any]] = []
            for number in range(1, args.steps + 1):  # each its own Job (the name is the run id)
                steps.append(load_step(namespace, args.rate, args.duration, f"step{number}"))
                report["load_step"] = steps[0]
                report["reaction"] = reaction(steps)
                save(report, args.out)
        report["throughput"] = []
        save(report, args.out)  # the load step is kept even if a level fails
        if not args.skip_throughput:
            for replicas in (1, 2, 3):
                report["throughput"].append(
                    throughput(namespace, replicas, args.saturate, args.window)
                )
            for level in report["throughput"]:
                level["ratio_to_1"] = round(
                    level["sagas_per_s"] / report["throughput"][0]["sagas_per_s"], 2
                )
            save(report, args.out)
    finally:
        say(f"removing {namespace}")
        helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "5m", check=False)
        kubectl("delete", "namespace", namespace, "--timeout=5m", check=False, timeout=320)
    plot(report, args.out / f"scaling-bench-{args.signal}.png")
    brief = {
        k: v for k, v in report.get("load_step", {}).items() if k not in ("samples", "offered")
    }
    print(
        json.dumps(
            {
                "signal": report["signal"],
                "load_step": brief,
                "reaction": report.get("reaction"),
                "throughput": report["throughput"],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
