"""The data layer in each architecture: bundled Redis (standalone, replication,
replication + Sentinel) and Kafka (1 or 3 nodes), and each external mode.

Every architecture renders to objects valid for every pinned Kubernetes
version, its pods stay restricted, and the app's connection settings (checked
with the app's own Settings) match the mode. The failover behaviour itself is
exercised on a cluster by the e2e tier.
"""

from __future__ import annotations

import functools
import subprocess
from typing import Any

import k8s_openapi
import pytest
from helm import REPO_ROOT, Manifest, find, hook_jobs, one, pod_spec, pod_templates, render
from saga_service.settings import Settings
from test_chart_policies import _check_restricted
from test_chart_render import EXTERNAL

REPLICATION = {"redis.architecture": "replication"}
SENTINEL = {**REPLICATION, "redis.sentinel.enabled": True}
KAFKA3 = {"kafka.replicaCount": 3, "topics.replicationFactor": 3, "topics.minInsyncReplicas": 2}
EXTERNAL_SENTINEL = {
    "redis.enabled": False,
    "externalRedis.mode": "sentinel",
    "externalRedis.sentinelNodes": ["s1.example.com:26379", "s2.example.com:26379"],
    "externalRedis.sentinelMasterSet": "locks",
    "externalRedis.password": "cache-secret",
    "externalRedis.sentinelPassword": "sentinel-secret",
    "externalRedis.tls": True,
}
EXTERNAL_KAFKA_SASL = {
    "kafka.enabled": False,
    "externalKafka.bootstrapServers": ["b1.example.com:9096", "b2.example.com:9096"],
    "externalKafka.securityProtocol": "SASL_SSL",
    "externalKafka.sasl.mechanism": "SCRAM-SHA-512",
    "externalKafka.sasl.username": "saga",
    "externalKafka.sasl.password": "kafka-secret",
}

ARCHITECTURES: dict[str, dict[str, Any]] = {
    "redis-standalone": {},
    "redis-standalone-persistent-aof": {
        "redis.persistence.enabled": True,
        "redis.persistence.aof": True,
    },
    "redis-replication": REPLICATION,
    "redis-replication-persistent": {**REPLICATION, "redis.persistence.enabled": True},
    "redis-sentinel": SENTINEL,
    "redis-sentinel-no-auth": {**SENTINEL, "redis.auth.enabled": False},
    "redis-sentinel-one-password": {**SENTINEL, "redis.auth.acl.enabled": False},
    "redis-sentinel-persistent-aof": {
        **SENTINEL,
        "redis.persistence.enabled": True,
        "redis.persistence.aof": True,
    },
    "kafka-1": {},
    "kafka-3": KAFKA3,
    "ha": {**SENTINEL, **KAFKA3},
    "external-all": EXTERNAL,
    "external-database-verify-full": {
        "postgresql.enabled": False,
        "externalDatabase.host": "db.example.com",
        "externalDatabase.existingSecret": "db-credentials",
        "externalDatabase.sslmode": "verify-full",
    },
    "external-redis-tls": {
        "redis.enabled": False,
        "externalRedis.host": "cache.example.com",
        "externalRedis.port": 6380,
        "externalRedis.tls": True,
        "externalRedis.existingSecret": "cache-credentials",
    },
    "external-redis-sentinel": EXTERNAL_SENTINEL,
    "external-redis-sentinel-existing-secret": {
        **{k: v for k, v in EXTERNAL_SENTINEL.items() if "assword" not in k},
        "externalRedis.existingSecret": "cache-credentials",
    },
    "external-kafka-ssl": {
        "kafka.enabled": False,
        "externalKafka.bootstrapServers": ["b1.example.com:9094"],
        "externalKafka.securityProtocol": "SSL",
    },
    "external-kafka-sasl-ssl": EXTERNAL_KAFKA_SASL,
    "external-everything-existing-secret": {
        **EXTERNAL,
        **EXTERNAL_SENTINEL,
        **EXTERNAL_KAFKA_SASL,
        "existingSecret": "saga-credentials",
    },
}


