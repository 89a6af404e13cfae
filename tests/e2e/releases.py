"""One way to get a release of the chart for a test or a campaign: installed in a fresh
namespace with the given values, yielded, removed afterwards, and its state (pods, logs,
events, helm status) written down when something failed while it was up.

SAGA_E2E_KEEP=1 keeps every namespace for debugging (`make down` or `kubectl delete
namespace` removes them). Diagnostics go to $SAGA_STACK_RESULTS/diagnostics/<namespace>/.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tests.e2e.cluster import CHART, RELEASE, CommandFailed, helm, kubectl
from tests.e2e.ingress import NAMESPACE as INGRESS_NAMESPACE

RESULTS = Path(os.environ.get("SAGA_STACK_RESULTS", Path.home() / ".cache/saga-stack/results"))

# Namespaces of releases that are up now, so that a failing test can have them written down.
ACTIVE: set[str] = set()


def write_figures(name: str, figures: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """For a module's figures fixture: yields `figures`, then writes them (when any) to
    RESULTS/`name` as JSON."""
    yield figures
    if figures:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / name).write_text(json.dumps(figures, indent=2) + "\n")


def keep_requested() -> bool:
    return os.environ.get("SAGA_E2E_KEEP", "") not in ("", "0", "false")


def dump_diagnostics(namespace: str, why: str) -> Path:
    """Pods, events, helm status and every container's log (and its previous one)."""
    out = RESULTS / "diagnostics" / namespace
    out.mkdir(parents=True, exist_ok=True)
    (out / "why.txt").write_text(why + "\n")
    reads = {
        "pods.txt": ("get", "pods", "-n", namespace, "-o", "wide"),
        "events.txt": ("get", "events", "-n", namespace, "--sort-by=.lastTimestamp"),
        "nodes.txt": ("get", "nodes", "-o", "wide"),
    }
    for name, args in reads.items():
        (out / name).write_text(kubectl(*args, check=False))
    (out / "helm-status.txt").write_text(helm("status", RELEASE, "-n", namespace, check=False))
    names = kubectl("get", "pods", "-n", namespace, "-o", "name", check=False).split()
    for pod in names:
        for previous in ("false", "true"):
            text = kubectl(
                "logs", "-n", namespace, pod, "--all-containers", "--prefix",
                f"--previous={previous}", "--tail=2000", check=False,
            )  # fmt: skip
            if text:
                suffix = ".previous.log" if previous == "true" else ".log"
                (out / (pod.split("/", 1)[1] + suffix)).write_text(text)
    # The ingress controller's 5xx answers (its access log keeps only those).
    for pod in kubectl("get", "pods", "-n", INGRESS_NAMESPACE, "-o", "name", check=False).split():
        text = kubectl("logs", "-n", INGRESS_NAMESPACE, pod, "--since=1h", check=False)
        if text:
            (out / f"{INGRESS_NAMESPACE}-{pod.split('/', 1)[1]}.log").write_text(text)
    return out


def new_namespace(prefix: str = "saga-e2e") -> str:
    """A namespace name no release has used."""
    return f"{prefix}-{secrets.token_hex(3)}"


@contextlib.contextmanager
def installed_release(
    values: Sequence[str] | None,
    *,
    namespace: str | None = None,
    release: str = RELEASE,
    prefix: str = "saga-e2e",
    keep: bool = False,
    prepare: Callable[[str], None] | None = None,
    wait_for_removal: bool = True,
) -> Iterator[str]:
    """Yields the namespace of a release: installed there from `values` (helm arguments,
    e.g. install_values(...)) in a new namespace, or, with values None, the release already
    in `namespace`, left as it is. `prepare(namespace)` runs before the install (to create
    what a user creates beforehand: a Secret, a CA). Removal is waited for, so that it does
    not compete with the next test for the two cores, unless `wait_for_removal` is False
    (a release removed when nothing runs after it)."""
    if values is None:
        if namespace is None:
            raise ValueError("name the namespace of an installed release, or values to install")
        yield namespace
        return
    name = namespace or new_namespace(prefix)
    kubectl("create", "namespace", name)
    ACTIVE.add(name)
    try:
        try:
            if prepare is not None:
                prepare(name)
            helm(
                "install", release, str(CHART), "-n", name, *values,
                "--wait", "--wait-for-jobs", "--timeout", "15m",
            )  # fmt: skip
        except CommandFailed as exc:
            where = dump_diagnostics(name, f"helm install failed: {exc}")
            raise CommandFailed(f"{exc}\n(diagnostics in {where})") from exc
        yield name
    finally:
        ACTIVE.discard(name)
        if not (keep or keep_requested()):
            remove(release, name, wait=wait_for_removal)


def remove(release: str, namespace: str, *, wait: bool = True) -> None:
    """Uninstalls and deletes the namespace. The pods get 1 s to stop: their data goes with
    them, and a graceful stop of a whole replicated set is slow for nothing (the last
    Kafka brokers wait out their grace period for a controlled shutdown no quorum can
    acknowledge)."""
    helm("uninstall", release, "-n", namespace, check=False)
    kubectl("delete", "pods", "--all", "-n", namespace, "--grace-period=1", "--wait=false",
            check=False)  # fmt: skip
    if wait:
        kubectl("delete", "namespace", namespace, "--timeout=5m", check=False, timeout=320)
    else:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
