"""The offline images keep the interface the chart relies on, each run with plain `docker run`
under the chart's security settings (ci/images/smoke.sh: its `--help` lists the checks).

The cluster tests see these images only through the chart; this catches what they would
report as a mystery: a wrong password accepted, storage reformatted on restart, a tool
missing from the Kafka image, a service-link variable taken as a setting. It runs in the
e2e tier because that is where `ci/up.sh` has built the images; its containers and network
are its own and removed afterwards. The whole output is kept as an artifact.
"""

from __future__ import annotations

import subprocess

from tests.e2e.cluster import REPO
from tests.e2e.releases import RESULTS

SMOKE = REPO / "ci" / "images" / "smoke.sh"


def test_every_image_keeps_the_interface_the_chart_relies_on() -> None:
    log = RESULTS / "images-smoke.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [str(SMOKE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    output = proc.stdout
    log.write_text(output)
    failed = [line for line in output.splitlines() if "FAIL:" in line]
    assert proc.returncode == 0, (
        f"{SMOKE.name} exited {proc.returncode} (log: {log}):\n"
        + "\n".join(failed or output.splitlines()[-40:])
    )
    assert output.rstrip().endswith(" passed, 0 failed"), output[-2000:]