@functools.cache
def rendered(name: str) -> tuple[Manifest, ...]:
    return tuple(render(values=ARCHITECTURES[name]))


def app_config(objects: tuple[Manifest, ...]) -> dict[str, str]:
    data: dict[str, str] = one(objects, "ConfigMap", "saga-saga-stack")["data"]
    return data


def app_secret_env(objects: tuple[Manifest, ...]) -> dict[str, dict[str, Any]]:
    container = pod_spec(one(objects, "Deployment", "saga-saga-stack"))["containers"][0]
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def redis_scripts(objects: tuple[Manifest, ...]) -> dict[str, str]:
    data: dict[str, str] = one(objects, "ConfigMap", "saga-redis")["data"]
    return data


# --- every architecture: valid objects, restricted pods ---------------------


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_architecture_renders_valid_objects(name: str, k8s_schemas: list[str]) -> None:
    assert k8s_openapi.schema_errors(rendered(name), k8s_schemas) == []


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_architecture_pods_are_restricted_with_a_read_only_root(name: str) -> None:
    problems: list[str] = []
    for obj in pod_templates(rendered(name)):
        owner = f"{obj['kind']}/{obj['metadata']['name']}"
        problems += _check_restricted(owner, pod_spec(obj))
        if obj["metadata"]["name"].startswith("saga-redis"):
            spec = pod_spec(obj)
            assert spec["securityContext"]["runAsUser"] >= 10000, owner
            for container in spec["containers"]:
                where = f"{owner}/{container['name']}"
                assert container["securityContext"]["readOnlyRootFilesystem"] is True, where
                assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
                mounts = {m["mountPath"] for m in container["volumeMounts"]}
                assert "/tmp" in mounts, where
                if container["name"] == "redis":
                    assert "/data" in mounts, where
    assert problems == []


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_app_settings_load_with_the_rendered_environment(name: str) -> None:
    """The app's own Settings accept what the chart gives it (secrets stand in as 'x')."""
    objects = rendered(name)
    env: dict[str, Any] = {k.lower(): v for k, v in app_config(objects).items()}
    env.update({k.lower(): "x" for k in app_secret_env(objects)})
    settings = Settings(**env)
    if settings.redis_mode == "sentinel":
        assert settings.sentinel_nodes()


# --- Redis ------------------------------------------------------------------


def _statefulsets(objects: tuple[Manifest, ...]) -> dict[str, Manifest]:
    return {
        o["metadata"]["name"]: o
        for o in find(objects, "StatefulSet")
        if "redis" in o["metadata"]["name"]
    }


def test_redis_standalone_is_one_master_behind_its_service() -> None:
    objects = rendered("redis-standalone")
    sets = _statefulsets(objects)
    assert set(sets) == {"saga-redis-master"}
    assert sets["saga-redis-master"]["spec"]["replicas"] == 1
    assert one(objects, "Service", "saga-redis-master")["spec"]["ports"][0]["port"] == 6379
    assert not find(objects, "Service", "saga-redis")
    assert not [p for p in find(objects, "PodDisruptionBudget") if "redis" in p["metadata"]["name"]]
    config = app_config(objects)
    assert config["REDIS_MODE"] == "standalone"
    assert config["REDIS_HOST"] == "saga-redis-master"
    assert "REDIS_SENTINEL_PASSWORD" not in app_secret_env(objects)


