"""The fault kinds of a campaign, each as inject / a probe that it took effect / heal.

Faults act on what Kubernetes and the node runtime expose, never on the app's internals:
a container's process is found through the pod's containerID and the node's containerd; a
node is its container (kind's model: one container per node, named as the node); a
partition or a cut is iptables inside the node's or the pod's network namespace. Only
containers and namespaces of this run's own cluster are touched.
"""

from __future__ import annotations

import contextlib
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


def is_ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
    )


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


def _container_id(pod: dict[str, Any]) -> str:
    return str(_status(pod)["containerID"]).split("://", 1)[1]


def container_pid(pod: dict[str, Any]) -> tuple[str, int]:
    """(node, PID in the node's PID namespace) of the pod's main container, from the node's
    containerd (`ctr`; CRI names the containerd task as the container). It must be running:
    an exited task reports PID 0, and `kill -STOP 0` would stop the caller."""
    node, wanted = pod["spec"]["nodeName"], _container_id(pod)
    for line in on_node(node, "ctr", "-n", "k8s.io", "task", "ls").splitlines()[1:]:
        task, pid, status = [*line.split(), "", "", ""][:3]
        if task == wanted:
            if status != "RUNNING" or int(pid) <= 1:
                break
            return node, int(pid)
    raise CommandFailed(f"{pod['metadata']['name']}: main container not running on {node}")


def sandbox_pid(pod: dict[str, Any]) -> tuple[str, int]:
    """(node, PID) of the pod's sandbox, which holds the pod's network namespace for as long
    as the pod lives, across restarts of its containers: the container's OCI spec joins the
    network namespace at /proc/<sandbox PID>/ns/net."""
    node = pod["spec"]["nodeName"]
    info = json.loads(
        on_node(node, "ctr", "-n", "k8s.io", "containers", "info", _container_id(pod))
    )
    for namespace in info["Spec"]["linux"]["namespaces"]:
        path = str(namespace.get("path", ""))
        if namespace["type"] == "network" and path.startswith("/proc/"):
            return node, int(path.split("/")[2])
    raise CommandFailed(f"{pod['metadata']['name']}: no sandbox network namespace found")


def restart_count(target: Target, name: str) -> int:
    return int(
        _status(kubectl_json("get", "pod", "-n", target.namespace, name)).get("restartCount", 0)
    )


# Asks every pod at once from inside the cluster: one exec per probe, not one per pod.
_READINESS = """
import json, sys, urllib.error, urllib.request
from concurrent.futures import ThreadPoolExecutor
def ask(ip):
    try:
        with urllib.request.urlopen(f"http://{ip}:8080/healthz/ready", timeout=4) as r:
            return {"code": r.status, "body": json.loads(r.read())}
    except urllib.error.HTTPError as e:
        return {"code": e.code, "body": json.loads(e.read() or b"null")}
    except Exception as e:
        return {"code": None, "body": {"error": type(e).__name__}}
ips = sys.argv[1:]
with ThreadPoolExecutor(max(1, len(ips))) as pool:
    print(json.dumps(dict(zip(ips, pool.map(ask, ips)))))
"""


def readiness_of(target: Target, pod_ips: list[str]) -> dict[str, dict[str, Any]]:
    """The app's own /healthz/ready answers ({"code", "body"}) by pod IP, asked from the
    client pod (the app contract)."""
    if not pod_ips:
        return {}
    out = kubectl(
        "exec", "-n", target.namespace, target.client_pod, "--",
        "python3", "-c", _READINESS, *pod_ips, timeout=30,
    )  # fmt: skip
    result: dict[str, dict[str, Any]] = json.loads(out.strip().splitlines()[-1])
    return result


@dataclass(slots=True)
class Injected:
    """A fault in progress: what heal needs, and what the report says of it. `hold`
    overrides the kind's hold when the fault derives it from the release; `settled`, when
    given, ends the hold early once the release has shown all the fault can show (the hold
    is then the longest it lasts)."""

    target: str
    heal: Callable[[], None] = lambda: None
    took_effect: Callable[[], bool] = lambda: True
    detail: dict[str, Any] = field(default_factory=dict)
    hold: float | None = None
    settled: Callable[[], bool] | None = None


