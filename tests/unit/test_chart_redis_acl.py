"""The bundled Redis gives every client an ACL user of its own (redis.auth.acl.enabled, the
default): the app a user limited to its keys and to commands outside @dangerous, the replicas
a user that can only replicate, the Sentinels a user with Sentinel's documented set; the
default user, with the administrator's password, is kept for the probes. No password sits in
a ConfigMap or in a plain environment value."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from tests.unit.helm import PROFILES, one, pod_spec, pod_templates, render, render_error

HA = next(p for p in PROFILES if p.stem == "ha")
SENTINEL = {"redis.architecture": "replication", "redis.sentinel.enabled": True}
PINNED = {
    "redis.auth.password": "admin-pw",
    "redis.auth.acl.clientPassword": "client-pw",
    "redis.auth.acl.replicationPassword": "replication-pw",
    "redis.auth.acl.sentinelPassword": "sentinel-pw",
}


def scripts(objects: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = one(objects, "ConfigMap", "saga-redis")["data"]
    return data


def users(script: str) -> dict[str, list[str]]:
    """{user: its rules} from the `echo "user NAME on >$VAR RULES..."` lines of a script."""
    found = re.findall(r'echo "user (\S+) on >\$(\w+) ([^"]*)"', script)
    return {name: [f">${variable}", *rules.split()] for name, variable, rules in found}


def container_env(objects: list[dict[str, Any]], name: str) -> dict[str, dict[str, Any]]:
    spec = pod_spec(one(objects, "StatefulSet", "saga-redis-node"))
    container = next(c for c in spec["containers"] if c["name"] == name)
    return {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}


def test_each_client_of_redis_is_a_user_of_its_own() -> None:
    script = scripts(render(values=SENTINEL))["start-redis.sh"]
    found = users(script)
    assert set(found) == {"default", "saga", "replication", "sentinel"}
    assert found["default"] == [">$REDISCLI_AUTH", "~*", "&*", "+@all"]
    app = found["saga"]
    assert app[0] == ">$REDIS_CLIENT_PASSWORD"
    assert {"~saga:*", "~bull:*", "resetchannels"} <= set(app)
    # everything but the dangerous commands, INFO and CLIENT SETNAME given back after them
    assert app.index("+@all") < app.index("-@dangerous") < app.index("+info")
    assert "~*" not in app and "allchannels" not in app
    assert found["replication"][1:] == ["-@all", "+psync", "+replconf", "+ping"]
    sentinel = found["sentinel"][1:]
    assert sentinel[:2] == ["allchannels", "-@all"]
    assert {"+slaveof", "+replicaof", "+config|rewrite", "+role", "+publish"} <= set(sentinel)
    assert 'echo "masteruser replication"' in script


def test_the_sentinels_know_the_app_only_as_a_reader() -> None:
    script = scripts(render(values=SENTINEL))["start-sentinel.sh"]
    found = users(script)
    assert set(found) == {"default", "saga", "sentinel"}
    app = found["saga"][1:]
    assert app[0] == "-@all"
    assert "+sentinel|get-master-addr-by-name" in app
    granted = [rule for rule in app if rule.startswith("+")]
    assert not [rule for rule in granted if re.search(r"failover|\|set$|reset|remove|@", rule)]
    for line in (
        "sentinel auth-user mymaster sentinel",
        "sentinel auth-pass mymaster $REDIS_SENTINEL_PASSWORD",
        "sentinel sentinel-user sentinel",
        "sentinel sentinel-pass $REDIS_SENTINEL_PASSWORD",
    ):
        assert f'echo "{line}"' in script


def test_each_container_gets_only_the_passwords_it_uses() -> None:
    objects = render(values=SENTINEL)
    redis = container_env(objects, "redis")
    assert {name: ref["key"] for name, ref in redis.items()} == {
        "REDISCLI_AUTH": "password",
        "REDIS_CLIENT_PASSWORD": "client-password",
        "REDIS_REPLICATION_PASSWORD": "replication-password",
        "REDIS_SENTINEL_PASSWORD": "sentinel-password",
    }
    sentinel = container_env(objects, "sentinel")
    assert "REDIS_REPLICATION_PASSWORD" not in sentinel
    secret = one(objects, "Secret", "saga-redis")["data"]
    assert set(secret) == {
        "password",
        "client-password",
        "replication-password",
        "sentinel-password",
    }
    assert len(set(secret.values())) == 4, "every user gets a password of its own"


@pytest.mark.parametrize("profile", [None, HA], ids=["default", "ha"])
def test_no_redis_password_outside_its_secret(profile: Any) -> None:
    objects = render([profile] if profile else [], PINNED)
    secret = one(objects, "Secret", "saga-redis")["data"]
    assert {base64.b64decode(v).decode() for v in secret.values()} == set(PINNED.values())
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            text = str(obj.get("data", {}))
            assert not [p for p in PINNED.values() if p in text], obj["metadata"]["name"]
    for workload in pod_templates(objects):
        spec = pod_spec(workload)
        for container in spec["containers"] + spec.get("initContainers", []):
            for env in container.get("env", []):
                assert env.get("value", "") not in PINNED.values(), (container["name"], env["name"])


def test_the_app_logs_in_as_its_user() -> None:
    objects = render(values=SENTINEL)
    config = one(objects, "ConfigMap", "saga-saga-stack")["data"]
    assert config["REDIS_USERNAME"] == config["REDIS_SENTINEL_USERNAME"] == "saga"
    renamed = render(values={"redis.auth.acl.clientUsername": "orders"})
    assert one(renamed, "ConfigMap", "saga-saga-stack")["data"]["REDIS_USERNAME"] == "orders"
    assert "orders" in users(scripts(renamed)["start-redis.sh"])


def test_key_patterns_follow_the_values() -> None:
    values = {
        "jobs.enabled": True,
        "jobs.prefix": "q",
        "redis.auth.acl.clientKeyPatterns": ["saga:*", "q:*"],
    }
    app = users(scripts(render(values=values))["start-redis.sh"])["saga"]
    assert {"~saga:*", "~q:*"} <= set(app) and "~bull:*" not in app
    # "*" covers every prefix
    render(values={**values, "redis.auth.acl.clientKeyPatterns": ["*"]})


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"jobs.enabled": True, "jobs.prefix": "q"}, 'lacks "q:*"'),
        ({"redis.auth.acl.clientKeyPatterns": ["bull:*"]}, 'lacks "saga:*"'),
        ({"redis.auth.acl.clientKeyPatterns": []}, "clientKeyPatterns"),
        ({"redis.auth.acl.clientKeyPatterns": ["saga:* ~*"]}, "clientKeyPatterns"),
        ({"redis.auth.acl.clientUsername": "default"}, "a user the chart keeps for itself"),
        ({"redis.auth.acl.clientUsername": "replication"}, "a user the chart keeps for itself"),
        ({"redis.auth.acl.clientUsername": "sentinel"}, "a user the chart keeps for itself"),
        ({"redis.auth.acl.clientUsername": "two words"}, "clientUsername"),
        ({"redis.auth.acl.clientPassword": "has space"}, "clientPassword"),
        ({"redis.auth.acl.sentinelPassword": 'quo"te'}, "sentinelPassword"),
    ],
)
def test_bad_acl_values_are_refused(values: dict[str, Any], expected: str) -> None:
    assert expected in render_error(values=values)