def test_redis_replication_is_a_master_and_replicas_of_it() -> None:
    objects = rendered("redis-replication")
    sets = _statefulsets(objects)
    assert set(sets) == {"saga-redis-master", "saga-redis-replicas"}
    assert sets["saga-redis-master"]["spec"]["replicas"] == 1
    assert sets["saga-redis-replicas"]["spec"]["replicas"] == 2
    for name, role in (("saga-redis-master", "master"), ("saga-redis-replicas", "replica")):
        container = pod_spec(sets[name])["containers"][0]
        assert container["command"] == ["sh", "/etc/redis/start-redis.sh", role]
        assert [c["name"] for c in pod_spec(sets[name])["containers"]] == ["redis"]
        assert sets[name]["spec"]["serviceName"] == "saga-redis-hl"
    script = redis_scripts(objects)["start-redis.sh"]
    master0 = "saga-redis-master-0.saga-redis-hl.shop.svc.cluster.local"
    assert master0 in script and "--replicaof" in script
    # replicas follow the master as the replication user, not as the administrator
    assert 'echo "masteruser replication"' in script
    assert 'echo "masterauth $REDIS_REPLICATION_PASSWORD"' in script
    assert "--replica-announce-ip" in script
    # clients still use the master's Service; replicas select apart from it
    service = one(objects, "Service", "saga-redis-master")
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "master"
    replica_labels = sets["saga-redis-replicas"]["spec"]["template"]["metadata"]["labels"]
    assert replica_labels["app.kubernetes.io/component"] == "replica"
    pdb = one(objects, "PodDisruptionBudget", "saga-redis")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert app_config(objects)["REDIS_MODE"] == "standalone"


def test_redis_replica_count_is_configurable() -> None:
    objects = render(values={**REPLICATION, "redis.replica.replicaCount": 4})
    assert one(objects, "StatefulSet", "saga-redis-replicas")["spec"]["replicas"] == 4
    objects = render(values={**SENTINEL, "redis.replica.replicaCount": 4})
    assert one(objects, "StatefulSet", "saga-redis-node")["spec"]["replicas"] == 5


def test_redis_sentinel_runs_beside_every_node() -> None:
    objects = rendered("redis-sentinel")
    sets = _statefulsets(objects)
    assert set(sets) == {"saga-redis-node"}
    node = sets["saga-redis-node"]
    assert node["spec"]["replicas"] == 3
    spec = pod_spec(node)
    containers = {c["name"]: c for c in spec["containers"]}
    assert set(containers) == {"redis", "sentinel"}
    assert containers["redis"]["command"] == ["sh", "/etc/redis/start-redis.sh", "node"]
    assert containers["sentinel"]["command"] == ["sh", "/etc/redis/start-sentinel.sh"]
    assert containers["sentinel"]["ports"] == [{"name": "sentinel", "containerPort": 26379}]
    # a master hands over before its pod stops
    prestop = containers["redis"]["lifecycle"]["preStop"]["exec"]["command"]
    assert prestop == ["sh", "/etc/redis/prestop-redis.sh"]
    # Sentinel rewrites its config: it lives in an emptyDir, copied from the ConfigMap
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in containers["sentinel"]["volumeMounts"]}
    assert "emptyDir" in volumes["sentinel-config"]
    assert mounts["sentinel-config"] == "/etc/redis-sentinel"
    scripts = redis_scripts(objects)
    assert "conf=/etc/redis-sentinel/sentinel.conf" in scripts["start-sentinel.sh"]
    assert 'cp /etc/redis/sentinel.conf "$conf"' in scripts["start-sentinel.sh"]
    assert "sentinel announce-hostnames yes" in scripts["sentinel.conf"]
    assert "sentinel resolve-hostnames yes" in scripts["sentinel.conf"]
    assert "sentinel monitor mymaster $master 6379 2" in scripts["start-sentinel.sh"]
    assert "sentinel announce-ip $me" in scripts["start-sentinel.sh"]
    # Sentinel starts once the master answers (bounded), not on links the network refused
    sentinel_start = scripts["start-sentinel.sh"]
    wait = sentinel_start.index('timeout 1 redis-cli -h "$master" -p 6379 ping')
    assert '[ "$waited" -lt 20 ]' in sentinel_start
    assert wait < sentinel_start.index('exec redis-sentinel "$conf"')
    # and is restarted when it spins on such a link (over half its CPU limit between probes)
    liveness = containers["sentinel"]["livenessProbe"]["exec"]["command"]
    assert liveness == ["sh", "/etc/redis/sentinel-alive.sh"]
    alive = scripts["sentinel-alive.sh"]
    assert '[ "$(redis-cli -p 26379 ping)" = PONG ] || exit 1' in alive
    assert "limit=$((quota * 500 / period))" in alive
    # the node finds the current master through the Sentinels; node 0 only for a new cluster
    start = scripts["start-redis.sh"]
    assert 'master="$(current_master)"' in start
    assert 'master="${master:-$first}"' in start
    assert "saga-redis-node-0.saga-redis-hl.shop.svc.cluster.local" in scripts["sentinel-lib.sh"]
    # no fixed master Service: clients ask the Sentinels
    assert not find(objects, "Service", "saga-redis-master")
    sentinel_service = one(objects, "Service", "saga-redis")
    assert sentinel_service["spec"]["ports"] == [
        {"name": "sentinel", "port": 26379, "targetPort": "sentinel"}
    ]
    headless = one(objects, "Service", "saga-redis-hl")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert {p["port"] for p in headless["spec"]["ports"]} == {6379, 26379}
    assert one(objects, "PodDisruptionBudget", "saga-redis")["spec"]["maxUnavailable"] == 1


