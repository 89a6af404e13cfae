"""The production profile against services that play the managed ones (RDS, ElastiCache,
MSK: tests/e2e/managed_services.py): the release is installed from values/production.yaml
plus only what a user fills in (hosts, the Redis user, the CA, the Secret they created),
and the single stand-in broker's replication factor. It migrates and creates its topics
over TLS, runs sagas, lets out exactly the services' ports, and a misconfigured pod says
why in its log and stays out of the Service without restarting.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import (
    APP_SELECTOR,
    APP_SERVICE,
    VALUES,
    client_pod,
    image_overlay,
    in_cluster,
    kubectl,
    kubectl_json,
    pod_manifest,
    ready_pods,
    wait_for,
)
from tests.e2e.managed_services import (
    KAFKA_INTERNAL_PORT,
    KAFKA_SASL_SSL_PORT,
    POSTGRES_PORT,
    REDIS_TLS_PORT,
    USER,
    ManagedServices,
    managed_services,
)
from tests.e2e.releases import installed_release
from tests.integration.services.tls import make_ca

API_TOKEN = secrets.token_hex(24)
# The password the migrate Job gives the app's role (values/production.yaml's user).
APP_DATABASE_PASSWORD = secrets.token_hex(16)


@pytest.fixture(scope="module")
def managed(
    cluster: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ManagedServices]:
    with managed_services(tmp_path_factory.mktemp("managed")) as services:
        yield services


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA that signed none of the services' certificates."""
    return make_ca(tmp_path_factory.mktemp("other-ca"), "not-the-services-ca").cert


@pytest.fixture(scope="module")
def production(managed: ManagedServices, other_ca: Path) -> Iterator[str]:
    def prepare(namespace: str) -> None:
        # What docs/production-path.md tells a user to create before the install.
        kubectl(
            "create", "secret", "generic", "saga-credentials", "-n", namespace,
            f"--from-literal=database-owner-password={managed.database_password}",
            f"--from-literal=database-password={APP_DATABASE_PASSWORD}",
            f"--from-literal=redis-password={managed.redis_password}",
            f"--from-literal=kafka-sasl-password={managed.kafka_password}",
            f"--from-literal=api-tokens={API_TOKEN}",
        )  # fmt: skip
        # What docs/production-path.md asks of the DBA: the app's login role, nothing more.
        managed_exec(
            managed, "pg", "psql", "-U", USER, "-d", "saga", "-c",
            f"CREATE ROLE saga_app LOGIN PASSWORD '{APP_DATABASE_PASSWORD}'",
        )  # fmt: skip
        kubectl(
            "create", "configmap", "saga-ca", "-n", namespace,
            f"--from-file=ca.crt={managed.ca.cert}",
        )  # fmt: skip
        kubectl(
            "create", "configmap", "other-ca", "-n", namespace, f"--from-file=ca.crt={other_ca}"
        )

    values = [
        "-f", str(VALUES / "production.yaml"),
        *image_overlay(),
        "--set", f"externalDatabase.host={managed.host('pg')}",
        "--set", f"externalRedis.host={managed.host('redis')}",
        "--set", f"externalRedis.username={USER}",
        "--set", f"externalKafka.bootstrapServers={{{managed.kafka_bootstrap}}}",
        # One stand-in broker (a managed cluster has three).
        "--set", "topics.replicationFactor=1",
        "--set", "topics.minInsyncReplicas=1",
    ]  # fmt: skip
    with installed_release(values, prefix="saga-prod", prepare=prepare) as namespace:
        yield namespace


@pytest.fixture(scope="module")
def prod_client(production: str) -> str:
    image = kubectl_json("get", "deployment", "-n", production, APP_SERVICE)["spec"]["template"][
        "spec"
    ]["containers"][0]["image"]
    return client_pod(production, "prod-client", image)


def managed_exec(managed: ManagedServices, pod: str, *command: str) -> str:
    return kubectl("exec", "-n", managed.namespace, pod, "--", *command, timeout=120)


def test_the_release_migrates_creates_its_topics_and_runs_sagas_over_tls(
    production: str, prod_client: str, managed: ManagedServices
) -> None:
    # The hook Jobs (helm --wait-for-jobs) did their work on the managed services.
    sql = "SELECT version_num FROM alembic_version"
    version = managed_exec(managed, "pg", "psql", "-U", USER, "-d", "saga", "-tAc", sql)
    assert version.strip(), "no migration recorded in the managed PostgreSQL"
    # The app's pods connect as the role migrate made, which owns nothing.
    sql = (
        "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = 'saga' "
        "AND application_name <> 'psql'"
    )
    users = managed_exec(managed, "pg", "psql", "-U", USER, "-d", "saga", "-tAc", sql)
    assert users.split() == ["saga_app"], users
    owners = "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
    owner = managed_exec(managed, "pg", "psql", "-U", USER, "-d", "saga", "-tAc", owners)
    assert owner.split() == [USER], owner
    topics = managed_exec(
        managed, "kafka", "env", "KAFKA_HEAP_OPTS=-Xmx64m", "kafka-topics.sh",
        "--bootstrap-server", f"127.0.0.1:{KAFKA_INTERNAL_PORT}", "--describe",
    )  # fmt: skip
    assert "PartitionCount: 12" in topics, topics

    result = in_cluster(
        production,
        prod_client,
        f"""
        anonymous, refused, _ = call("PUT", "/stock/prod-sku", {{"quantity": 10}})
        TOKEN = {API_TOKEN!r}
        call("PUT", "/stock/prod-sku", {{"quantity": 10}})
        _, ok, _ = call("POST", "/orders", {{"customer_id": "c-1", "items": [
            {{"sku": "prod-sku", "quantity": 2, "unit_price_cents": 500}}]}})
        _, declined, _ = call("POST", "/orders", {{"customer_id": "decline-1", "items": [
            {{"sku": "prod-sku", "quantity": 1, "unit_price_cents": 500}}]}})
        final = {{"ok": wait_final(ok["order_id"]), "declined": wait_final(declined["order_id"])}}
        _, stock, _ = call("GET", "/stock/prod-sku")
        print(json.dumps({{**final, "stock": stock, "anonymous": anonymous}}))
        """,
    )
    assert result["anonymous"] == 401, "a write without the bearer token was not refused"
    assert result["ok"] == "CONFIRMED"
    assert result["declined"] == "CANCELLED"
    assert result["stock"]["available"] == 8


