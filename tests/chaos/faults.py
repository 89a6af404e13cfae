"""The fault kinds of a campaign, each as inject / a probe that it took effect / heal.

Faults act on what Kubernetes and the node runtime expose, never on the app's internals:
a container's process is found through the pod's containerID and the node's `crictl`; a
node is its container (kind's model: one container per node, named as the node); a
partition or a cut is iptables inside the node's or the pod's network namespace. Only
containers and namespaces of this run's own cluster are touched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.e2e.cluster import CommandFailed, kubectl, kubectl_json, run

TAG = "saga-chaos"  # iptables comment on every rule a fault adds, so heal finds exactly them


def docker(*args: str, timeout: float = 60, check: bool = True) -> str:
    return run(["docker", *args], timeout=timeout, check=check)


def on_node(node: str, *argv: str, timeout: float = 30, check: bool = True) -> str:
    return docker("exec", node, *argv, timeout=timeout, check=check)


@dataclass(frozen=True, slots=True)
class Target:
    """What the campaign runs against: the release's namespace and label selectors."""

    namespace: str
    release: str
    app_selector: str
    client_pod: str  # in-cluster pod (on the control plane) that probes the app over HTTP

    def selector(self, name: str) -> str:
        return f"app.kubernetes.io/name={name},app.kubernetes.io/instance={self.release}"


def pods(target: Target, selector: str) -> list[dict[str, Any]]:
    items = kubectl_json("get", "pods", "-n", target.namespace, "-l", selector)["items"]
    alive = [p for p in items if p["metadata"].get("deletionTimestamp") is None]
    return sorted(alive, key=lambda p: str(p["metadata"]["name"]))


def running_pods(target: Target, selector: str) -> list[dict[str, Any]]:
    return [
        p
        for p in pods(target, selector)
        if p["status"].get("phase") == "Running"
        and all(c.get("state", {}).get("running") for c in p["status"].get("containerStatuses", []))
    ]


def _status(pod: dict[str, Any]) -> dict[str, Any]:
    """Status of the pod's main container: the first one of its spec (statuses may come in
    any order)."""
    main = pod["spec"]["containers"][0]["name"]
    statuses = pod["status"].get("containerStatuses", [])
    return next(s for s in statuses if s["name"] == main)


def container_pid(pod: dict[str, Any]) -> tuple[str, int]:
    """(node, PID in the node's PID namespace) of the pod's main container."""
    node = pod["spec"]["nodeName"]
    container_id = _status(pod)["containerID"].split("://", 1)[1]
    info = json.loads(on_node(node, "crictl", "inspect", container_id))
    return node, int(info["info"]["pid"])


def restart_count(target: Target, name: str) -> int:
    return int(
        _status(kubectl_json("get", "pod", "-n", target.namespace, name)).get("restartCount", 0)
    )


def readiness_of(target: Target, pod_ip: str) -> dict[str, Any]:
    """The app's own /healthz/ready answer, asked from the client pod (the app contract)."""
    code = (
        "import json,urllib.request,urllib.error\n"
        f"url='http://{pod_ip}:8080/healthz/ready'\n"
        "try:\n"
        "  r=urllib.request.urlopen(url,timeout=4); print(json.dumps({'code':r.status,"
        "'body':json.loads(r.read())}))\n"
        "except urllib.error.HTTPError as e:\n"
        "  print(json.dumps({'code':e.code,'body':json.loads(e.read() or b'null')}))\n"
        "except Exception as e:\n"
        "  print(json.dumps({'code':None,'body':{'error':type(e).__name__}}))\n"
    )
    out = kubectl(
        "exec", "-n", target.namespace, target.client_pod, "--", "python3", "-c", code, timeout=30
    )
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