def test_redis_sentinel_gives_the_app_sentinel_mode() -> None:
    objects = rendered("redis-sentinel")
    config = app_config(objects)
    assert config["REDIS_MODE"] == "sentinel"
    assert config["REDIS_SENTINEL_NODES"] == "saga-redis:26379"
    assert config["REDIS_SENTINEL_MASTER"] == "mymaster"
    assert "REDIS_HOST" not in config
    assert config["REDIS_USERNAME"] == config["REDIS_SENTINEL_USERNAME"] == "saga"
    secrets = app_secret_env(objects)
    app_password = {"name": "saga-redis", "key": "client-password", "optional": True}
    assert secrets["REDIS_PASSWORD"] == secrets["REDIS_SENTINEL_PASSWORD"] == app_password
    # the hook Jobs get the same settings
    for job in hook_jobs(objects):
        env = {e["name"]: e for e in pod_spec(job)["containers"][0]["env"]}
        assert env["REDIS_MODE"]["value"] == "sentinel"
        assert "REDIS_SENTINEL_PASSWORD" in env


def test_redis_sentinel_master_set_and_port_reach_the_app() -> None:
    objects = render(
        values={**SENTINEL, "redis.sentinel.masterSet": "locks", "redis.sentinel.port": 26380}
    )
    config = app_config(objects)
    assert config["REDIS_SENTINEL_NODES"] == "saga-redis:26380"
    assert config["REDIS_SENTINEL_MASTER"] == "locks"
    assert "sentinel monitor locks" in redis_scripts(objects)["start-sentinel.sh"]


def test_redis_sentinel_with_one_password_gives_the_app_that_password() -> None:
    objects = rendered("redis-sentinel-one-password")
    secrets = app_secret_env(objects)
    assert secrets["REDIS_PASSWORD"] == {"name": "saga-redis", "key": "password"}
    assert secrets["REDIS_SENTINEL_PASSWORD"] == {"name": "saga-redis", "key": "password"}
    assert not {"REDIS_USERNAME", "REDIS_SENTINEL_USERNAME"} & set(app_config(objects))
    scripts = redis_scripts(objects)
    assert (
        '--requirepass "$REDISCLI_AUTH" --masterauth "$REDISCLI_AUTH"' in scripts["start-redis.sh"]
    )
    assert "user " not in scripts["start-redis.sh"] + scripts["start-sentinel.sh"]
    assert set(one(objects, "Secret", "saga-redis")["data"]) == {"password"}


def test_redis_sentinel_without_auth_asks_for_no_password() -> None:
    objects = rendered("redis-sentinel-no-auth")
    assert not {"REDIS_PASSWORD", "REDIS_SENTINEL_PASSWORD"} & set(app_secret_env(objects))
    assert "requirepass" not in redis_scripts(objects)["start-sentinel.sh"]
    assert not find(objects, "Secret", "saga-redis")