CONNECT = """
import json, socket, sys
results = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=4).close()
        results[target] = True
    except OSError:
        results[target] = False
print(json.dumps(results))
"""


def connects(namespace: str, pod: str, targets: list[str]) -> dict[str, bool]:
    out = kubectl("exec", "-n", namespace, pod, "--", "python3", "-c", CONNECT, *targets)
    result: dict[str, bool] = json.loads(out.strip().splitlines()[-1])
    return result


def test_the_app_egress_lets_out_the_services_ports_and_nothing_else(
    production: str, prod_client: str, managed: ManagedServices
) -> None:
    allowed = [
        f"{managed.host('pg')}:{POSTGRES_PORT}",
        f"{managed.host('redis')}:{REDIS_TLS_PORT}",
        f"{managed.host('kafka')}:{KAFKA_SASL_SSL_PORT}",
    ]
    other = f"{managed.host('kafka')}:{KAFKA_INTERNAL_PORT}"
    # The other port answers a pod outside the release's policies...
    assert connects(production, prod_client, [other]) == {other: True}
    app_pod = ready_pods(production, APP_SELECTOR)[0]["metadata"]["name"]
    # ...and not the app, whose egress names only the services' ports.
    assert connects(production, app_pod, [*allowed, other]) == {
        **dict.fromkeys(allowed, True),
        other: False,
    }


def misconfigured_pod(namespace: str, case: str, change: dict[str, Any]) -> str:
    """A pod made from the app Deployment's template (same policies, Secret, CA mount),
    with one setting changed, outside the Service (its own component label)."""
    template = kubectl_json("get", "deployment", "-n", namespace, APP_SERVICE)["spec"]["template"]
    spec = template["spec"]
    spec.pop("topologySpreadConstraints", None)
    spec.pop("affinity", None)
    container = spec["containers"][0]
    for name, value in change.get("env", {}).items():
        container["env"] = [e for e in container.get("env", []) if e["name"] != name]
        container["env"].append({"name": name, "value": value})
    for volume in spec.get("volumes", []):
        config_map = volume.get("configMap", {})
        if config_map.get("name") in change.get("configmaps", {}):
            config_map["name"] = change["configmaps"][config_map["name"]]
    labels = {k: v for k, v in template["metadata"]["labels"].items() if k != "pod-template-hash"}
    name = f"misconfigured-{case}"
    manifest = pod_manifest(
        namespace, name, {**labels, "app.kubernetes.io/component": "misconfigured-check"}, spec
    )
    kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    return name


CASES = {
    # case: (change, what the log names)
    "wrong-password": (
        {"env": {"DATABASE_PASSWORD": "not-the-password"}},
        ("bad credentials", "password authentication failed"),
    ),
    "untrusted-ca": ({"configmaps": {"saga-ca": "other-ca"}}, ("untrusted certificate",)),
    "plaintext-only": (
        {"env": {"REDIS_HOST": "redis-plain.{managed}.svc.cluster.local"}},
        ("server without TLS",),
    ),
}


def test_each_misconfiguration_leaves_a_pod_unready_that_names_the_cause(
    production: str, managed: ManagedServices
) -> None:
    pods = {}
    for case, (change, _) in CASES.items():
        change = json.loads(json.dumps(change).replace("{managed}", managed.namespace))
        pods[case] = misconfigured_pod(production, case, change)

    seen: dict[str, str] = {}
    for case, (_, fragments) in CASES.items():
        pod = pods[case]

        def cause(pod: str = pod, fragments: tuple[str, ...] = fragments) -> str | None:
            log = kubectl("logs", "-n", production, pod, check=False)
            return next(
                (
                    line
                    for line in log.splitlines()
                    if "misconfigured" in line and all(f in line for f in fragments)
                ),
                None,
            )

        seen[case] = wait_for(f"{pod} to log its misconfiguration", cause, timeout=180, every=3)

        def probe_failed(pod: str = pod) -> bool | None:
            events = kubectl_json(
                "get", "events", "-n", production,
                "--field-selector", f"involvedObject.name={pod},reason=Unhealthy",
            )["items"]  # fmt: skip
            return any("Readiness probe failed" in e.get("message", "") for e in events) or None

        wait_for(f"{pod}'s readiness probe to fail", probe_failed, timeout=120, every=3)
        status = kubectl_json("get", "pod", "-n", production, pod)["status"]
        ready = {c["type"]: c["status"] for c in status.get("conditions", [])}.get("Ready")
        restarts = status["containerStatuses"][0]["restartCount"]
        assert ready == "False", f"{pod} is Ready with {case}"
        assert restarts == 0, f"{pod} restarted {restarts} times with {case}: a crash loop"
    print(json.dumps(seen, indent=2))
    for pod in pods.values():
        kubectl("delete", "pod", "-n", production, pod, "--wait=false")
