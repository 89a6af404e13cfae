"""Runs a campaign against a release: load from inside the cluster, the planned faults one
after another (each shown to have taken effect, held, healed, and waited out until the
release is whole again), then the app's final word on every accepted order. Returns the
History; judging it is the checker's job.

It needs only kubectl (the API server), docker (the node containers of kind's model) and
an image with python3 for the client pod (the app's own by default).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.chaos.faults import KINDS, Injected, Target, pods, readiness_of, wait_until
from tests.chaos.history import (
    Fault,
    FinalOrder,
    FinalStock,
    History,
    Op,
    SagaStep,
    Sample,
    StockSample,
)
from tests.chaos.schedule import Planned
from tests.e2e.cluster import (
    CommandFailed,
    InClusterProcess,
    client_pod,
    helm,
    kubectl,
    kubectl_json,
    ready_pods,
)
from tests.e2e.failover import patroni_config, patroni_members
from tests.e2e.scaling import BACKLOG, EXTERNAL_API, quantity

DRIVER = (Path(__file__).parent / "load_driver.py").read_text()
# Set to end a campaign early (the CLI sets it on SIGINT/SIGTERM): the fault under way is
# healed at once, no new one begins, and the run still settles and is checked.
STOP = threading.Event()
CLIENT_POD = "chaos-client"
STOP_FILE = "/tmp/chaos-stop"


@dataclass(frozen=True, slots=True)
class Settings:
    namespace: str
    release: str
    seed: int
    rate: float = 5.0
    skus: int = 3
    stock: int = 1000
    warmup_seconds: float = 15.0  # load before the first fault: the baseline
    cooldown_seconds: float = 5.0  # between a recovery and the next fault
    effect_timeout: float = 60.0
    recovery_timeout: float = 300.0
    settle_seconds: float = 300.0
    client_image: str = ""  # default: the app's image


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


def app_selector(release: str) -> str:
    return f"app.kubernetes.io/instance={release},app.kubernetes.io/component=app"


def app_service(namespace: str, release: str) -> tuple[str, int]:
    services = kubectl_json("get", "services", "-n", namespace, "-l", app_selector(release))
    if not services["items"]:
        raise CommandFailed(f"no app Service of release {release} in namespace {namespace}")
    service = services["items"][0]
    return service["metadata"]["name"], int(service["spec"]["ports"][0]["port"])


def entrance(namespace: str, release: str) -> tuple[str, str]:
    """(URL, Host header) where the load comes in: the ingress controller the release's
    load generator is set to go through (`loadGenerator.through: ingress`, the local
    profile), naming its Ingress host, as a client outside the cluster; else the app's
    Service, with no Host header."""
    values = json.loads(helm("get", "values", release, "-n", namespace, "--all", "-o", "json"))
    load, ingress = values.get("loadGenerator", {}), values.get("ingress", {})
    if load.get("through") == "ingress" and ingress.get("enabled") and ingress.get("hosts"):
        return str(load["ingressUrl"]).rstrip("/"), str(ingress["hosts"][0]["host"])
    service, port = app_service(namespace, release)
    return f"http://{service}:{port}", ""


def applicable(kinds: Sequence[str], target: Target) -> list[str]:
    """The kinds that can act on this release (a kind for Redis needs Redis pods), in the
    order asked; an unknown kind is an error naming the known ones."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(KINDS)}")
    return [k for k in kinds if not KINDS[k].needs or pods(target, target.selector(KINDS[k].needs))]