@pytest.mark.parametrize(
    "name",
    ["redis-standalone", "redis-replication", "redis-sentinel", "redis-sentinel-one-password"],
)
def test_redis_scripts_are_valid_sh(name: str) -> None:
    for key, text in redis_scripts(rendered(name)).items():
        if key.endswith(".sh"):
            proc = subprocess.run(["sh", "-n"], input=text, capture_output=True, text=True)
            assert proc.returncode == 0, f"{key}: {proc.stderr}"


@pytest.mark.parametrize(
    "name", ["redis-standalone-persistent-aof", "redis-sentinel-persistent-aof"]
)
def test_redis_persistence_claims_and_aof(name: str) -> None:
    objects = rendered(name)
    assert "appendonly yes" in redis_scripts(objects)["redis.conf"]
    for sts in _statefulsets(objects).values():
        assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
        assert "data" not in {v["name"] for v in pod_spec(sts)["volumes"]}


def test_redis_replicated_pods_prefer_different_nodes() -> None:
    for name in ("redis-replication", "redis-sentinel"):
        for sts in _statefulsets(rendered(name)).values():
            anti = pod_spec(sts)["affinity"]["podAntiAffinity"]
            term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
            assert term["topologyKey"] == "kubernetes.io/hostname"


def _ports(rule: dict[str, Any]) -> set[int]:
    return {p["port"] for p in rule["ports"]}


@pytest.mark.parametrize(
    ("name", "ports"), [("redis-replication", {6379}), ("redis-sentinel", {6379, 26379})]
)
def test_redis_network_policy_admits_clients_and_peers_and_lets_peers_talk(
    name: str, ports: set[int]
) -> None:
    objects = rendered(name)
    policy = one(objects, "NetworkPolicy", "saga-redis")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    redis_pods = {"app.kubernetes.io/name": "redis", "app.kubernetes.io/instance": "saga"}
    assert policy["podSelector"]["matchLabels"] == redis_pods
    (ingress,) = policy["ingress"]
    peers = [p["podSelector"]["matchLabels"] for p in ingress["from"]]
    assert {"saga-stack.io/redis-client": "true"} in peers and redis_pods in peers
    assert _ports(ingress) == ports
    egress_to_peers = [r for r in policy["egress"] if r["to"][0].get("podSelector")]
    assert egress_to_peers[0]["to"][0]["podSelector"]["matchLabels"] == redis_pods
    assert _ports(egress_to_peers[0]) == ports
    dns = [r for r in policy["egress"] if "namespaceSelector" in r["to"][0]]
    assert _ports(dns[0]) == {53}
    # the app may reach the Sentinels only when there are some
    app_egress = one(objects, "NetworkPolicy", "saga-saga-stack-app")["spec"]["egress"]
    app_ports = set().union(*(_ports(r) for r in app_egress))
    assert (26379 in app_ports) == (26379 in ports)


# --- Kafka ------------------------------------------------------------------


def _kafka_env(objects: tuple[Manifest, ...]) -> dict[str, str]:
    container = pod_spec(one(objects, "StatefulSet", "saga-kafka"))["containers"][0]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_kafka_single_node() -> None:
    objects = rendered("kafka-1")
    assert one(objects, "StatefulSet", "saga-kafka")["spec"]["replicas"] == 1
    env = _kafka_env(objects)
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].count("@") == 1
    assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "1"
    assert not find(objects, "PodDisruptionBudget", "saga-kafka")