@dataclass(slots=True)
class Injected:
    """A fault in progress: what heal needs, and what the report says of it."""

    target: str
    heal: Callable[[], None] = lambda: None
    took_effect: Callable[[], bool] = lambda: True
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FaultKind:
    name: str
    description: str
    hold_seconds: float  # how long the fault lasts before heal (0: instantaneous)
    inject: Callable[[Target, int], Injected]  # (target, choice) -> the fault in progress
    needs: str = ""  # a selector that must match pods for the kind to apply ("" = app)


def _pick(items: list[dict[str, Any]], choice: int, what: str) -> dict[str, Any]:
    if not items:
        raise CommandFailed(f"no {what} to act on")
    return items[choice % len(items)]


# --- app processes ------------------------------------------------------------------------


def kill_app(target: Target, choice: int) -> Injected:
    pod = _pick(running_pods(target, target.app_selector), choice, "running app pod")
    name = pod["metadata"]["name"]
    before = restart_count(target, name)
    node, pid = container_pid(pod)
    on_node(node, "kill", "-KILL", str(pid))
    return Injected(
        target=name,
        took_effect=lambda: restart_count(target, name) > before,
        detail={"node": node, "pid": pid, "restarts_before": before},
    )


def delete_app(target: Target, choice: int) -> Injected:
    pod = _pick(running_pods(target, target.app_selector), choice, "running app pod")
    name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
    kubectl("delete", "pod", "-n", target.namespace, name, "--wait=false")

    def gone() -> bool:
        found = kubectl_json("get", "pods", "-n", target.namespace, "-l", target.app_selector)
        return all(
            p["metadata"]["uid"] != uid or p["metadata"].get("deletionTimestamp")
            for p in found["items"]
        )

    return Injected(target=name, took_effect=gone, detail={"node": pod["spec"]["nodeName"]})


def freeze_app(target: Target, choice: int) -> Injected:
    """SIGSTOP past the lock TTL and the saga lease: its locks expire, its sagas are taken
    over, and its late writes must be refused (fencing). The kubelet's liveness probe may
    restart it first; either way nothing may be applied twice."""
    pod = _pick(running_pods(target, target.app_selector), choice, "running app pod")
    name = pod["metadata"]["name"]
    node, pid = container_pid(pod)
    on_node(node, "kill", "-STOP", str(pid))

    def stopped() -> bool:
        state = on_node(node, "sh", "-c", f"cut -d' ' -f3 /proc/{pid}/stat", check=False)
        return state.strip() == "T"

    def thaw() -> None:
        on_node(node, "kill", "-CONT", str(pid), check=False)  # gone if the kubelet restarted it

    return Injected(target=name, took_effect=stopped, heal=thaw, detail={"node": node, "pid": pid})


# --- nodes ---------------------------------------------------------------------------------


def workers() -> list[str]:
    nodes = kubectl_json("get", "nodes")["items"]
    return sorted(
        n["metadata"]["name"]
        for n in nodes
        if "node-role.kubernetes.io/control-plane" not in n["metadata"].get("labels", {})
    )


def control_plane_ip() -> str:
    nodes = kubectl_json("get", "nodes", "-l", "node-role.kubernetes.io/control-plane")["items"]
    addresses = nodes[0]["status"]["addresses"]
    return str(next(a["address"] for a in addresses if a["type"] == "InternalIP"))


def node_running(node: str) -> bool:
    return docker("inspect", "-f", "{{.State.Running}}", node).strip() == "true"


def stop_node(target: Target, choice: int) -> Injected:
    """The node dies at once (SIGKILL to its container: no graceful shutdown, no goodbye to
    the API server), and comes back on heal with its disks, as after a power cut."""
    node = workers()[choice % len(workers())]
    hosted = sorted(
        p["metadata"]["name"]
        for p in pods(target, f"app.kubernetes.io/instance={target.release}")
        if p["spec"].get("nodeName") == node
    )
    docker("kill", node)

    def start() -> None:
        docker("start", node)

    return Injected(
        target=node,
        took_effect=lambda: not node_running(node),
        heal=start,
        detail={"pods_on_node": hosted},
    )


