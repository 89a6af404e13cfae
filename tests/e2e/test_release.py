"""The chart on a real multi-node cluster, as a user lives it: install, use, break a pod,
scale, upgrade, roll back, uninstall.

The tests that only use the release (or break a pod, which heals) share the session's
`release`; the one that upgrades, rolls back and uninstalls has a release of its own.
Any test runs alone and in any order.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.e2e.cluster import (
    APP_SELECTOR,
    CHART,
    RELEASE,
    CommandFailed,
    client_pod,
    helm,
    in_cluster,
    install_values,
    kubectl,
    kubectl_json,
    ready_pods,
    run_python_in,
    wait_for,
)
from tests.e2e.releases import installed_release

SERVICE = f"{RELEASE}-saga-stack"
SCHEMA_CHANGES = [
    "DROP TABLE orders",
    "ALTER TABLE orders ADD COLUMN intruder int",
    "TRUNCATE outbox",
    "CREATE TABLE intruder (id int)",
    "UPDATE alembic_version SET version_num = 'forged'",
]


def test_install_reaches_ready(release: str, workers: list[str]) -> None:
    assert len(workers) >= 2, "the e2e tier needs a cluster with two workers"
    deployment = kubectl_json("get", "deployment", "-n", release, SERVICE)
    assert deployment["status"]["readyReplicas"] >= 2
    for sts in kubectl_json("get", "statefulsets", "-n", release)["items"]:
        assert sts["status"].get("readyReplicas") == sts["spec"]["replicas"], sts["metadata"][
            "name"
        ]


def test_services_resolve_by_dns_inside_the_cluster(release: str, client: str) -> None:
    names = [SERVICE, f"{RELEASE}-postgresql", f"{RELEASE}-redis-master", f"{RELEASE}-kafka"]
    fqdns = [f"{n}.{release}.svc.cluster.local" for n in names]
    resolved = run_python_in(
        release,
        client,
        "import json, socket\n"
        f"print(json.dumps({{n: socket.gethostbyname(n) for n in {fqdns!r}}}))",
    )
    assert set(resolved) == set(fqdns)


def test_a_saga_placed_through_the_service_completes(release: str, client: str) -> None:
    result = in_cluster(
        release,
        client,
        """
        call("PUT", "/stock/e2e-sku", {"quantity": 10})
        _, ok, _ = call("POST", "/orders", {"customer_id": "c-1", "items": [
            {"sku": "e2e-sku", "quantity": 2, "unit_price_cents": 500}]})
        _, declined, _ = call("POST", "/orders", {"customer_id": "decline-1", "items": [
            {"sku": "e2e-sku", "quantity": 1, "unit_price_cents": 500}]})
        final = {"ok": wait_final(ok["order_id"]), "declined": wait_final(declined["order_id"])}
        _, stock, _ = call("GET", "/stock/e2e-sku")
        print(json.dumps({**final, "stock": stock}))
        """,
    )
    assert result["ok"] == "CONFIRMED"
    assert result["declined"] == "CANCELLED"
    assert result["stock"]["available"] == 8


def test_requests_spread_over_every_app_pod(release: str, client: str) -> None:
    pods = {p["metadata"]["name"] for p in ready_pods(release, APP_SELECTOR)}
    served = in_cluster(
        release,
        client,
        """
        seen = {}
        for _ in range(120):
            _, _, headers = call("GET", "/healthz/ready")
            served_by = headers.get("x-served-by") or headers.get("X-Served-By")
            pod = served_by.rsplit("-", 2)[0]  # "<pod>-<pid>-<random>"
            seen[pod] = seen.get(pod, 0) + 1
        print(json.dumps(seen))
        """,
    )
    assert set(served) == pods, f"served by {served}, pods {pods}"


def test_deleting_an_app_pod_mid_saga_loses_no_saga(release: str, client: str) -> None:
    start = in_cluster(
        release,
        client,
        """
        call("PUT", "/stock/kill-sku", {"quantity": 1000})
        ids = []
        for i in range(40):
            _, body, _ = call("POST", "/orders", {"customer_id": "k-%d" % i, "items": [
                {"sku": "kill-sku", "quantity": 1, "unit_price_cents": 100}]})
            ids.append(body["order_id"])
        print(json.dumps(ids))
        """,
    )
    victim = ready_pods(release, APP_SELECTOR)[0]["metadata"]["name"]
    kubectl("delete", "pod", "-n", release, victim, "--grace-period=0", "--force", "--wait=false")
    finals = in_cluster(
        release,
        client,
        f"print(json.dumps([wait_final(i, timeout=240) for i in {start!r}]))",
        timeout=600,
    )
    assert finals.count("PENDING") == 0, finals
    assert set(finals) == {"CONFIRMED"}


def test_network_policy_keeps_strangers_away_from_postgres(release: str, client: str) -> None:
    probe = (
        "import json, socket\n"
        "s = socket.socket(); s.settimeout(5)\n"
        "try:\n"
        f"    s.connect(('{RELEASE}-postgresql', 5432)); print(json.dumps('connected'))\n"
        "except OSError as e:\n"
        "    print(json.dumps('blocked: ' + type(e).__name__))\n"
    )
    assert run_python_in(release, client, probe).startswith("blocked")
    # the same probe from a pod carrying the client label gets through, once the
    # policy engine has seen the new pod (it updates its address sets on pod events)
    labelled = client_pod(
        release, "e2e-pg-client", _image(release), {"saga-stack.io/postgresql-client": "true"}
    )
    wait_for(
        "the labelled client to reach postgres",
        lambda: run_python_in(release, labelled, probe) == "connected",
        timeout=90,
    )
    # and the stranger is still refused afterwards
    assert run_python_in(release, client, probe).startswith("blocked")


def test_the_apps_database_role_reads_and_writes_and_changes_nothing_else(release: str) -> None:
    """From inside an app pod, with the credentials the pod has: rows yes, schema no."""
    (pod, *_) = ready_pods(release, APP_SELECTOR)
    attempt = (
        "import json, os, psycopg\n"
        "env = os.environ\n"
        "conn = psycopg.connect(host=env['DATABASE_HOST'], port=env['DATABASE_PORT'],\n"
        "    dbname=env['DATABASE_NAME'], user=env['DATABASE_USER'],\n"
        "    password=env['DATABASE_PASSWORD'], autocommit=True)\n"
        "out = {'user': conn.execute('SELECT current_user').fetchone()[0],\n"
        "       'orders': conn.execute('SELECT count(*) FROM orders').fetchone()[0] >= 0}\n"
        f"for statement in {SCHEMA_CHANGES!r}:\n"
        "    try:\n"
        "        conn.execute(statement); out[statement] = 'done'\n"
        "    except psycopg.errors.InsufficientPrivilege:\n"
        "        out[statement] = 'refused'\n"
        "print(json.dumps(out))\n"
    )
    result = run_python_in(release, pod["metadata"]["name"], attempt)
    assert result.pop("user") == "saga_app"
    assert result.pop("orders") is True
    assert result == dict.fromkeys(SCHEMA_CHANGES, "refused")


def test_postgres_data_survives_deleting_its_pod(release: str, client: str) -> None:
    in_cluster(release, client, 'call("PUT", "/stock/durable-sku", {"quantity": 17}); print(1)')
    kubectl("delete", "pod", "-n", release, f"{RELEASE}-postgresql-0", "--wait=true", timeout=180)
    kubectl(
        "rollout",
        "status",
        "-n",
        release,
        f"statefulset/{RELEASE}-postgresql",
        "--timeout=300s",
        timeout=320,
    )

    def stock_read_back() -> Any:
        status, body = in_cluster(
            release, client, 'print(json.dumps(call("GET", "/stock/durable-sku")[:2]))'
        )
        return body if status == 200 else None

    stock = wait_for(
        "the app to read the stock from the new postgres pod", stock_read_back, timeout=180
    )
    assert stock["available"] == 17


def _image(namespace: str) -> str:
    deployment = kubectl_json("get", "deployment", "-n", namespace, SERVICE)
    image: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def _secret_data(namespace: str, name: str) -> dict[str, str]:
    data: dict[str, str] = kubectl_json("get", "secret", "-n", namespace, name)["data"]
    return data


def _postgres_password(namespace: str) -> str:
    return base64.b64decode(_secret_data(namespace, f"{RELEASE}-postgresql")["password"]).decode()


def test_a_release_of_its_own_lives_through_upgrade_rollback_and_uninstall(
    cluster: list[str], workers: list[str]
) -> None:
    """The steps that change the release, on one that no other test shares, so that every
    test of this module can run alone and in any order."""
    # Installed as a release from before Kafka's SASL and Redis's ACL users; the first
    # upgrade turns both on, which only works if the topics hook waits for the brokers
    # (--wait: the app is Ready only once Kafka and Redis take its credentials).
    plaintext = [
        *install_values(), "--set", "kafka.auth.enabled=false",
        "--set", "redis.auth.acl.enabled=false",
    ]  # fmt: skip
    with installed_release(plaintext, prefix="saga-life") as namespace:
        password_before = _postgres_password(namespace)
        helm("upgrade", RELEASE, str(CHART), "-n", namespace, "--reuse-values",
             "--set", "replicas=5", "--set", "kafka.auth.enabled=true",
             "--set", "redis.auth.acl.enabled=true",
             "--wait", "--timeout", "10m")  # fmt: skip
        config = kubectl_json("get", "configmap", "-n", namespace, SERVICE)["data"]
        assert config["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert config["REDIS_USERNAME"] == "saga"
        redis_passwords = _secret_data(namespace, f"{RELEASE}-redis")
        assert set(redis_passwords) == {
            "password", "client-password", "replication-password", "sentinel-password"
        }  # fmt: skip

        def five_ready() -> list[dict[str, Any]] | None:
            pods = ready_pods(namespace, APP_SELECTOR)
            return pods if len(pods) == 5 else None

        pods = wait_for("5 Ready app pods", five_ready)
        assert {p["spec"]["nodeName"] for p in pods} == set(workers)
        # a second upgrade: generated credentials stay (the lookup path, for real)
        helm("upgrade", RELEASE, str(CHART), "-n", namespace, "--reuse-values",
             "--wait", "--timeout", "10m")  # fmt: skip
        assert _postgres_password(namespace) == password_before
        assert _secret_data(namespace, f"{RELEASE}-redis") == redis_passwords
        # The StatefulSet's selector cannot change: switching architecture is refused, by name.
        with pytest.raises(CommandFailed, match=r"postgresql\.architecture cannot change"):
            helm("upgrade", RELEASE, str(CHART), "-n", namespace, "--reuse-values",
                 "--set", "postgresql.architecture=replication",
                 "--set", "postgresql.image.repository=saga-stack.local/postgres",
                 "--dry-run=server")  # fmt: skip

        history = json.loads(helm("history", RELEASE, "-n", namespace, "-o", "json"))
        first = history[0]["revision"]
        helm("rollback", RELEASE, str(first), "-n", namespace, "--wait", "--timeout", "10m")
        values = json.loads(helm("get", "values", RELEASE, "-n", namespace, "-o", "json"))
        assert values.get("replicas", 2) == 2
        hpa = kubectl_json("get", "hpa", "-n", namespace, SERVICE)
        assert hpa["spec"]["minReplicas"] == 2

        _uninstall_leaves_only_the_claims_the_values_keep(namespace)


def _uninstall_leaves_only_the_claims_the_values_keep(namespace: str) -> None:
    helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "5m")
    kinds = ",".join(
        (
            *("deployments", "statefulsets", "services", "configmaps", "secrets", "jobs"),
            *("networkpolicies", "hpa", "pdb", "serviceaccounts"),
        )
    )
    left = wait_for(
        "the release's objects to go",
        lambda: (
            not kubectl_json(
                "get", kinds, "-n", namespace, "-l", f"app.kubernetes.io/instance={RELEASE}"
            )["items"]
            or None
        ),
        timeout=180,
    )
    assert left is True
    # values/local.yaml says whenDeleted: Delete for every claim
    wait_for(
        "the claims to go",
        lambda: not kubectl_json("get", "pvc", "-n", namespace)["items"] or None,
        timeout=180,
    )