def test_kafka_three_nodes_replicate_three_ways_with_two_in_sync() -> None:
    objects = rendered("kafka-3")
    sts = one(objects, "StatefulSet", "saga-kafka")
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    env = _kafka_env(objects)
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert [v.split("@")[0] for v in voters] == ["0", "1", "2"]
    assert voters[2].startswith("2@saga-kafka-2.saga-kafka-hl.shop.svc.cluster.local:")
    for key in (
        "KAFKA_DEFAULT_REPLICATION_FACTOR",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
    ):
        assert env[key] == "3", key
    assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
    pdb = one(objects, "PodDisruptionBudget", "saga-kafka")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == (sts["spec"]["selector"]["matchLabels"])
    # the app's topics follow topics.*
    config = app_config(objects)
    assert config["KAFKA_TOPIC_REPLICATION_FACTOR"] == "3"
    assert config["KAFKA_TOPIC_MIN_INSYNC_REPLICAS"] == "2"
    assert config["KAFKA_BOOTSTRAP_SERVERS"] == "saga-kafka:9092"


def test_kafka_pdb_can_be_switched_off() -> None:
    objects = render(values={**KAFKA3, "kafka.pdb.enabled": False})
    assert not find(objects, "PodDisruptionBudget", "saga-kafka")


# --- the ha profile -----------------------------------------------------------


def test_ha_profile_replicates_the_data_layer() -> None:
    objects = render([REPO_ROOT / "values" / "ha.yaml"])
    assert one(objects, "StatefulSet", "saga-redis-node")["spec"]["replicas"] == 3
    assert one(objects, "StatefulSet", "saga-kafka")["spec"]["replicas"] == 3
    config = app_config(objects)
    assert config["REDIS_MODE"] == "sentinel"
    assert config["KAFKA_TOPIC_REPLICATION_FACTOR"] == "3"
    assert config["KAFKA_TOPIC_MIN_INSYNC_REPLICAS"] == "2"
    pdbs = {p["metadata"]["name"] for p in find(objects, "PodDisruptionBudget")}
    assert pdbs >= {"saga-redis", "saga-kafka"}


# --- external modes -----------------------------------------------------------


def test_external_everything_has_no_data_layer_objects() -> None:
    objects = rendered("external-all")
    names = {o["metadata"]["name"] for o in objects}
    assert not {n for n in names if n.startswith(("saga-redis", "saga-kafka", "saga-postgresql"))}
    config = app_config(objects)
    assert config["DATABASE_HOST"] == "db.example.com"
    assert config["REDIS_HOST"] == "cache.example.com"
    assert config["KAFKA_BOOTSTRAP_SERVERS"] == "k1.example.com:9092,k2.example.com:9092"
    secrets = app_secret_env(objects)
    assert secrets["DATABASE_PASSWORD"] == {"name": "saga-saga-stack", "key": "database-password"}
    assert secrets["REDIS_PASSWORD"] == {"name": "saga-saga-stack", "key": "redis-password"}


def test_external_database_sslmode_and_existing_secret() -> None:
    objects = rendered("external-database-verify-full")
    assert app_config(objects)["DATABASE_SSLMODE"] == "verify-full"
    assert app_secret_env(objects)["DATABASE_PASSWORD"] == {
        "name": "db-credentials",
        "key": "password",
    }


def test_external_redis_tls() -> None:
    objects = rendered("external-redis-tls")
    config = app_config(objects)
    assert (config["REDIS_MODE"], config["REDIS_HOST"], config["REDIS_PORT"]) == (
        "standalone",
        "cache.example.com",
        "6380",
    )
    assert config["REDIS_TLS"] == "true"
    assert app_secret_env(objects)["REDIS_PASSWORD"] == {
        "name": "cache-credentials",
        "key": "password",
    }


