"""PostgreSQL in each architecture: one server (the default, unchanged) or
`replication.instances` servers under Patroni; and the anti-affinity of every
replicated data-layer set.

Patroni's Kubernetes DCS only works when several objects agree: the pods carry
the labels patroni.yml lists, the primary Service is selector-less and named
after the scope (Patroni writes the leader's address into its Endpoints, whose
port names must match), the ServiceAccount's Role grants exactly what the DCS
calls, and the NetworkPolicy lets the servers reach each other and the API.
These tests check that agreement on the rendered objects; failover itself is
exercised on a cluster by the e2e tier.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import k8s_openapi
import pytest
import yaml
from helm import (
    NAMESPACE,
    REPO_ROOT,
    Manifest,
    RenderError,
    find,
    hook_jobs,
    one,
    pod_spec,
    pod_templates,
    render,
)
from saga_service.settings import Settings
from test_chart_policies import _check_restricted
from test_data_layer import KAFKA3, REPLICATION, SENTINEL, app_config, app_secret_env

PG = "saga-postgresql"
# The default image is the official one, which has no Patroni (the chart refuses it here).
PATRONI = {
    "postgresql.architecture": "replication",
    "postgresql.image.repository": "saga-stack.local/postgres",
}
VALUES = REPO_ROOT / "values"
PROFILES: dict[str, list[Path]] = {
    "local+local-ha": [
        VALUES / "local.yaml",
        VALUES / "local-ha.yaml",
        VALUES / "offline-images.yaml",
    ],
    "ha": [VALUES / "ha.yaml"],
}
HOSTNAME = "kubernetes.io/hostname"


@functools.cache
def rendered(instances: int = 0, synchronous: bool = False) -> tuple[Manifest, ...]:
    """The default chart (instances 0) or PostgreSQL replicated `instances` ways."""
    if not instances:
        return tuple(render())
    values = {
        **PATRONI,
        "postgresql.replication.instances": instances,
        "postgresql.replication.synchronous": synchronous,
    }
    return tuple(render(values=values))


@functools.cache
def profile(name: str) -> tuple[Manifest, ...]:
    return tuple(render(PROFILES[name]))


def server(objects: Sequence[Manifest]) -> Manifest:
    return one(objects, "StatefulSet", PG)


def container(objects: Sequence[Manifest]) -> dict[str, Any]:
    (only,) = pod_spec(server(objects))["containers"]
    found: dict[str, Any] = only
    return found


def patroni_config(objects: Sequence[Manifest]) -> dict[str, Any]:
    text = one(objects, "ConfigMap", f"{PG}-patroni")["data"]["patroni.yml"]
    config: dict[str, Any] = yaml.safe_load(text)
    return config


def own(objects: Sequence[Manifest], kind: str) -> list[Manifest]:
    """The objects of `kind` the postgresql subchart made (the app has its own SA and PDB)."""
    return [o for o in find(objects, kind) if o["metadata"]["name"].startswith(PG)]


def anti_affinity(sts: Manifest) -> dict[str, Any]:
    anti: dict[str, Any] = pod_spec(sts)["affinity"]["podAntiAffinity"]
    return anti


def assert_spreads(sts: Manifest, mode: str) -> None:
    """`hard` is one required term, `soft` one preferred; either selects this set's own
    pods on kubernetes.io/hostname (a selector matching no pod would spread nothing)."""
    anti = anti_affinity(sts)
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    if mode == "hard":
        assert set(anti) == {"requiredDuringSchedulingIgnoredDuringExecution"}
        (term,) = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    else:
        assert set(anti) == {"preferredDuringSchedulingIgnoredDuringExecution"}
        (preferred,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
        assert preferred["weight"] == 100
        term = preferred["podAffinityTerm"]
    assert term["topologyKey"] == HOSTNAME
    wanted = term["labelSelector"]["matchLabels"]
    assert wanted and wanted.items() <= pod_labels.items(), (wanted, pod_labels)


def _ports(rule: dict[str, Any]) -> set[int]:
    return {p["port"] for p in rule["ports"]}


# --- standalone, the default: as before the replication architecture ---------


def test_standalone_is_one_server_without_patroni_or_api_access() -> None:
    objects = rendered()
    sts = server(objects)
    assert sts["spec"]["replicas"] == 1
    assert "podManagementPolicy" not in sts["spec"]
    spec = pod_spec(sts)
    # no API access: no ServiceAccount of its own, and no token in the pod
    assert spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in spec
    assert "affinity" not in spec
    assert "command" not in container(objects), "the official image's entrypoint runs"
    env = {e["name"] for e in container(objects)["env"]}
    assert {"POSTGRES_USER", "POSTGRES_PASSWORD", "PGDATA"} <= env
    assert not {e for e in env if e.startswith("PATRONI_")}
    for kind in ("ServiceAccount", "Role", "RoleBinding", "PodDisruptionBudget"):
        assert not own(objects, kind), kind
    assert not find(objects, "ConfigMap", f"{PG}-patroni")
    assert not find(objects, "Service", f"{PG}-replicas")
    # the primary Service selects the one server itself
    selector = sts["spec"]["selector"]["matchLabels"]
    assert selector["app.kubernetes.io/component"] == "primary"
    service = one(objects, "Service", PG)["spec"]
    assert service["selector"] == selector
    assert service["ports"] == [{"name": "postgresql", "port": 5432, "targetPort": "postgresql"}]
    # the owner's and the app role's (postgresql.auth.appUsername)
    assert set(one(objects, "Secret", PG)["data"]) == {"password", "app-password"}
    policy = one(objects, "NetworkPolicy", PG)["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert "egress" not in policy


# --- replication: Patroni -----------------------------------------------------


@pytest.mark.parametrize("instances", [3, 5])
def test_replication_runs_instances_patroni_servers(instances: int) -> None:
    objects = rendered(instances)
    sts = server(objects)
    assert sts["spec"]["replicas"] == instances
    # Patroni elects the leader, so the servers need not start in order
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["serviceName"] == f"{PG}-hl"
    assert container(objects)["command"] == ["patroni", "/etc/patroni/patroni.yml"]
    # only one StatefulSet: every server may become the primary
    assert [s["metadata"]["name"] for s in own(objects, "StatefulSet")] == [PG]


def test_replication_servers_use_the_chart_service_account_with_a_token() -> None:
    objects = rendered(3)
    spec = pod_spec(server(objects))
    assert spec["serviceAccountName"] == PG
    # Patroni talks to the API server: the pod needs the token (the SA alone does not mount it)
    assert spec["automountServiceAccountToken"] is True
    assert one(objects, "ServiceAccount", PG)["automountServiceAccountToken"] is False


def test_replication_role_grants_exactly_what_patroni_calls() -> None:
    objects = rendered(3)
    role = one(objects, "Role", f"{PG}-patroni")
    rules = {r["resources"][0]: r for r in role["rules"]}
    assert len(rules) == len(role["rules"]) == 3
    assert all(r["apiGroups"] == [""] and len(r["resources"]) == 1 for r in role["rules"])
    assert {k: sorted(r["verbs"]) for k, r in rules.items()} == {
        "endpoints": sorted(["get", "list", "watch", "create", "update", "patch", "delete"]),
        "pods": sorted(["get", "list", "watch", "patch", "update"]),
        "services": ["create"],
    }
    flat = [x for r in role["rules"] for x in (*r["verbs"], *r["resources"], *r["apiGroups"])]
    assert "*" not in flat
    assert not find(objects, "ClusterRole") and not find(objects, "ClusterRoleBinding")
    binding = one(objects, "RoleBinding", f"{PG}-patroni")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": f"{PG}-patroni",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": PG, "namespace": NAMESPACE}]


def test_replication_primary_service_is_the_endpoints_patroni_writes() -> None:
    objects = rendered(3)
    service = one(objects, "Service", PG)
    # a selector would make the endpoints controller overwrite Patroni's leader address
    assert "selector" not in service["spec"]
    ports = service["spec"]["ports"]
    assert [(p["name"], p["port"]) for p in ports] == [("postgresql", 5432)]
    config = patroni_config(objects)
    # the leader Endpoints are named after the scope and carry Patroni's named ports
    assert config["scope"] == service["metadata"]["name"]
    assert config["kubernetes"]["ports"] == [{"name": "postgresql", "port": 5432}]
    # the app connects to that Service
    assert app_config(objects)["DATABASE_HOST"] == PG


def test_replication_replicas_and_headless_services_select_the_servers() -> None:
    objects = rendered(3)
    selector = server(objects)["spec"]["selector"]["matchLabels"]
    assert selector["app.kubernetes.io/component"] == "server"
    replicas = one(objects, "Service", f"{PG}-replicas")["spec"]
    assert replicas["selector"] == {**selector, "role": "replica"}
    assert replicas["ports"][0]["targetPort"] == "postgresql"
    headless = one(objects, "Service", f"{PG}-hl")["spec"]
    assert headless["clusterIP"] == "None"
    assert headless["selector"] == selector
    # Patroni labels each server with its role under the key the replicas Service selects
    assert patroni_config(objects)["kubernetes"]["role_label"] == "role"


def test_replication_secret_holds_both_passwords_the_servers_read() -> None:
    objects = rendered(3)
    data = one(objects, "Secret", PG)["data"]
    assert set(data) == {"password", "replication-password", "app-password"}
    assert len(base64.b64decode(data["replication-password"])) == 24
    assert data["password"] != data["replication-password"]
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container(objects)["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert refs == {
        "PATRONI_SUPERUSER_PASSWORD": {"name": PG, "key": "password"},
        "PATRONI_REPLICATION_PASSWORD": {"name": PG, "key": "replication-password"},
        # for the init script that creates the app's role
        "POSTGRES_APP_PASSWORD": {"name": PG, "key": "app-password"},
    }


def test_replication_pdb_lets_a_drain_take_one_server() -> None:
    objects = rendered(3)
    pdb = one(objects, "PodDisruptionBudget", PG)["spec"]
    assert pdb["maxUnavailable"] == 1
    assert pdb["selector"]["matchLabels"] == server(objects)["spec"]["selector"]["matchLabels"]
    off = render(values={**PATRONI, "postgresql.pdb.enabled": False})
    assert not own(off, "PodDisruptionBudget")


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_replication_anti_affinity(mode: str) -> None:
    objects = render(values={**PATRONI, "postgresql.podAntiAffinity": mode})
    assert_spreads(server(objects), mode)


def test_replication_anti_affinity_is_hard_by_default() -> None:
    assert_spreads(server(rendered(3)), "hard")


@pytest.mark.parametrize("synchronous", [True, False])
def test_patroni_config(synchronous: bool) -> None:
    objects = rendered(3, synchronous)
    config = patroni_config(objects)
    dcs = config["bootstrap"]["dcs"]
    assert dcs["synchronous_mode"] is synchronous
    assert dcs["failsafe_mode"] is True
    assert dcs["postgresql"]["use_pg_rewind"] is True
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (20, 5, 5)
    kubernetes = config["kubernetes"]
    assert kubernetes["use_endpoints"] is True
    # Patroni finds its members by these labels: every server's pod must carry them
    pod_labels = server(objects)["spec"]["template"]["metadata"]["labels"]
    assert kubernetes["labels"] and kubernetes["labels"].items() <= pod_labels.items()
    assert config["scope"] == PG
    assert config["postgresql"]["listen"] == "0.0.0.0:5432"
    assert config["restapi"]["listen"] == "0.0.0.0:8008"
    # the replication role the config admits is the one the servers log in as
    env = {e["name"]: e.get("value") for e in container(objects)["env"]}
    assert env["PATRONI_REPLICATION_USERNAME"] == "replicator"
    assert "host replication replicator 0.0.0.0/0 scram-sha-256" in config["postgresql"]["pg_hba"]


def test_patroni_config_change_rolls_the_servers() -> None:
    def checksum(objects: Sequence[Manifest]) -> str:
        annotations = server(objects)["spec"]["template"]["metadata"]["annotations"]
        value: str = annotations["checksum/patroni"]
        return value

    assert checksum(rendered(3, True)) != checksum(rendered(3, False))
    # the instance count is not in patroni.yml: scaling does not restart every server
    assert checksum(rendered(3)) == checksum(rendered(5))


def test_timing_boundary_loop_wait_plus_two_retries_equals_ttl_is_accepted() -> None:
    timing = {
        **PATRONI,
        "postgresql.replication.loopWait": 5,
        "postgresql.replication.retryTimeout": 5,
    }
    render(values={**timing, "postgresql.replication.ttl": 15})
    with pytest.raises(RenderError, match=r"exceeds ttl \(14\)"):
        render(values={**timing, "postgresql.replication.ttl": 14})


def test_replication_network_policy_lets_the_servers_replicate_and_reach_the_api() -> None:
    objects = rendered(3)
    policy = one(objects, "NetworkPolicy", PG)["spec"]
    selector = server(objects)["spec"]["selector"]["matchLabels"]
    assert policy["podSelector"]["matchLabels"] == selector
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    clients, peers = policy["ingress"]
    assert clients["from"] == [
        {"podSelector": {"matchLabels": {"saga-stack.io/postgresql-client": "true"}}}
    ]
    assert _ports(clients) == {5432}
    # replication and pg_rewind on 5432, Patroni's member checks on 8008, both ways
    assert peers["from"] == [{"podSelector": {"matchLabels": selector}}]
    assert _ports(peers) == {5432, 8008}
    to_peers = [
        r for r in policy["egress"] if r["to"] == [{"podSelector": {"matchLabels": selector}}]
    ]
    assert len(to_peers) == 1 and _ports(to_peers[0]) == {5432, 8008}
    to_api = [r for r in policy["egress"] if r["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0"}}]]
    assert len(to_api) == 1 and _ports(to_api[0]) == {443, 6443}
    dns = [r for r in policy["egress"] if r["to"] == [{"namespaceSelector": {}}]]
    assert len(dns) == 1 and _ports(dns[0]) == {53}
    assert len(policy["egress"]) == 3
    # the app still reaches the servers, which now have the component label `server`
    app_egress = one(objects, "NetworkPolicy", "saga-saga-stack-app")["spec"]["egress"]
    to_data = [r for r in app_egress if "podSelector" in r["to"][0]]
    names = to_data[0]["to"][0]["podSelector"]["matchExpressions"][0]["values"]
    assert "postgresql" in names and 5432 in _ports(to_data[0])


def test_replication_network_policy_api_peers_and_ports_are_configurable() -> None:
    api = [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    objects = render(
        values={
            **PATRONI,
            "postgresql.networkPolicy.kubernetesApiTo": api,
            "postgresql.networkPolicy.kubernetesApiPorts": [8443],
        }
    )
    egress = one(objects, "NetworkPolicy", PG)["spec"]["egress"]
    (to_api,) = [r for r in egress if r["to"] == api]
    assert _ports(to_api) == {8443}
    assert not [r for r in egress if r["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0"}}]]


@pytest.mark.parametrize("instances", [0, 3])
def test_postgresql_pods_stay_restricted(instances: int) -> None:
    sts = server(rendered(instances))
    assert _check_restricted(f"StatefulSet/{PG}", pod_spec(sts)) == []
    for c in pod_spec(sts)["containers"]:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True


# --- the HA profiles ------------------------------------------------------------


@pytest.mark.parametrize("name", list(PROFILES))
def test_ha_profile_renders_valid_objects(name: str, k8s_schemas: list[str]) -> None:
    assert k8s_openapi.schema_errors(profile(name), k8s_schemas) == []


@pytest.mark.parametrize("name", list(PROFILES))
def test_ha_profile_pods_are_restricted(name: str) -> None:
    problems: list[str] = []
    for obj in pod_templates(profile(name)):
        problems += _check_restricted(f"{obj['kind']}/{obj['metadata']['name']}", pod_spec(obj))
    assert problems == []


@pytest.mark.parametrize("name", list(PROFILES))
def test_ha_profile_replicates_postgresql_synchronously_one_server_per_node(name: str) -> None:
    objects = profile(name)
    assert server(objects)["spec"]["replicas"] == 3
    assert patroni_config(objects)["bootstrap"]["dcs"]["synchronous_mode"] is True
    for sts_name in (PG, "saga-redis-node", "saga-kafka"):
        assert_spreads(one(objects, "StatefulSet", sts_name), "hard")
    assert one(objects, "PodDisruptionBudget", PG)["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("name", list(PROFILES))
def test_ha_profile_app_settings_still_point_at_the_primary_service(name: str) -> None:
    """The app's own Settings from the rendered environment (secrets stand in as 'x')."""
    objects = profile(name)
    env: dict[str, Any] = {k.lower(): v for k, v in app_config(objects).items()}
    env.update({k.lower(): "x" for k in app_secret_env(objects)})
    settings = Settings(**env)
    assert settings.database_host == PG
    assert settings.database_port == 5432
    assert app_secret_env(objects)["DATABASE_PASSWORD"] == {"name": PG, "key": "app-password"}
    # the hook Jobs (migrations run before the app) get the same host
    for job in hook_jobs(objects):
        job_env = {e["name"]: e.get("value") for e in pod_spec(job)["containers"][0]["env"]}
        assert job_env["DATABASE_HOST"] == PG, job["metadata"]["name"]