class Rules:
    """iptables DROP rules added one by one, so that a fault that fails half-way, or a heal,
    removes exactly those that were added, and says so when one stays."""

    def __init__(self) -> None:
        # (node, command prefix such as nsenter into a namespace, table, chain, match)
        self.added: list[tuple[str, list[str], str, str, list[str]]] = []

    def add(self, node: str, prefix: list[str], table: str, chain: str, match: list[str]) -> None:
        on_node(node, *prefix, "iptables", "-t", table, "-I", chain, "1", *self._rule(match))
        self.added.append((node, prefix, table, chain, match))

    def remove(self) -> None:
        left = []
        for node, prefix, table, chain, match in self.added:
            base = [*prefix, "iptables", "-t", table]
            on_node(node, *base, "-D", chain, *self._rule(match), check=False)
            try:
                on_node(node, *base, "-C", chain, *self._rule(match))
                left.append(f"{node}: {table} {chain} {' '.join(match)}")
            except CommandFailed:
                pass  # -C fails when the rule is gone: what heal wants
        self.added = []
        if left:
            raise CommandFailed("rules still in place after heal: " + "; ".join(left))

    @staticmethod
    def _rule(match: list[str]) -> list[str]:
        return [*match, "-m", "comment", "--comment", TAG, "-j", "DROP"]


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
    """SIGSTOP past the lock TTL and the saga lease (both from the app's configuration):
    its locks expire, its sagas are taken over, and its late writes must be refused
    (fencing). Past the liveness probe's budget the kubelet restarts it instead; either
    way nothing may be applied twice."""
    pod = _pick(running_pods(target, target.app_selector), choice, "running app pod")
    name = pod["metadata"]["name"]
    config = app_config(target)
    lease = float(config.get("SAGA_LEASE_SECONDS", 30))
    ttl = float(config.get("LOCK_TTL_MS", 5000)) / 1000
    node, pid = container_pid(pod)
    on_node(node, "kill", "-STOP", str(pid))

    def stopped() -> bool:
        state = on_node(node, "sh", "-c", f"cut -d' ' -f3 /proc/{pid}/stat", check=False)
        return state.strip() == "T"

    def thaw() -> None:
        on_node(node, "kill", "-CONT", str(pid), check=False)  # gone if the kubelet restarted it

    return Injected(
        target=name, took_effect=stopped, heal=thaw, hold=max(lease, ttl) + 5,
        detail={"node": node, "pid": pid, "lease_s": lease, "lock_ttl_s": ttl},
    )  # fmt: skip


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


def node_ip(node: str) -> str:
    return docker(
        "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", node
    ).strip()


def stop_node(target: Target, choice: int) -> Injected:
    """A worker holding an app pod (what a user tries first; with more workers than app
    pods another node may hold none) dies at once (SIGKILL to its container: no graceful
    shutdown, no goodbye to the API server), and comes back on heal with its disks, as
    after a power cut."""
    nodes = workers()
    hosts = sorted({p["spec"].get("nodeName") for p in running_pods(target, target.app_selector)})
    candidates = [n for n in nodes if n in hosts] or nodes
    node = candidates[choice % len(candidates)]
    release = f"app.kubernetes.io/instance={target.release}"
    hosted = sorted(
        p["metadata"]["name"] for p in pods(target, release) if p["spec"].get("nodeName") == node
    )
    address = node_ip(node)
    app_pods = len(pods(target, target.app_selector))
    docker("kill", node)
    detail: dict[str, Any] = {"pods_on_node": hosted, "ip": address}

    def replaced() -> bool:
        """As many app pods Ready on the other nodes as there were before: the release has
        healed around the loss, which is what the hold waits to see."""
        elsewhere = [
            p
            for p in pods(target, target.app_selector)
            if p["spec"].get("nodeName") not in ("", None, node) and is_ready(p)
        ]
        return len(elsewhere) >= app_pods

    def started() -> bool:
        if not node_running(node):
            docker("start", node)  # a failed start raises: wait_until tries again
        return node_running(node)

    def start() -> None:
        # What Kubernetes made of the loss while the node was down: the app pods and where.
        with contextlib.suppress(CommandFailed):
            detail["app_pods_before_restart"] = [
                {
                    "name": p["metadata"]["name"],
                    "node": p["spec"].get("nodeName", ""),
                    "created": p["metadata"]["creationTimestamp"],
                    "ready": is_ready(p),
                }
                for p in pods(target, target.app_selector)
            ]
        # Whatever happens, the node must come back: the rest of the run depends on it.
        if wait_until(f"{node} running", started, 120, 3.0) is None:
            raise CommandFailed(f"{node} does not start again")
        if node_ip(node) != address:
            detail["ip_after"] = node_ip(node)
            raise CommandFailed(f"{node} came back on {node_ip(node)}, not {address}")

    return Injected(
        target=node,
        took_effect=lambda: not node_running(node),
        heal=start,
        detail=detail,
        settled=replaced,
    )