def partition_node(target: Target, choice: int) -> Injected:
    """Every packet between the node and the rest (other nodes, the host) dropped at the
    node, both ways; loopback and the node's own pods keep talking to each other. raw and
    mangle are tables that neither kube-proxy nor kube-router rewrite."""
    node = workers()[choice % len(workers())]
    rules = [
        ("raw", "PREROUTING", "-i"),
        ("mangle", "POSTROUTING", "-o"),
    ]
    for table, chain, direction in rules:
        on_node(
            node,
            "iptables",
            "-t",
            table,
            "-I",
            chain,
            "1",
            direction,
            "eth0",
            "-m",
            "comment",
            "--comment",
            TAG,
            "-j",
            "DROP",
        )
    api = control_plane_ip()

    def cut_off() -> bool:
        probe = f"timeout 2 bash -c '</dev/tcp/{api}/6443' 2>/dev/null && echo open || echo cut"
        return on_node(node, "bash", "-c", probe, check=False).strip() == "cut"

    def heal() -> None:
        for table, chain, direction in rules:
            on_node(
                node,
                "iptables",
                "-t",
                table,
                "-D",
                chain,
                direction,
                "eth0",
                "-m",
                "comment",
                "--comment",
                TAG,
                "-j",
                "DROP",
                check=False,
            )

    return Injected(target=node, took_effect=cut_off, heal=heal, detail={"api": api})


# --- dependencies cut from the app ---------------------------------------------------------


def app_config(target: Target) -> dict[str, str]:
    """The app's configuration: the contract's environment variables, from the ConfigMap
    its Deployment reads them from."""
    deployment = kubectl_json(
        "get", "deployment", "-n", target.namespace, "-l", target.app_selector
    )["items"][0]
    sources = deployment["spec"]["template"]["spec"]["containers"][0].get("envFrom", [])
    env: dict[str, str] = {}
    for source in sources:
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            env.update(kubectl_json("get", "configmap", "-n", target.namespace, name)["data"])
    return env


def app_ports(target: Target) -> dict[str, list[int]]:
    """The ports the app uses per dependency, from its own configuration."""
    env = app_config(target)

    def ports_of(addresses: str) -> list[int]:
        return sorted({int(a.rsplit(":", 1)[1]) for a in addresses.split(",") if ":" in a})

    redis = [int(env.get("REDIS_PORT", 6379))]
    if env.get("REDIS_MODE") == "sentinel":
        redis += ports_of(env["REDIS_SENTINEL_NODES"])
    return {
        "postgres": [int(env.get("DATABASE_PORT", 5432))],
        "redis": sorted(set(redis)),
        "kafka": ports_of(env["KAFKA_BOOTSTRAP_SERVERS"]),
    }


def cut_dependency(dependency: str) -> Callable[[Target, int], Injected]:
    """Every app pod loses `dependency`: its packets to those ports dropped inside the pod's
    network namespace, so established connections hang as on a real network fault."""

    def inject(target: Target, choice: int) -> Injected:
        ports = ",".join(str(p) for p in app_ports(target)[dependency])
        cut = []
        for pod in running_pods(target, target.app_selector):
            node, pid = container_pid(pod)
            on_node(
                node,
                "nsenter",
                "-t",
                str(pid),
                "-n",
                "iptables",
                "-I",
                "OUTPUT",
                "1",
                "-p",
                "tcp",
                "-m",
                "multiport",
                "--dports",
                ports,
                "-m",
                "comment",
                "--comment",
                TAG,
                "-j",
                "DROP",
            )
            cut.append((pod["metadata"]["name"], pod["status"]["podIP"], node, pid))

        def seen_by_app() -> bool:
            answers = [readiness_of(target, ip) for _, ip, _, _ in cut]
            return all(dependency in (a["body"] or {}).get("failing", []) for a in answers)

        def heal() -> None:
            for _, _, node, pid in cut:
                on_node(
                    node,
                    "nsenter",
                    "-t",
                    str(pid),
                    "-n",
                    "iptables",
                    "-D",
                    "OUTPUT",
                    "-p",
                    "tcp",
                    "-m",
                    "multiport",
                    "--dports",
                    ports,
                    "-m",
                    "comment",
                    "--comment",
                    TAG,
                    "-j",
                    "DROP",
                    check=False,
                )

        return Injected(
            target=",".join(name for name, _, _, _ in cut),
            took_effect=seen_by_app,
            heal=heal,
            detail={"ports": ports},
        )

    return inject