def test_external_redis_sentinel_with_passwords() -> None:
    objects = rendered("external-redis-sentinel")
    config = app_config(objects)
    assert config["REDIS_MODE"] == "sentinel"
    assert config["REDIS_SENTINEL_NODES"] == "s1.example.com:26379,s2.example.com:26379"
    assert config["REDIS_SENTINEL_MASTER"] == "locks"
    assert config["REDIS_TLS"] == "true"
    secrets = app_secret_env(objects)
    assert secrets["REDIS_SENTINEL_PASSWORD"] == {
        "name": "saga-saga-stack",
        "key": "redis-sentinel-password",
    }
    secret = one(objects, "Secret", "saga-saga-stack")
    assert set(secret["data"]) >= {"redis-password", "redis-sentinel-password"}
    # the app may reach the Sentinels' and Redis's ports outside the cluster when allowed
    allowed = render(values={**EXTERNAL_SENTINEL, "networkPolicy.allowExternalEgress": True})
    egress = one(allowed, "NetworkPolicy", "saga-saga-stack-app")["spec"]["egress"]
    external = [r for r in egress if "ipBlock" in r["to"][0]]
    assert {26379, 6379} <= _ports(external[0])


def test_external_redis_sentinel_password_from_secrets_you_own_is_optional() -> None:
    own = app_secret_env(rendered("external-redis-sentinel-existing-secret"))
    assert own["REDIS_SENTINEL_PASSWORD"] == {
        "name": "cache-credentials",
        "key": "sentinel-password",
        "optional": True,
    }
    umbrella = app_secret_env(rendered("external-everything-existing-secret"))
    assert umbrella["REDIS_SENTINEL_PASSWORD"] == {
        "name": "saga-credentials",
        "key": "redis-sentinel-password",
        "optional": True,
    }
    # without any sentinel password nothing is asked for
    bare = {k: v for k, v in EXTERNAL_SENTINEL.items() if k != "externalRedis.sentinelPassword"}
    assert "REDIS_SENTINEL_PASSWORD" not in app_secret_env(tuple(render(values=bare)))


@pytest.mark.parametrize(
    ("name", "protocol", "sasl"),
    [("external-kafka-ssl", "SSL", False), ("external-kafka-sasl-ssl", "SASL_SSL", True)],
)
def test_external_kafka_security(name: str, protocol: str, sasl: bool) -> None:
    objects = rendered(name)
    config = app_config(objects)
    assert config["KAFKA_SECURITY_PROTOCOL"] == protocol
    assert ("KAFKA_SASL_MECHANISM" in config) == sasl
    assert ("KAFKA_SASL_PASSWORD" in app_secret_env(objects)) == sasl
    if sasl:
        assert config["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert config["KAFKA_SASL_USERNAME"] == "saga"


def test_existing_secret_covers_every_external_credential() -> None:
    objects = rendered("external-everything-existing-secret")
    secrets = app_secret_env(objects)
    assert {s["name"] for s in secrets.values()} == {"saga-credentials"}
    assert {s["key"] for s in secrets.values()} == {
        "database-password",
        "redis-password",
        "redis-sentinel-password",
        "kafka-sasl-password",
    }
    assert not find(objects, "Secret")


CA_BUNDLE = {
    "postgresql.enabled": False,
    "externalDatabase.host": "db.example.com",
    "externalDatabase.password": "x",
    "externalDatabase.sslmode": "verify-full",
    "redis.enabled": False,
    "externalRedis.host": "cache.example.com",
    "externalRedis.tls": True,
    "externalRedis.username": "saga",
    **EXTERNAL_KAFKA_SASL,
    "caBundle.existingConfigMap": "provider-ca",
    "caBundle.key": "bundle.pem",
}


@pytest.mark.parametrize(
    ("source", "volume"),
    [
        ({"caBundle.existingConfigMap": "provider-ca"}, {"configMap": {"name": "provider-ca"}}),
        (
            {"caBundle.existingConfigMap": "", "caBundle.existingSecret": "provider-ca"},
            {"secret": {"secretName": "provider-ca"}},
        ),
    ],
    ids=["configmap", "secret"],
)
def test_a_ca_bundle_is_mounted_where_every_tls_setting_points(
    source: dict[str, Any], volume: dict[str, Any], tmp_path: Any
) -> None:
    objects = tuple(render(values={**CA_BUNDLE, **source}))
    path = "/etc/saga-stack/ca/bundle.pem"
    config = app_config(objects)
    assert config["REDIS_USERNAME"] == "saga"
    assert {k: v for k, v in config.items() if v == path} == {
        "DATABASE_SSLROOTCERT": path,
        "REDIS_TLS_CA_FILE": path,
        "KAFKA_SSL_CA_FILE": path,
    }
    # The Deployment and both hook Jobs connect, so each mounts the bundle and gets the
    # settings (the Jobs inline them: a pre-install hook runs before the ConfigMap exists).
    workloads = [one(objects, "Deployment", "saga-saga-stack"), *find(objects, "Job")]
    assert len(workloads) == 3
    for workload in workloads:
        spec = pod_spec(workload)
        (ca,) = [v for v in spec["volumes"] if v["name"] == "ca-bundle"]
        kind = next(iter(volume))
        assert {k: v for k, v in ca[kind].items() if k != "items"} == volume[kind]
        assert ca[kind]["items"] == [{"key": "bundle.pem", "path": "bundle.pem"}]
        container = spec["containers"][0]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "ca-bundle")
        assert mount == {"name": "ca-bundle", "mountPath": "/etc/saga-stack/ca", "readOnly": True}
        if workload["kind"] == "Job":
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert env["DATABASE_SSLROOTCERT"] == env["KAFKA_SSL_CA_FILE"] == path
    # The app's own Settings accept it, once the file is there.
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("x\n")
    env_values: dict[str, Any] = {
        k.lower(): (str(bundle) if v == path else v) for k, v in config.items()
    }
    env_values.update({k.lower(): "x" for k in app_secret_env(objects)})
    Settings(**env_values)


