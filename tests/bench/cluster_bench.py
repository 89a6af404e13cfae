"""Local-cluster benchmark (a command, not a test): how long `make up` takes and what it costs.

    python -m tests.bench.cluster_bench [--cold] [--out bench-results]

Warm: removes the cluster (caches stay), then times `ci/up.sh --no-install` (cluster +
images into the nodes) and `ci/up.sh` again (adds the chart install on the running
cluster). Cold (`--cold`, 20-40 minutes on 2 cores): the same with an empty build
cache in a temporary SAGA_STACK_CACHE, which is removed afterwards; Go's module
download cache is shared, so a brand-new machine adds its download time.
Also reports the disk used by the caches and the Docker images. Writes
bench-results/cluster-bench.json and cluster-bench.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = Path(os.environ.get("SAGA_STACK_CACHE", Path.home() / ".cache" / "saga-stack"))


def timed(argv: list[str], env: dict[str, str]) -> float:
    print(f"==> {' '.join(argv)}", file=sys.stderr, flush=True)
    started = time.monotonic()
    subprocess.run(argv, check=True, env=env)
    return round(time.monotonic() - started, 1)


def du(path: Path) -> int:
    if not path.exists():
        return 0
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def docker_images_bytes() -> int:
    out = subprocess.run(
        ["docker", "system", "df", "--format", "{{.Type}} {{.Size}}"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DOCKER_API_VERSION": os.environ.get("DOCKER_API_VERSION", "1.41")},
    )
    for line in out.stdout.splitlines():
        kind, _, size = line.partition(" ")
        if kind == "Images":
            units = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
            for unit in sorted(units, key=len, reverse=True):
                if size.endswith(unit):
                    return int(float(size[: -len(unit)]) * units[unit])
    return 0


def run_pass(label: str, env: dict[str, str]) -> dict[str, float]:
    timings = {}
    timed([str(REPO / "ci" / "down.sh")], env)
    timings[f"{label}: cluster + images"] = timed([str(REPO / "ci" / "up.sh"), "--no-install"], env)
    timings[f"{label}: chart install"] = timed([str(REPO / "ci" / "up.sh")], env)
    return timings


def plot(results: dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timings: dict[str, float] = results["seconds"]  # type: ignore[assignment]
    disk: dict[str, int] = results["disk_bytes"]  # type: ignore[assignment]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.barh(list(timings), list(timings.values()), color="tab:blue")
    left.set_xlabel("seconds")
    left.set_title("make up")
    right.barh(list(disk), [v / 2**30 for v in disk.values()], color="tab:orange")
    right.set_xlabel("GiB")
    right.set_title("disk")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cold", action="store_true", help="also time a build from an empty cache")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    env = dict(os.environ)
    seconds: dict[str, float] = {}
    if args.cold:
        cold_cache = Path(tempfile.mkdtemp(prefix="saga-stack-cold-", dir="/var/tmp"))
        try:
            seconds.update(run_pass("cold", {**env, "SAGA_STACK_CACHE": str(cold_cache)}))
        finally:
            shutil.rmtree(cold_cache, ignore_errors=True)
    seconds.update(run_pass("warm", env))
    disk = {
        "cache (binaries, images, rootfs)": du(DEFAULT_CACHE) - du(DEFAULT_CACHE / "go-build"),
        "Go build cache": du(DEFAULT_CACHE / "go-build"),
        "Docker images": docker_images_bytes(),
    }
    results = {"seconds": seconds, "disk_bytes": disk}
    (args.out / "cluster-bench.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / "cluster-bench.png")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
