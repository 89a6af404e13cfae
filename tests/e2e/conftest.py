"""Fixtures of the e2e tier: a real multi-node cluster and the chart installed on it.

`make test-e2e` runs `ci/up.sh --no-install` first, with its progress on the
terminal: it reuses a running cluster or creates one, and makes sure the
chart's images are in the nodes (each step is skipped when already done).
Run directly, the tier does the same when no cluster answers. KUBECONFIG
defaults to ~/.kube/config, where `ci/up.sh` puts the cluster. Releases
come from tests/e2e/releases.py (a fresh namespace each, removed at the end;
SAGA_E2E_KEEP=1 keeps them), and a failing test has their pods, logs and events
written down.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import (
    RELEASE,
    REPO,
    CommandFailed,
    client_pod,
    install_values,
    kubectl,
    kubectl_json,
    run,
    wait_for,
)
from tests.e2e.ingress import release_host_values
from tests.e2e.releases import ACTIVE, dump_diagnostics, installed_release, new_namespace

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
def release(cluster: list[str]) -> Iterator[str]:
    """The chart installed with the local profile in a namespace of its own, every workload
    Ready (helm --wait), on host names of its own through the ingress; its namespace. Its
    job workers take their time over each job and scale in fast
    (values/jobs-under-test.yaml), for tests/e2e/test_jobs.py."""
    namespace = new_namespace()
    values = [
        *install_values(),
        "-f",
        str(Path(__file__).parent / "values" / "jobs-under-test.yaml"),
        *release_host_values(namespace),
    ]
    # Session-scoped: torn down when the tier is over, so its removal is not waited for.
    with installed_release(values, namespace=namespace, wait_for_removal=False) as namespace:
        yield namespace


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failing test has the state of every release that is up written down."""
    report = yield
    if report.failed and call.when in ("setup", "call"):
        for namespace in sorted(ACTIVE):
            where = dump_diagnostics(namespace, f"{item.nodeid} failed in {call.when}")
            report.sections.append(("saga-stack diagnostics", f"{namespace}: {where}"))
    return report


@pytest.fixture(scope="session")
def app_image(release: str) -> str:
    deployment = kubectl_json("get", "deployment", "-n", release, f"{RELEASE}-saga-stack")
    image: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


@pytest.fixture(scope="session")
def client(release: str, app_image: str) -> str:
    """A pod outside the release (no release labels) that runs Python with the app's image,
    on the control plane: the fault tests stop worker nodes, and a session-long client on
    one of them would not come back."""
    return client_pod(release, "e2e-client", app_image, on_control_plane=True)