def test_a_ca_bundle_is_given_only_to_the_dependencies_that_use_tls() -> None:
    plain = {
        **CA_BUNDLE,
        "externalDatabase.sslmode": "prefer",
        "externalRedis.tls": False,
        "externalKafka.securityProtocol": "SASL_PLAINTEXT",
    }
    config = app_config(tuple(render(values=plain)))
    assert not {"DATABASE_SSLROOTCERT", "REDIS_TLS_CA_FILE", "KAFKA_SSL_CA_FILE"} & set(config)
    bare = app_config(rendered("external-all"))
    assert not {"DATABASE_SSLROOTCERT", "REDIS_TLS_CA_FILE", "KAFKA_SSL_CA_FILE"} & set(bare)
    assert "REDIS_USERNAME" not in bare


def test_the_production_profile_verifies_every_service_against_its_ca_bundle() -> None:
    objects = tuple(render([REPO_ROOT / "values" / "production.yaml"]))
    config = app_config(objects)
    path = "/etc/saga-stack/ca/ca.crt"
    assert config["DATABASE_SSLMODE"] == "verify-full"
    assert config["DATABASE_SSLROOTCERT"] == path
    assert (config["REDIS_TLS"], config["REDIS_TLS_CA_FILE"]) == ("true", path)
    assert (config["KAFKA_SECURITY_PROTOCOL"], config["KAFKA_SSL_CA_FILE"]) == ("SASL_SSL", path)
    volumes = pod_spec(one(objects, "Deployment", "saga-saga-stack"))["volumes"]
    assert {
        "name": "ca-bundle",
        "configMap": {"name": "saga-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]},
    } in volumes


def test_the_production_profile_bundles_no_data_layer_and_speaks_no_plaintext() -> None:
    objects = tuple(render([REPO_ROOT / "values" / "production.yaml"]))
    bundled = {
        f"{o['kind']}/{o['metadata']['name']}"
        for o in objects
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/name")
        in ("postgresql", "redis", "kafka")
    }
    assert not bundled, f"the production profile renders bundled services: {bundled}"
    config = app_config(objects)
    assert config["DATABASE_SSLMODE"] == "verify-full"
    assert config["REDIS_TLS"] == "true"
    assert config["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    # The app's egress: DNS and the three services' ports, nothing else.
    policy = one(objects, "NetworkPolicy", "saga-saga-stack-app")
    ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}
    assert ports == {53, 5432, 6380, 9096}
