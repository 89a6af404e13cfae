"""Fixtures of the e2e tier: a real multi-node cluster and the chart installed on it.

`make test-e2e` runs `ci/up.sh --no-install` first, with its progress on the
terminal: it reuses a running cluster or creates one, and makes sure the
chart's images are in the nodes (each step is skipped when already done).
Run directly, the tier does the same when no cluster answers. KUBECONFIG
defaults to ~/.kube/config, where `ci/up.sh` puts the cluster. The chart
is installed through the helm CLI into a namespace of this run, and removed
at the end.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import (
    CHART,
    RELEASE,
    REPO,
    CommandFailed,
    client_pod,
    helm,
    install_values,
    kubectl,
    kubectl_json,
    run,
    wait_for,
)

DEFAULT_KUBECONFIG = Path.home() / ".kube" / "config"


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("KUBECONFIG", str(DEFAULT_KUBECONFIG))


def _cluster_answers() -> bool:
    try:
        kubectl("get", "--raw", "/readyz", timeout=20)
    except (CommandFailed, OSError):
        return False
    return True


@pytest.fixture(scope="session")
def cluster() -> list[str]:
    """Names of the Ready nodes; brings a cluster up when none answers."""
    if not _cluster_answers():
        run([str(REPO / "ci" / "up.sh"), "--no-install"], timeout=5400)
    assert _cluster_answers(), "ci/up.sh --no-install finished but the API server does not answer"
    nodes = wait_for(
        "every node Ready",
        lambda: (
            [
                n["metadata"]["name"]
                for n in kubectl_json("get", "nodes")["items"]
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in n["status"]["conditions"]
                )
            ]
            or None
        ),
        timeout=300,
    )
    return nodes


@pytest.fixture(scope="session")
def workers(cluster: list[str]) -> list[str]:
    nodes = kubectl_json("get", "nodes")["items"]
    return [
        n["metadata"]["name"]
        for n in nodes
        if "node-role.kubernetes.io/control-plane" not in n["metadata"].get("labels", {})
    ]


@pytest.fixture(scope="session")
def namespace(cluster: list[str]) -> Iterator[str]:
    name = f"saga-e2e-{secrets.token_hex(3)}"
    kubectl("create", "namespace", name)
    yield name
    helm("uninstall", RELEASE, "-n", name, "--wait", "--timeout", "5m", check=False)
    kubectl("delete", "namespace", name, "--wait=true", "--timeout=300s", check=False, timeout=320)


@pytest.fixture(scope="session")
def release(namespace: str) -> str:
    """The chart installed with the local profile, every workload Ready (helm --wait)."""
    helm(
        "install", RELEASE, str(CHART), "-n", namespace, *install_values(),
        "--wait", "--wait-for-jobs", "--timeout", "15m",
    )  # fmt: skip
    return namespace


@pytest.fixture(scope="session")
def app_image(release: str) -> str:
    deployment = kubectl_json("get", "deployment", "-n", release, f"{RELEASE}-saga-stack")
    image: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


@pytest.fixture(scope="session")
def client(release: str, app_image: str) -> str:
    """A pod outside the release (no release labels) that runs Python with the app's image."""
    return client_pod(release, "e2e-client", app_image)
