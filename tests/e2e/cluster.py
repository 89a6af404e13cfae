"""Helpers of the e2e tier: kubectl and helm against the cluster in KUBECONFIG,
in-cluster client pods, and waiting on conditions (never on sleeps)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "saga-stack"
VALUES = REPO / "values"
TOOLS = REPO / ".tools" / "bin"
RELEASE = "saga"

T = TypeVar("T")


class CommandFailed(RuntimeError):
    pass


def _tool(name: str) -> str:
    local = TOOLS / name
    return str(local) if local.is_file() else name


def run(
    argv: Sequence[str], *, timeout: float = 300, check: bool = True, stdin: str | None = None
) -> str:
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False, input=stdin
    )
    if check and proc.returncode != 0:
        raise CommandFailed(
            f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr or proc.stdout}"
        )
    return proc.stdout


def kubectl(*args: str, timeout: float = 120, check: bool = True, stdin: str | None = None) -> str:
    return run([_tool("kubectl"), *args], timeout=timeout, check=check, stdin=stdin)


def kubectl_json(*args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json"))


def helm(*args: str, timeout: float = 900, check: bool = True) -> str:
    return run([_tool("helm"), *args], timeout=timeout, check=check)


def wait_for(
    what: str, probe: Callable[[], T | None], *, timeout: float = 300, every: float = 2
) -> T:
    """Polls `probe` until it returns something truthy; fails naming `what` and the last error."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
        except (CommandFailed, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
            last_error = exc
        time.sleep(every)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what}"
        + (f": {last_error}" if last_error else "")
    )


def install_values() -> list[str]:
    """The values files `make up` uses: the local profile, plus the offline images overlay when
    the cluster runs locally built images."""
    files = ["-f", str(VALUES / "local.yaml")]
    overlay = VALUES / "offline-images.yaml"
    if os.environ.get("SAGA_STACK_IMAGES", "offline") == "offline" and overlay.is_file():
        files += ["-f", str(overlay)]
    return files


def ready_pods(namespace: str, selector: str) -> list[dict[str, Any]]:
    pods = kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"]
    return [
        p
        for p in pods
        if p["metadata"].get("deletionTimestamp") is None
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )
    ]


APP_SELECTOR = "app.kubernetes.io/name=saga-stack,app.kubernetes.io/component=app"


def client_pod(namespace: str, name: str, image: str, labels: dict[str, str] | None = None) -> str:
    """A long-running pod to run commands from inside the cluster (not part of the release)."""
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"saga-stack.io/e2e-client": "true", **(labels or {})},
        },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "client",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python3", "-c", "import time; time.sleep(3600)"],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    kubectl(
        "wait",
        "-n",
        namespace,
        f"pod/{name}",
        "--for=condition=Ready",
        "--timeout=180s",
        timeout=200,
    )
    return name


def run_python_in(namespace: str, pod: str, code: str, *, timeout: float = 300) -> Any:
    """Runs Python in the client pod; the code prints one JSON document, returned parsed."""
    out = kubectl("exec", "-n", namespace, pod, "--", "python3", "-c", code, timeout=timeout)
    return json.loads(out.strip().splitlines()[-1])