class Whole:
    """The release is whole: every node Ready, every pod of the release (finished or
    failed ones aside: a ReplicaSet keeps an evicted pod) Ready, the app Deployment at its
    desired replicas, every app pod saying that all its dependencies answer, and
    replicated PostgreSQL able to fail over again, so the next fault does not begin while
    the last one is still being repaired."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._synchronous: bool | None = None

    def __call__(self) -> bool:
        for node in kubectl_json("get", "nodes")["items"]:
            if not _condition(node, "Ready"):
                return False
        release_pods = kubectl_json(
            "get", "pods", "-n", self.target.namespace,
            "-l", f"app.kubernetes.io/instance={self.target.release}",
        )["items"]  # fmt: skip
        for pod in release_pods:
            if pod["status"].get("phase") in ("Succeeded", "Failed"):
                continue
            if pod["metadata"].get("deletionTimestamp") or not _condition(pod, "Ready"):
                return False
        deployment = kubectl_json(
            "get", "deployment", "-n", self.target.namespace, "-l", self.target.app_selector
        )["items"][0]
        want = int(deployment["spec"].get("replicas", 1))
        if int(deployment["status"].get("readyReplicas", 0)) < want:
            return False
        app = ready_pods(self.target.namespace, self.target.app_selector)
        answers = readiness_of(self.target, [p["status"]["podIP"] for p in app])
        if not all((a["body"] or {}).get("status") == "ok" for a in answers.values()):
            return False
        return self._postgres_can_fail_over()

    def _postgres_can_fail_over(self) -> bool:
        """Patroni's view, which no pod's readiness shows: a leader, every other server
        streaming from it and, in synchronous mode, one registered as synchronous. For
        some seconds after a primary restarts no standby is: Patroni would promote none
        if the primary's node went then, and the next fault would be a second one."""
        servers = pods(self.target, self.target.selector("postgresql"))
        if len(servers) < 2:
            return True
        first = servers[0]["metadata"]["name"]
        members = patroni_members(self.target.namespace, first)
        roles = [m["Role"] for m in members]
        if len(members) != len(servers) or roles.count("Leader") != 1:
            return False
        if any(m["State"] != "streaming" for m in members if m["Role"] != "Leader"):
            return False
        if self._synchronous is None:
            config = yaml.safe_load(patroni_config(self.target.namespace, first))
            self._synchronous = bool(config.get("synchronous_mode"))
        return not self._synchronous or "Sync Standby" in roles


def _condition(obj: dict[str, Any], kind: str) -> bool:
    return any(
        c["type"] == kind and c["status"] == "True" for c in obj["status"].get("conditions", [])
    )