# --- the data layer -------------------------------------------------------------------------


def redis_master(target: Target) -> dict[str, Any]:
    """The pod the Sentinels name as master (replication), or the only Redis pod."""
    redis = running_pods(target, target.selector("redis"))
    if len(redis) == 1:
        return redis[0]
    master_set = app_config(target).get("REDIS_SENTINEL_MASTER", "mymaster")
    for pod in redis:
        out = kubectl(
            "exec",
            "-n",
            target.namespace,
            pod["metadata"]["name"],
            "-c",
            "sentinel",
            "--",
            "redis-cli",
            "-p",
            "26379",
            "SENTINEL",
            "get-master-addr-by-name",
            master_set,
            check=False,
        )
        address = out.split()[0] if out.split() else ""
        for candidate in redis:
            name = candidate["metadata"]["name"]
            if address and (
                candidate["status"].get("podIP") == address or address.split(".")[0] == name
            ):
                return candidate
    raise CommandFailed("no Sentinel names a master among the Redis pods")


def kill_pod_process(
    pick: Callable[[Target, int], dict[str, Any]],
) -> Callable[[Target, int], Injected]:
    def inject(target: Target, choice: int) -> Injected:
        pod = pick(target, choice)
        name = pod["metadata"]["name"]
        before = restart_count(target, name)
        node, pid = container_pid(pod)
        on_node(node, "kill", "-KILL", str(pid))
        return Injected(
            target=name,
            took_effect=lambda: restart_count(target, name) > before,
            detail={"node": node},
        )

    return inject


def _one_of(name: str) -> Callable[[Target, int], dict[str, Any]]:
    return lambda target, choice: _pick(running_pods(target, target.selector(name)), choice, name)


KINDS: dict[str, FaultKind] = {
    kind.name: kind
    for kind in (
        FaultKind("app-kill", "app container SIGKILLed", 0, kill_app),
        FaultKind("app-delete", "app pod deleted (graceful)", 0, delete_app),
        FaultKind("app-freeze", "app process SIGSTOPped past lock TTL and lease", 35, freeze_app),
        FaultKind("node-stop", "worker node container killed, started again", 120, stop_node),
        FaultKind(
            "node-partition", "worker node cut off from every other node", 60, partition_node
        ),
        FaultKind("cut-redis", "app pods cut from Redis", 15, cut_dependency("redis")),
        FaultKind("cut-kafka", "app pods cut from Kafka", 15, cut_dependency("kafka")),
        FaultKind("cut-postgres", "app pods cut from PostgreSQL", 15, cut_dependency("postgres")),
        FaultKind(
            "redis-master-kill",
            "Redis master SIGKILLed",
            0,
            kill_pod_process(lambda t, _c: redis_master(t)),
            needs="redis",
        ),
        FaultKind(
            "kafka-kill",
            "a Kafka broker SIGKILLed",
            0,
            kill_pod_process(_one_of("kafka")),
            needs="kafka",
        ),
        FaultKind(
            "postgres-kill",
            "PostgreSQL SIGKILLed",
            0,
            kill_pod_process(_one_of("postgresql")),
            needs="postgresql",
        ),
    )
}


def wait_until(
    what: str, condition: Callable[[], bool], timeout: float, every: float = 1.0
) -> float | None:
    """Seconds-epoch when `condition` first held, or None at the timeout (errors count as
    not yet: a probe may fail while the fault is on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return time.time()
        except (CommandFailed, OSError, ValueError, KeyError, IndexError):
            pass
        time.sleep(every)
    return None