def partition_node(target: Target, choice: int) -> Injected:
    """Every packet between the node and the rest (other nodes, the host) dropped at the
    node, both ways; loopback and the node's own pods keep talking to each other. raw and
    mangle are tables that neither kube-proxy nor kube-router rewrite."""
    node = workers()[choice % len(workers())]
    api = control_plane_ip()
    rules = Rules()
    try:
        rules.add(node, [], "raw", "PREROUTING", ["-i", "eth0"])
        rules.add(node, [], "mangle", "POSTROUTING", ["-o", "eth0"])
    except CommandFailed:
        rules.remove()
        raise

    def cut_off() -> bool:
        probe = f"timeout 2 bash -c '</dev/tcp/{api}/6443' 2>/dev/null && echo open || echo cut"
        return on_node(node, "bash", "-c", probe, check=False).strip() == "cut"

    return Injected(target=node, took_effect=cut_off, heal=rules.remove, detail={"api": api})


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
    network namespace (entered through the pod's sandbox, which outlives a restarted
    container), so established connections hang as on a real network fault."""

    def inject(target: Target, choice: int) -> Injected:
        ports = ",".join(str(p) for p in app_ports(target)[dependency])
        rules = Rules()
        cut: list[tuple[str, str, str]] = []  # (name, uid, pod IP)
        try:
            for pod in running_pods(target, target.app_selector):
                node, pid = sandbox_pid(pod)
                match = ["-p", "tcp", "-m", "multiport", "--dports", ports]
                rules.add(node, ["nsenter", "-t", str(pid), "-n"], "filter", "OUTPUT", match)
                meta = pod["metadata"]
                cut.append((meta["name"], meta["uid"], pod["status"]["podIP"]))
        except CommandFailed:
            rules.remove()
            raise

        def seen_by_app() -> bool:
            alive = {p["metadata"]["uid"] for p in pods(target, target.app_selector)}
            answers = readiness_of(target, [ip for _, uid, ip in cut if uid in alive]).values()
            return bool(answers) and all(
                dependency in (a["body"] or {}).get("failing", []) for a in answers
            )

        return Injected(
            target=",".join(name for name, _, _ in cut),
            took_effect=seen_by_app,
            heal=rules.remove,
            detail={"ports": ports},
        )

    return inject


# --- the data layer -------------------------------------------------------------------------


def postgres_primary(target: Target, choice: int) -> dict[str, Any]:
    """The server Patroni labels `role=primary` (replication), or the only PostgreSQL pod."""
    servers = running_pods(target, target.selector("postgresql"))
    primaries = [p for p in servers if p["metadata"].get("labels", {}).get("role") == "primary"]
    return _pick(primaries or servers, choice, "postgresql primary")


def redis_master(target: Target) -> dict[str, Any]:
    """The pod most Sentinels name as master (replication), or the only Redis pod."""
    redis = running_pods(target, target.selector("redis"))
    if len(redis) == 1:
        return redis[0]
    config = app_config(target)
    master_set = config.get("REDIS_SENTINEL_MASTER", "mymaster")
    port = next(iter(app_ports(target)["redis"][1:]), 26379)
    votes: dict[str, int] = {}
    for pod in redis:
        out = kubectl(
            "exec", "-n", target.namespace, pod["metadata"]["name"], "-c", "sentinel", "--",
            "redis-cli", "-p", str(port), "SENTINEL", "get-master-addr-by-name", master_set,
            check=False,
        ).split()  # fmt: skip
        for candidate in redis:
            name = candidate["metadata"]["name"]
            if out and (candidate["status"].get("podIP") == out[0] or out[0].split(".")[0] == name):
                votes[name] = votes.get(name, 0) + 1
    if not votes:
        raise CommandFailed("no Sentinel names a master among the Redis pods")
    chosen = max(votes, key=lambda name: votes[name])
    return next(p for p in redis if p["metadata"]["name"] == chosen)


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


def _running_app(target: Target, choice: int) -> dict[str, Any]:
    return _pick(running_pods(target, target.app_selector), choice, "running app pod")


def _one_of(name: str) -> Callable[[Target, int], dict[str, Any]]:
    return lambda target, choice: _pick(running_pods(target, target.selector(name)), choice, name)


KINDS: dict[str, FaultKind] = {
    kind.name: kind
    for kind in (
        FaultKind("app-kill", "app container SIGKILLed", 0, kill_pod_process(_running_app)),
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
            "PostgreSQL primary SIGKILLed",
            0,
            kill_pod_process(lambda t, c: postgres_primary(t, c)),
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
