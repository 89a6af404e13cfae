"""Policies every rendering must keep: labels, secrets, pod security, replicas, rollouts."""

from __future__ import annotations

import base64
import functools
import re
from typing import Any

import pytest
import yaml
from helm import (
    CHART,
    PROFILES,
    RELEASE,
    REPO_ROOT,
    Manifest,
    find,
    helm,
    one,
    pod_spec,
    pod_template,
    pod_templates,
    render,
)
from test_chart_render import EXTERNAL

RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
)

# Every object we own, in each data-layer mode and with every optional object on.
EVERYTHING_ON = {
    "autoscaling.enabled": True,
    "pdb.enabled": True,
    "ingress.enabled": True,
    "httpRoute.enabled": True,
    "httpRoute.parentRefs": [{"name": "public"}],
    "postgresql.initdbScripts": {"extensions.sql": "CREATE EXTENSION IF NOT EXISTS pgcrypto;"},
}
RENDERINGS = {
    "bundled": EVERYTHING_ON,
    "external": {**EVERYTHING_ON, **EXTERNAL},
    "external-sasl": {
        **EVERYTHING_ON,
        **EXTERNAL,
        "externalKafka.securityProtocol": "SASL_SSL",
        "externalKafka.sasl.mechanism": "SCRAM-SHA-512",
        "externalKafka.sasl.username": "saga",
        "externalKafka.sasl.password": "kafka-secret",
    },
    # the replicated data layer of values/ha.yaml: Redis with Sentinel, 3 Kafka nodes
    "ha": {
        **EVERYTHING_ON,
        "redis.architecture": "replication",
        "redis.sentinel.enabled": True,
        "kafka.replicaCount": 3,
        "topics.replicationFactor": 3,
        "topics.minInsyncReplicas": 2,
    },
    "redis-replication": {**EVERYTHING_ON, "redis.architecture": "replication"},
    # background jobs: the worker Deployment and the reconcile CronJob's pods
    "jobs": {
        **EVERYTHING_ON,
        "jobs.enabled": True,
        "jobs.autoscaling.enabled": True,
        "jobs.pdb.enabled": True,
    },
    "jobs-external": {**EVERYTHING_ON, **EXTERNAL, "jobs.enabled": True},
    # the console and its optional objects (a second Deployment, so not in EVERYTHING_ON)
    "console": {
        **EVERYTHING_ON,
        "console.enabled": True,
        "console.ingress.enabled": True,
        "console.ingress.hosts": [
            {"host": "console.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}
        ],
        "console.httpRoute.enabled": True,
        "console.httpRoute.parentRefs": [{"name": "public"}],
    },
}


@functools.cache
def rendered(name: str) -> tuple[Manifest, ...]:
    return tuple(render(values=RENDERINGS[name]))


def all_renderings() -> list[str]:
    return list(RENDERINGS)


@pytest.mark.parametrize("name", all_renderings())
def test_every_object_carries_the_recommended_labels(name: str) -> None:
    for obj in rendered(name):
        labels = obj["metadata"].get("labels", {})
        missing = [k for k in RECOMMENDED_LABELS if k not in labels]
        assert not missing, f"{obj['kind']}/{obj['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/instance"] == RELEASE


@pytest.mark.parametrize("name", all_renderings())
def test_pod_templates_carry_the_recommended_labels(name: str) -> None:
    for obj in pod_templates(rendered(name)):
        labels = pod_template(obj)["metadata"]["labels"]
        missing = [k for k in RECOMMENDED_LABELS if k not in labels]
        assert not missing, f"pods of {obj['kind']}/{obj['metadata']['name']} lack {missing}"


def _secret_values(objects: tuple[Manifest, ...]) -> set[str]:
    values: set[str] = set()
    for secret in find(objects, "Secret"):
        for encoded in (secret.get("data") or {}).values():
            values.add(base64.b64decode(encoded).decode())
        values.update((secret.get("stringData") or {}).values())
    return values