# --- anti-affinity of Redis and Kafka ---------------------------------------------


@pytest.mark.parametrize("mode", ["hard", "soft"])
@pytest.mark.parametrize("architecture", ["replication", "sentinel"])
def test_redis_anti_affinity(architecture: str, mode: str) -> None:
    base = REPLICATION if architecture == "replication" else SENTINEL
    objects = render(values={**base, "redis.podAntiAffinity": mode})
    sets = [
        s for s in find(objects, "StatefulSet") if s["metadata"]["name"].startswith("saga-redis")
    ]
    assert len(sets) == (2 if architecture == "replication" else 1)
    for sts in sets:
        assert_spreads(sts, mode)


def test_redis_anti_affinity_is_soft_by_default() -> None:
    for sts in find(render(values=REPLICATION), "StatefulSet"):
        if sts["metadata"]["name"].startswith("saga-redis"):
            assert_spreads(sts, "soft")


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_kafka_anti_affinity(mode: str) -> None:
    objects = render(values={**KAFKA3, "kafka.podAntiAffinity": mode})
    assert_spreads(one(objects, "StatefulSet", "saga-kafka"), mode)


def test_kafka_anti_affinity_is_soft_by_default() -> None:
    assert_spreads(one(render(values=KAFKA3), "StatefulSet", "saga-kafka"), "soft")


def test_every_profile_names_the_postgres_image_tag_that_ci_builds() -> None:
    """ci/versions.sh is where the tag is pinned; the profiles that name the image follow it."""
    pinned = next(
        line.split("=", 1)[1].strip()
        for line in (REPO_ROOT / "ci" / "versions.sh").read_text().splitlines()
        if line.startswith("POSTGRES_IMAGE_TAG=")
    )
    for name in ("offline-images.yaml", "local-ha.yaml", "ha.yaml"):
        values = yaml.safe_load((VALUES / name).read_text())
        assert values["postgresql"]["image"]["tag"] == pinned, name