class Sampler(threading.Thread):
    """Ready app pods and the backlog (external metrics API, when an adapter serves it)
    every `every` seconds, until stopped."""

    def __init__(self, target: Target, service: str, every: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.target, self.every = target, every
        selector = urllib.parse.quote(f"service={service}")
        self.backlog_path = (
            f"/apis/{EXTERNAL_API}/namespaces/{target.namespace}/{BACKLOG}?labelSelector={selector}"
        )
        self.samples: list[Sample] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                ready = len(ready_pods(self.target.namespace, self.target.app_selector))
            except Exception:  # a sample missed is a gap in the plot; the thread must go on
                continue
            self.samples.append(Sample(at=time.time(), ready_pods=ready, backlog=self._backlog()))

    def _backlog(self) -> float | None:
        try:
            items = json.loads(kubectl("get", "--raw", self.backlog_path, timeout=10))["items"]
        except (CommandFailed, ValueError, KeyError):
            return None
        return sum(quantity(i["value"]) for i in items) if items else None


def hold_fault(injected: Injected, until: float) -> None:
    """Keeps the fault in place until `until`, or until it has settled when it says so."""
    while not STOP.is_set() and time.time() < until:
        if injected.settled is not None:
            with contextlib.suppress(CommandFailed, subprocess.TimeoutExpired):
                if injected.settled():
                    log("  settled before its hold ended")
                    return
        STOP.wait(max(0.0, min(2.0, until - time.time())))


def run_fault(target: Target, planned: Planned, settings: Settings, whole: Whole) -> Fault:
    kind = KINDS[planned.kind]
    start = time.time()
    log(f"fault {planned.index}: {kind.name} ({kind.description})")
    injected: Injected | None = None
    effect_at: float | None = None
    detail: dict[str, Any] = {}
    try:
        injected = kind.inject(target, planned.choice)
        detail = injected.detail
        effect_at = wait_until(
            f"{kind.name} to take effect", injected.took_effect, settings.effect_timeout
        )
        hold = kind.hold_seconds if injected.hold is None else injected.hold
        hold_fault(injected, start + hold)
    except Exception as exc:  # recorded: a fault that never took effect is a violation
        detail["error"] = f"{type(exc).__name__}: {exc}"[:500]
        log(f"  could not inject: {exc}")
    finally:
        if injected is not None:
            try:
                injected.heal()
            except Exception as exc:
                detail["heal_error"] = f"{type(exc).__name__}: {exc}"[:500]
                log(f"  HEAL FAILED: {exc}")
    heal_at = time.time()
    recovered_at = wait_until("the release whole again", whole, settings.recovery_timeout, 2.0)
    log(
        f"  on {injected.target if injected else '-'}: effect after "
        f"{_seconds(effect_at, start)}, healed after {heal_at - start:.0f}s, "
        f"whole {_seconds(recovered_at, heal_at)} after heal"
    )
    return Fault(
        index=planned.index,
        kind=kind.name,
        target=injected.target if injected else "",
        start=start,
        effect_at=effect_at,
        heal_at=heal_at,
        recovered_at=recovered_at,
        detail=json.dumps(detail, sort_keys=True),
    )


def _seconds(at: float | None, since: float) -> str:
    return "never" if at is None else f"{at - since:.1f}s"


def campaign(
    settings: Settings,
    schedule: Sequence[Planned],
    on_fault: Callable[[Fault], None] = lambda _: None,
) -> History:
    selector = app_selector(settings.release)
    service, _ = app_service(settings.namespace, settings.release)
    image = (
        settings.client_image
        or (
            kubectl_json("get", "deployment", "-n", settings.namespace, "-l", selector)["items"][0][
                "spec"
            ]["template"]["spec"]["containers"][0]["image"]
        )
    )
    run_id = f"chaos{settings.seed}-{secrets.token_hex(2)}"
    kubectl("delete", "pod", "-n", settings.namespace, CLIENT_POD, "--ignore-not-found", "--wait")
    client_pod(settings.namespace, CLIENT_POD, image, on_control_plane=True, lifetime=6 * 3600)
    target = Target(settings.namespace, settings.release, selector, CLIENT_POD)
    whole = Whole(target)
    if wait_until("the release whole", whole, settings.recovery_timeout, 2.0) is None:
        raise CommandFailed("the release is not whole before the campaign: nothing to measure")

    history = History(run_id=run_id, seed=settings.seed)
    url, host = entrance(settings.namespace, settings.release)
    driver = InClusterProcess(
        settings.namespace, CLIENT_POD, DRIVER,
        "--target", url, "--host", host, "--run-id", run_id, "--seed", str(settings.seed),
        "--rate", str(settings.rate), "--skus", str(settings.skus), "--stock", str(settings.stock),
        "--max-seconds", str(6 * 3600 - 900), "--settle-seconds", str(settings.settle_seconds),
        "--stop-file", STOP_FILE,
    )  # fmt: skip
    sampler = Sampler(target, service)
    sampler.start()
    try:
        loaded = driver.wait_line("the load's start", lambda line: "started" in line, 360)
        history.load_started = float(loaded["started"])
        log(f"load: {settings.rate}/s on {settings.skus} SKUs through {url} {host}".rstrip())
        STOP.wait(settings.warmup_seconds)
        for planned in schedule:
            if STOP.is_set():
                log(f"stopped early after {len(history.faults)} of {len(schedule)} faults")
                break
            fault = run_fault(target, planned, settings, whole)
            history.faults.append(fault)
            on_fault(fault)
            STOP.wait(settings.cooldown_seconds)
        threading.Event().wait(settings.warmup_seconds)
    finally:
        # The client runs the app image, which has python3 but no coreutils.
        kubectl(
            "exec", "-n", settings.namespace, CLIENT_POD, "--",
            "python3", "-c", f"open({STOP_FILE!r}, 'w').close()",
        )  # fmt: skip
        sampler.stopped.set()
    log("load stopped; waiting for every accepted order to be final")
    lines = driver.finish(timeout=settings.settle_seconds + 900)
    history.samples = sampler.samples
    _fill(history, lines)
    return history


def _fill(history: History, lines: list[dict[str, Any]]) -> None:
    initial: dict[str, int] = {}
    for line in lines:
        kind = line.get("type")
        if kind == "setup":
            initial[line["sku"]] = int(line["initial"])
        elif kind == "load":
            history.load_started = float(line.get("started", history.load_started))
            history.load_ended = float(line.get("ended", history.load_ended))
        elif kind == "op":
            history.ops.append(Op.from_line({k: v for k, v in line.items() if k != "type"}))
        elif kind == "stock":
            history.stock_samples.append(
                StockSample(line["at"], line["sku"], line["available"], line["reserved"])
            )
        elif kind == "order":
            steps = tuple(SagaStep(**s) for s in line["steps"])
            history.orders.append(
                FinalOrder(
                    line["order_id"], line["saga_id"], line["status"], line["saga_state"],
                    steps, line["finished_at"],
                )
            )  # fmt: skip
        elif kind == "final_stock":
            history.stock.append(
                FinalStock(line["sku"], initial[line["sku"]], line["available"], line["reserved"])
            )
    history.ops.sort(key=lambda op: op.seq)