@pytest.mark.parametrize("name", all_renderings())
def test_no_secret_value_in_a_configmap_or_plain_env(name: str) -> None:
    objects = rendered(name)
    secrets = _secret_values(objects)
    assert secrets, "the rendering should hold at least one secret to check"
    for cm in find(objects, "ConfigMap"):
        for key, value in (cm.get("data") or {}).items():
            for secret in secrets:
                assert secret not in str(value), (
                    f"ConfigMap {cm['metadata']['name']} key {key} holds a secret"
                )
    for obj in pod_templates(objects):
        for container in pod_spec(obj)["containers"] + pod_spec(obj).get("initContainers", []):
            for env in container.get("env", []):
                if "value" in env:
                    assert env["value"] not in secrets, (
                        f"{obj['metadata']['name']} env {env['name']} is a secret"
                    )
                    assert not re.search(r"PASSWORD|TOKEN|SECRET", env["name"]), (
                        f"{obj['metadata']['name']} sets {env['name']} as a plain value"
                    )


def _check_restricted(owner: str, spec: dict[str, Any]) -> list[str]:
    """The Pod Security Standard "restricted" (v1.30+), as the admission plugin checks it."""
    problems = []
    pod_sc = spec.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            problems.append(f"{owner}: {key}")
    for volume in spec.get("volumes", []):
        allowed = {
            "configMap",
            "csi",
            "downwardAPI",
            "emptyDir",
            "ephemeral",
            "persistentVolumeClaim",
            "projected",
            "secret",
        }
        kinds = set(volume) - {"name"}
        if not kinds <= allowed:
            problems.append(f"{owner}: volume {volume['name']} of type {kinds - allowed}")
    for container in spec["containers"] + spec.get("initContainers", []):
        sc = container.get("securityContext", {})
        where = f"{owner}/{container['name']}"
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        if sc.get("privileged"):
            problems.append(f"{where}: privileged")
        if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            problems.append(f"{where}: runAsNonRoot")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append(f"{where}: runAsUser 0")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{where}: seccompProfile {seccomp}")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            problems.append(f"{where}: capabilities must drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{where}: adds capabilities {caps['add']}")
        if "ports" in container and any(p.get("hostPort") for p in container["ports"]):
            problems.append(f"{where}: hostPort")
    return problems


@pytest.mark.parametrize("name", all_renderings())
def test_every_pod_we_own_is_restricted(name: str) -> None:
    problems: list[str] = []
    for obj in pod_templates(rendered(name)):
        problems += _check_restricted(f"{obj['kind']}/{obj['metadata']['name']}", pod_spec(obj))
    assert problems == []


@pytest.mark.parametrize("name", all_renderings())
def test_pods_have_resources_and_a_read_only_root(name: str) -> None:
    # Kafka's official image writes its generated config under /opt/kafka: documented exception.
    writable_root_allowed = {"saga-kafka"}
    for obj in pod_templates(rendered(name)):
        for container in pod_spec(obj)["containers"]:
            where = f"{obj['metadata']['name']}/{container['name']}"
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), f"{where}: requests"
            assert "memory" in resources.get("limits", {}), f"{where}: memory limit"
            if obj["metadata"]["name"] not in writable_root_allowed:
                assert container["securityContext"]["readOnlyRootFilesystem"] is True, where


def test_app_pods_have_probes_spread_and_graceful_shutdown() -> None:
    deployment = one(rendered("bundled"), "Deployment")
    spec = pod_spec(deployment)
    app = spec["containers"][0]
    assert app["startupProbe"]["httpGet"]["path"] == "/healthz/live"
    assert app["livenessProbe"]["httpGet"]["path"] == "/healthz/live"
    assert app["readinessProbe"]["httpGet"]["path"] == "/healthz/ready"
    assert app["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    env = {e["name"]: e for e in app["env"]}
    assert "secretKeyRef" in env["DATABASE_PASSWORD"]["valueFrom"]
    grace = spec["terminationGracePeriodSeconds"]
    assert grace > app["lifecycle"]["preStop"]["sleep"]["seconds"]
    keys = {c["topologyKey"] for c in spec["topologySpreadConstraints"]}
    assert "kubernetes.io/hostname" in keys
    assert {"name": "tmp", "mountPath": "/tmp"} in app["volumeMounts"]


def test_replicas_five_without_autoscaling_sets_the_deployment() -> None:
    objects = render(values={"replicas": 5})
    assert one(objects, "Deployment", "saga-saga-stack")["spec"]["replicas"] == 5
    assert not find(objects, "HorizontalPodAutoscaler")


def test_replicas_five_with_autoscaling_is_the_hpa_floor_and_the_deployment_leaves_it() -> None:
    objects = render(values={"replicas": 5, "autoscaling.enabled": True})
    assert "replicas" not in one(objects, "Deployment", "saga-saga-stack")["spec"]
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] == 5
    assert hpa["spec"]["maxReplicas"] >= 5


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_profiles_with_replicas_five(profile: Any) -> None:
    objects = render([profile], {"replicas": 5})
    hpa = find(objects, "HorizontalPodAutoscaler")
    if hpa:
        assert hpa[0]["spec"]["minReplicas"] == 5
    else:
        assert one(objects, "Deployment", "saga-saga-stack")["spec"]["replicas"] == 5


