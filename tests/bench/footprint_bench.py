"""Footprint benchmark (a command, not a test): what every container of the local profile
uses, idle and under load, beside what the profile requests and allows, and how big the
images it runs are.

    python -m tests.bench.footprint_bench [--idle 60] [--rate 20] [--duration 90] [--out DIR]

Installs the local profile as `make up` does (namespace saga-footprint-*, removed at the
end), then samples metrics-server every 15 s (its resolution): for --idle s once every pod
is Ready, then while the chart's load generator sends --rate orders/s for --duration s (the
HPA may add app pods: they are reported too). Per container: CPU median and maximum,
memory maximum, idle and loaded, its requests and limits, and its loaded memory as a share
of its limit. Image sizes are the local Docker engine's, for the images the pods run.

Writes DIR/footprint-bench.json and footprint-bench.png, and prints the JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.bench.machine import load_average, machine
from tests.bench.scaling_bench import ensure_cluster, say, start_load
from tests.e2e.cluster import REPO, install_values, kubectl_json, pod_usage
from tests.e2e.releases import installed_release
from tests.e2e.scaling import finished, load_jobs, quantity

METRICS_RESOLUTION_S = 15.0
MIB = 2.0**20


def sample(
    namespace: str, seconds: float, until: Callable[[], bool] | None = None
) -> dict[str, list[dict[str, float]]]:
    """Every container's CPU (millicores) and memory (MiB), every METRICS_RESOLUTION_S for
    `seconds` or until `until()` is true: {"pod/container": [{"cpu_m": .., "memory_mib": ..}]}."""
    series: dict[str, list[dict[str, float]]] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (until and until()):
        began = time.monotonic()
        for pod, usage in pod_usage(namespace).items():
            containers = {key.rsplit(" ", 1)[0] for key in usage}
            for container in containers:
                series.setdefault(f"{pod}/{container}", []).append(
                    {
                        "cpu_m": quantity(usage[f"{container} cpu"]) * 1000,
                        "memory_mib": quantity(usage[f"{container} memory"]) / MIB,
                    }
                )
        time.sleep(max(0.0, METRICS_RESOLUTION_S - (time.monotonic() - began)))
    return series


def summary(points: list[dict[str, float]]) -> dict[str, float]:
    cpu = [p["cpu_m"] for p in points]
    return {
        "cpu_m_median": round(statistics.median(cpu), 1),
        "cpu_m_max": round(max(cpu), 1),
        "memory_mib_max": round(max(p["memory_mib"] for p in points), 1),
        "samples": len(points),
    }


def declared(namespace: str) -> dict[str, dict[str, Any]]:
    """Each container's image, requests and limits (finished Jobs' too): {"pod/container":
    {...}}."""
    out: dict[str, dict[str, Any]] = {}
    for pod in kubectl_json("get", "pods", "-n", namespace)["items"]:
        for c in pod["spec"]["containers"]:
            resources = c.get("resources", {})
            out[f"{pod['metadata']['name']}/{c['name']}"] = {
                "image": c["image"],
                "requests": resources.get("requests", {}),
                "limits": resources.get("limits", {}),
            }
    return out


def image_sizes_mb(images: set[str]) -> dict[str, float | None]:
    """Each image's size as `docker images` shows it (MB), None where the engine lacks it."""
    sizes: dict[str, float | None] = {}
    for image in sorted(images):
        result = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Size}}", image],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        sizes[image] = round(int(result.stdout) / 1e6, 1) if result.returncode == 0 else None
    return sizes


def report_rows(
    spec: dict[str, dict[str, Any]],
    idle: dict[str, list[dict[str, float]]],
    loaded: dict[str, list[dict[str, float]]],
) -> list[dict[str, Any]]:
    rows = []
    for name in sorted(set(idle) | set(loaded)):
        row: dict[str, Any] = {"container": name, **spec.get(name, {})}
        if name in idle:
            row["idle"] = summary(idle[name])
        if name in loaded:
            row["loaded"] = summary(loaded[name])
        limit = row.get("limits", {}).get("memory")
        peak = max(
            (row[phase]["memory_mib_max"] for phase in ("idle", "loaded") if phase in row),
            default=None,
        )
        if limit and peak is not None:
            row["memory_peak_of_limit"] = round(peak * MIB / quantity(limit), 2)
        rows.append(row)
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["container"] for r in rows]
    fig, axes = plt.subplots(2, 1, figsize=(10, 2 + 0.35 * len(rows) * 2), sharey=True)
    for ax, unit, key, field in (
        (axes[0], "memory (MiB)", "memory_mib_max", "memory"),
        (axes[1], "CPU (millicores)", "cpu_m_max", "cpu"),
    ):
        y = range(len(rows))
        idle = [r.get("idle", {}).get(key, 0) for r in rows]
        loaded = [r.get("loaded", {}).get(key, 0) for r in rows]
        ax.barh([i + 0.2 for i in y], loaded, height=0.4, label="loaded (max)")
        ax.barh([i - 0.2 for i in y], idle, height=0.4, label="idle (max)")
        for i, r in enumerate(rows):
            for bound, style in (("requests", "|"), ("limits", "x")):
                value = r.get(bound, {}).get(field)
                if value:
                    scale = 1 / MIB if field == "memory" else 1000
                    ax.plot(quantity(value) * scale, i, style, color="black")
        ax.set_yticks(list(y), names, fontsize=7)
        ax.set_xlabel(f"{unit}; | request, x limit")
        ax.legend(loc="lower right")
    fig.suptitle("Local profile: use per container, idle and under load")
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--idle", type=float, default=60, help="seconds of idle sampling")
    parser.add_argument("--rate", type=float, default=20, help="orders/s of the load")
    parser.add_argument("--duration", type=float, default=90, help="seconds of load")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    args = parser.parse_args(argv)

    ensure_cluster()
    load_before = load_average()
    say("installing the local profile")
    with installed_release(install_values(), prefix="saga-footprint") as namespace:
        say(f"idle: sampling {namespace} for {args.idle:.0f}s")
        spec = declared(namespace)
        idle = sample(namespace, args.idle)
        job = start_load(namespace, "footprint", args.rate, args.duration)
        say(f"loaded: {args.rate}/s for {args.duration:.0f}s ({job})")

        def load_ended() -> bool:
            return any(finished(j) for j in load_jobs(namespace) if j["metadata"]["name"] == job)

        loaded = sample(namespace, args.duration + 60, until=load_ended)
        spec |= declared(namespace)
    rows = report_rows(spec, idle, loaded)
    report = {
        "machine": machine(load_before),
        "load": {"rate": args.rate, "duration_s": args.duration},
        "images_mb": image_sizes_mb({r["image"] for r in rows if "image" in r}),
        "containers": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "footprint-bench.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(rows, args.out / "footprint-bench.png")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
