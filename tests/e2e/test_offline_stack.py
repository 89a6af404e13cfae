"""The parts of the offline stack the chart stands on, checked on their own by the scripts
that come with them; each prints PASS/FAIL (ok/FAIL) per check and its whole output is
kept as an artifact under $SAGA_STACK_RESULTS.

- ci/images/smoke.sh runs every offline image with plain `docker run` under the chart's
  security settings. The release tests see the images only through the chart; this
  catches what they would report as a mystery: a wrong password accepted, storage
  reformatted on restart, a tool missing from the Kafka image, a service-link variable
  taken as a setting.
- ci/cluster/smoke.sh is the quick health check of the cluster itself (DNS, a dynamic
  volume, pods on both workers, cross-node Service traffic, the metrics API, NetworkPolicy
  enforced): the first thing to run when a release misbehaves, so it must keep working.
- ci/monitoring/smoke.sh gives the external metrics API a stand-in exporter with a fixed
  backlog of 42 in a namespace of its own: the adapter must answer exactly 42 for that
  namespace (no other's series) and an HPA must scale 1 -> 3 on it. The autoscaling tests
  see the real app's backlog, which never holds still long enough to check the sum.

Their containers, network and namespace are their own and removed afterwards.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.e2e.cluster import REPO
from tests.e2e.releases import RESULTS


def run_checks(script: Path, artifact: str, **env: str) -> str:
    """Runs `script` (with `env` added), keeps its output in RESULTS/`artifact`, and fails
    naming the checks that failed."""
    log = RESULTS / artifact
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env},
    )
    log.write_text(proc.stdout)
    failed = [line for line in proc.stdout.splitlines() if "FAIL:" in line]
    assert proc.returncode == 0, (
        f"{script.relative_to(REPO)} exited {proc.returncode} (whole output: {log}):\n"
        + "\n".join(failed or proc.stdout.splitlines()[-40:])
    )
    return proc.stdout


def test_every_image_keeps_the_interface_the_chart_relies_on() -> None:
    output = run_checks(REPO / "ci" / "images" / "smoke.sh", "images-smoke.log")
    assert output.rstrip().endswith(" passed, 0 failed"), output[-2000:]


def test_the_metrics_adapter_serves_each_namespace_its_own_backlog_and_an_hpa_scales_on_it() -> (
    None
):
    output = run_checks(REPO / "ci" / "monitoring" / "smoke.sh", "monitoring-smoke.log")
    assert "PASS: the probe namespace's backlog is exactly 42" in output, output[-2000:]
    assert "PASS: the HPA reads 42 (target 20 per pod) and scales the worker 1 -> 3" in output
    assert output.rstrip().endswith(" 0 failed"), output[-2000:]


def test_the_cluster_serves_dns_volumes_cross_node_traffic_metrics_and_network_policy() -> None:
    output = run_checks(
        REPO / "ci" / "cluster" / "smoke.sh", "cluster-smoke.log", SMOKE_EXPECT_NETPOL="1"
    )
    assert "PASS: NetworkPolicy: outsider is blocked" in output, output[-2000:]
    assert output.rstrip().endswith(" 0 failed"), output[-2000:]