def _pod_annotations(values: dict[str, Any]) -> dict[str, str]:
    annotations: dict[str, str] = one(render(values=values), "Deployment")["spec"]["template"][
        "metadata"
    ]["annotations"]
    return annotations


def test_config_change_rolls_pods_but_scaling_does_not() -> None:
    base = _pod_annotations({})
    assert (
        _pod_annotations({"config.sagaLeaseSeconds": 45})["checksum/config"]
        != base["checksum/config"]
    )
    assert _pod_annotations({"replicas": 7}) == base
    # reloaded from the runtime ConfigMap (test_chart_restarts.py has the whole table)
    assert _pod_annotations({"config.logLevel": "DEBUG"}) == base


def test_external_password_change_rolls_pods() -> None:
    first = _pod_annotations({**EXTERNAL})
    second = _pod_annotations({**EXTERNAL, "externalDatabase.password": "rotated"})
    assert first["checksum/secret"] != second["checksum/secret"]


def test_hook_jobs_run_after_install_and_before_upgrade_with_the_app_config() -> None:
    objects = rendered("bundled")
    jobs = {j["metadata"]["name"]: j for j in find(objects, "Job")}
    # The Kafka access Job is no hook (test_chart_kafka_auth.py says why).
    jobs.pop("saga-saga-stack-kafka-access-r1")
    assert set(jobs) == {"saga-saga-stack-migrate", "saga-saga-stack-topics"}
    config = one(objects, "ConfigMap", "saga-saga-stack")["data"]
    for job in jobs.values():
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"
        container = pod_spec(job)["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        # hooks render the config inline: pre-upgrade runs before this revision's ConfigMap exists
        assert {k: env[k] for k in config} == config
        labels = job["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] != "app", (
            "job pods must not match the app Service"
        )
    assert [pod_spec(j)["containers"][0]["args"] for j in jobs.values()] == [
        ["migrate"],
        ["create-topics"],
    ]


def test_generated_passwords_are_random_when_no_cluster_holds_them() -> None:
    # `helm template` has no cluster, so lookup finds nothing and a new value is generated:
    # keeping it across upgrades is the lookup path, exercised for real by the e2e tier.
    first = one(render(), "Secret", "saga-postgresql")["data"]["password"]
    second = one(render(), "Secret", "saga-postgresql")["data"]["password"]
    assert len(base64.b64decode(first)) == 24
    assert first != second
    given = one(render(values={"postgresql.auth.password": "chosen"}), "Secret", "saga-postgresql")
    assert base64.b64decode(given["data"]["password"]) == b"chosen"


def test_generated_secrets_look_up_the_existing_object_first() -> None:
    for template in (
        "charts/postgresql/templates/secret.yaml",
        "charts/redis/templates/secret.yaml",
        "charts/kafka/templates/cluster-id.yaml",
    ):
        text = (CHART / template).read_text()
        assert re.search(r'lookup "v1" "(Secret|ConfigMap)" \.Release\.Namespace', text), template


def test_kafka_cluster_id_is_a_valid_kraft_id() -> None:
    cluster_id = one(render(), "ConfigMap", "saga-kafka-cluster-id")["data"]["cluster-id"]
    raw = base64.urlsafe_b64decode(cluster_id + "==")
    assert len(cluster_id) == 22 and len(raw) == 16


def test_existing_secret_replaces_every_credential_source() -> None:
    objects = render(values={"existingSecret": "saga-credentials"})
    env = {
        e["name"]: e
        for e in pod_spec(one(objects, "Deployment", "saga-saga-stack"))["containers"][0]["env"]
    }
    for name in ("DATABASE_PASSWORD", "REDIS_PASSWORD"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "saga-credentials"
    assert not find(objects, "Secret", "saga-saga-stack")


def test_sentinel_mode_reaches_the_app_config() -> None:
    objects = render(
        values={
            "redis.enabled": False,
            "externalRedis.mode": "sentinel",
            "externalRedis.sentinelNodes": ["s1:26379", "s2:26379"],
        }
    )
    config = one(objects, "ConfigMap", "saga-saga-stack")["data"]
    assert config["REDIS_MODE"] == "sentinel"
    assert config["REDIS_SENTINEL_NODES"] == "s1:26379,s2:26379"
    assert "REDIS_HOST" not in config


def test_network_policies_admit_the_app_to_the_data_layer() -> None:
    objects = rendered("bundled")
    app_labels = (
        pod_spec(one(objects, "Deployment", "saga-saga-stack"))
        and one(objects, "Deployment", "saga-saga-stack")["spec"]["template"]["metadata"]["labels"]
    )
    for name in ("saga-postgresql", "saga-redis", "saga-kafka"):
        policy = one(objects, "NetworkPolicy", name)
        selectors = [
            peer["podSelector"]["matchLabels"]
            for rule in policy["spec"]["ingress"]
            for peer in rule["from"]
        ]
        assert any(all(app_labels.get(k) == v for k, v in sel.items()) for sel in selectors), name
    deny = one(objects, "NetworkPolicy", "saga-saga-stack-default-deny")
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]


def test_helm3_renders_the_same_objects_as_helm4() -> None:
    # random parts pinned, so both must produce identical objects
    pinned = {
        "postgresql.auth.password": "p",
        "postgresql.auth.replicationPassword": "rp",
        "postgresql.auth.appPassword": "ap",
        "redis.auth.password": "r",
        "redis.auth.acl.clientPassword": "rc",
        "redis.auth.acl.replicationPassword": "rr",
        "redis.auth.acl.sentinelPassword": "rs",
        "kafka.auth.adminPassword": "ka",
        "kafka.auth.clientPassword": "kc",
        "kafka.clusterId": "AAAAAAAAAAAAAAAAAAAAAA",
    }
    # a go-installed helm 3 defaults to Kubernetes v1.20 (its Makefile injects the real one)
    kube = ["--kube-version", "1.37.0"]
    for profile in PROFILES:
        v4 = render([profile], pinned, extra=kube)
        v3 = render([profile], pinned, binary="helm3", extra=kube)
        assert v3 == v4, profile.name


def test_chart_lock_matches_the_dependencies() -> None:
    listing = helm("dependency", "list", str(CHART)).stdout
    rows = [line.split() for line in listing.splitlines()[1:] if line.strip()]
    assert {r[0] for r in rows} == {"postgresql", "redis", "kafka"}
    assert all(r[-1] in ("ok", "unpacked") for r in rows), listing
    assert all(r[2].startswith("file://") for r in rows), "dependencies must be local"


def test_notes_tell_how_to_reach_the_app() -> None:
    proc = helm(
        "install",
        RELEASE,
        str(CHART),
        "--dry-run=client",
        "--namespace",
        "shop",
        "--set",
        "ingress.enabled=true",
    )
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "port-forward service/saga-saga-stack" in notes
    assert "http://saga.local/" in notes


def test_notes_tell_how_to_find_why_external_services_refuse_the_app() -> None:
    production = str(REPO_ROOT / "values" / "production.yaml")
    proc = helm("install", RELEASE, str(CHART), "--dry-run=client", "-n", "shop", "-f", production)
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "logs deployment/saga-saga-stack | grep misconfigured" in notes
    assert "logs job/saga-saga-stack-migrate" in notes
    bundled = helm("install", RELEASE, str(CHART), "--dry-run=client", "-n", "shop")
    assert "misconfigured" not in bundled.stdout.split("NOTES:", 1)[1]


def test_chart_works_as_a_subchart_of_a_bigger_umbrella(tmp_path: Any) -> None:
    parent = tmp_path / "platform"
    (parent / "templates").mkdir(parents=True)
    (parent / "Chart.yaml").write_text(
        "apiVersion: v2\nname: platform\nversion: 1.0.0\ndependencies:\n"
        f"  - name: saga-stack\n    version: 0.1.0\n    repository: file://{CHART}\n"
        "    condition: saga-stack.enabled\n"
    )
    (parent / "values.yaml").write_text(
        "global:\n  environment: staging\nsaga-stack:\n  enabled: true\n  replicas: 4\n"
    )
    helm("dependency", "build", str(parent))
    proc = helm("template", "shop", str(parent))
    objects = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    assert one(objects, "Deployment")["spec"]["replicas"] == 4
    # still strict inside the parent
    bad = helm("template", "shop", str(parent), "--set", "saga-stack.replica=4", check=False)
    assert bad.returncode != 0 and "'replica'" in bad.stderr
