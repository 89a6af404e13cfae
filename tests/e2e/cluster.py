"""Helpers of the e2e tier: kubectl and helm against the cluster in KUBECONFIG,
in-cluster client pods, and waiting on conditions (never on sleeps)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
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
    try:
        proc = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False, input=stdin
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(f"{' '.join(argv)} did not finish within {timeout:.0f}s") from exc
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


def install_values(*profiles: str) -> list[str]:
    """The values files `make up` uses: the local profile, then `profiles` layered on it (names
    under values/), then the offline images overlay when the cluster runs locally built images."""
    files = ["-f", str(VALUES / "local.yaml")]
    for profile in profiles:
        files += ["-f", str(VALUES / profile)]
    return files + image_overlay()


def image_overlay() -> list[str]:
    """The offline images overlay when the cluster runs locally built images, else nothing."""
    overlay = VALUES / "offline-images.yaml"
    if os.environ.get("SAGA_STACK_IMAGES", "offline") == "offline" and overlay.is_file():
        return ["-f", str(overlay)]
    return []


_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+)")


@contextlib.contextmanager
def port_forward(namespace: str, service: str, port: str = "http") -> Iterator[str]:
    """`kubectl port-forward` of a Service's port to a free local port, as a user opens it;
    yields http://127.0.0.1:<local port>."""
    forward = subprocess.Popen(
        [_tool("kubectl"), "port-forward", "-n", namespace, f"service/{service}", f":{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert forward.stdout is not None
        first = forward.stdout.readline()  # kubectl names the port once it listens
        match = _FORWARDING.search(first)
        if not match:
            forward.kill()
            rest = forward.stdout.read()
            raise CommandFailed(f"kubectl port-forward service/{service}: {first}{rest}")
        yield f"http://127.0.0.1:{match.group(1)}"
    finally:
        forward.terminate()
        forward.wait(timeout=10)


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


def pod_manifest(
    namespace: str, name: str, labels: dict[str, str], spec: dict[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": spec,
    }


def client_pod(
    namespace: str,
    name: str,
    image: str,
    labels: dict[str, str] | None = None,
    *,
    env: list[dict[str, Any]] | None = None,
    env_from: list[dict[str, Any]] | None = None,
    on_control_plane: bool = False,
    lifetime: int = 3600,
) -> str:
    """A long-running pod to run commands from inside the cluster (not part of the release);
    `env`/`env_from` as in a container spec (e.g. copied from the app's Deployment).
    `on_control_plane` pins it to the control-plane node, which fault tests never touch."""
    placement: dict[str, Any] = {}
    if on_control_plane:
        role = "node-role.kubernetes.io/control-plane"
        placement = {
            "nodeSelector": {role: ""},
            "tolerations": [{"key": role, "operator": "Exists", "effect": "NoSchedule"}],
        }
    manifest = pod_manifest(
        namespace,
        name,
        {"saga-stack.io/e2e-client": "true", **(labels or {})},
        {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            **placement,
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
                    "command": ["python3", "-c", f"import time; time.sleep({lifetime})"],
                    "env": env or [],
                    "envFrom": env_from or [],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    )
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


KAFKA_SELECTOR = "app.kubernetes.io/name=kafka"
# The admin user's client configuration in every broker pod (kafka.auth.enabled).
KAFKA_ADMIN_CONFIG = "/etc/kafka/secrets/admin.properties"


def kafka_admin(namespace: str, *command: str) -> str:
    """Runs one of Kafka's command-line tools as the brokers' admin user, in a Ready broker
    of the release, against the brokers themselves."""
    (broker, *_) = ready_pods(namespace, KAFKA_SELECTOR)
    return kubectl(
        "exec", "-n", namespace, broker["metadata"]["name"], "-c", "kafka", "--",
        "env", "KAFKA_HEAP_OPTS=-Xmx64m", *command,
        "--bootstrap-server", "localhost:9092", "--command-config", KAFKA_ADMIN_CONFIG,
        timeout=120,
    )  # fmt: skip


def grant_kafka_topic(namespace: str, user: str, topic: str) -> None:
    """Lets `user` create, write, read and describe `topic` (the app's user gets only its
    own topics from the chart; a test's probe topic needs this)."""
    kafka_admin(
        namespace, "kafka-run-class.sh", "org.apache.kafka.tools.AclCommand",
        "--add", "--allow-principal", f"User:{user}", "--topic", topic,
        "--operation", "Create", "--operation", "Write", "--operation", "Read",
        "--operation", "Describe",
    )  # fmt: skip


def run_python_in(namespace: str, pod: str, code: str, *, timeout: float = 300) -> Any:
    """Runs Python in the client pod; the code prints one JSON document, returned parsed."""
    out = kubectl("exec", "-n", namespace, pod, "--", "python3", "-c", code, timeout=timeout)
    return json.loads(out.strip().splitlines()[-1])


APP_SERVICE = f"{RELEASE}-saga-stack"

# The client code the in-cluster snippets call (call, wait_final), as it runs in the pod.
HTTP_CLIENT = (Path(__file__).parent / "probes" / "http_client.py").read_text()


def http_client() -> str:
    """The client code with BASE pointing at the release's app Service: put it before any
    program that runs in the client pod and calls the app."""
    return f"{HTTP_CLIENT}\nBASE = {'http://' + APP_SERVICE!r}\n"


def in_cluster(namespace: str, pod: str, body: str, timeout: float = 300) -> Any:
    """Runs `body` after the HTTP client (probes/http_client.py) in the client pod; returns
    its last JSON line."""
    code = http_client() + textwrap.dedent(body)
    return run_python_in(namespace, pod, code, timeout=timeout)


class InClusterProcess:
    """A Python program fed on stdin to `kubectl exec` and left running, its JSON lines
    collected as they come, so a test can act (delete a pod) while it runs."""

    def __init__(self, namespace: str, pod: str, code: str, *args: str) -> None:
        argv = [_tool("kubectl"), "exec", "-i", "-n", namespace, pod, "--", "python3", "-", *args]
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self._proc.stdin is not None
        self._proc.stdin.write(code)
        self._proc.stdin.close()
        self.lines: list[dict[str, Any]] = []
        self._new: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            if raw.startswith("{"):
                line = json.loads(raw)
                self.lines.append(line)
                self._new.put(line)

    def wait_line(self, what: str, match: Callable[[dict[str, Any]], bool], timeout: float) -> Any:
        """Blocks until a line satisfying `match` arrives; fails naming `what`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._new.get(timeout=1)
            except queue.Empty:
                if self._proc.poll() is not None and self._new.empty():
                    break
                continue
            if match(line):
                return line
        raise AssertionError(f"no {what} from the in-cluster program: {self._stderr_tail()}")

    def finish(self, timeout: float) -> list[dict[str, Any]]:
        """Waits for the program to exit 0 and returns every JSON line it printed."""
        try:
            code = self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            raise AssertionError(f"in-cluster program still running after {timeout:.0f}s") from None
        self._reader.join(timeout=10)
        if code != 0:
            raise CommandFailed(f"in-cluster program exited {code}: {self._stderr_tail()}")
        return self.lines

    def _stderr_tail(self) -> str:
        if self._proc.poll() is None or self._proc.stderr is None:
            return "(still running)"
        return self._proc.stderr.read()[-2000:]


def pod_usage(namespace: str) -> dict[str, dict[str, str]]:
    """Each container's CPU and memory now, by pod, as metrics-server reports them (figures,
    not checks): {pod: {"<container> cpu": "3m", "<container> memory": "15Mi"}}."""
    listing = json.loads(
        kubectl("get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods")
    )
    return {
        item["metadata"]["name"]: {
            f"{c['name']} {resource}": str(value)
            for c in item["containers"]
            for resource, value in c["usage"].items()
        }
        for item in listing["items"]
    }
