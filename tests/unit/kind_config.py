"""The kind cluster configuration that ``ci/cluster/kind-config.sh`` prints, parsed."""

from __future__ import annotations

import subprocess
from typing import Any

import yaml
from helm import REPO_ROOT

SCRIPT = REPO_ROOT / "ci" / "cluster" / "kind-config.sh"


def run_kind_config(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False
    )


def kind_config(*args: str) -> dict[str, Any]:
    done = run_kind_config(*args)
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config
