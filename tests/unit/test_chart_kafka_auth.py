"""The bundled Kafka requires SASL and authorizes by ACL (kafka.auth.enabled, the default):
the brokers' admin user is the only super user, the app authenticates as a SCRAM user of its
own that a per-revision Job grants its topics and group, and no password is in an
environment variable."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.unit.helm import PROFILES, find, one, pod_spec, pod_templates, render, render_error

LOCAL = next(p for p in PROFILES if p.stem == "local")
HA = next(p for p in PROFILES if p.stem == "ha")


def broker_env(objects: list[dict[str, Any]]) -> dict[str, Any]:
    container = pod_spec(one(objects, "StatefulSet", "saga-kafka"))["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def secret_text(objects: list[dict[str, Any]], key: str) -> str:
    encoded = one(objects, "Secret", "saga-kafka")["data"][key]
    return base64.b64decode(encoded).decode()


@pytest.mark.parametrize("profile", [LOCAL, HA], ids=["local", "ha"])
def test_the_brokers_require_sasl_and_authorize_by_acl(profile: Any) -> None:
    objects = render([profile])
    env = broker_env(objects)
    assert env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"] == (
        "CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_PLAINTEXT"
    )
    assert env["KAFKA_LISTENERS"].startswith("CLIENT://:9092,")
    assert env["KAFKA_LISTENER_NAME_CLIENT_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512,PLAIN"
    assert env["KAFKA_LISTENER_NAME_CONTROLLER_SASL_ENABLED_MECHANISMS"] == "PLAIN"
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"].endswith(".StandardAuthorizer")
    assert env["KAFKA_SUPER_USERS"] == "User:admin"
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert env["KAFKA_OPTS"] == "-Djava.security.auth.login.config=/etc/kafka/secrets/jaas.conf"


def test_no_password_is_in_an_environment_variable_or_a_config_map() -> None:
    """The brokers' entry point prints the properties it makes from KAFKA_* variables, and
    ConfigMaps are readable by more people than Secrets."""
    objects = render([LOCAL])
    passwords = [secret_text(objects, k) for k in ("admin-password", "client-password")]
    exposed = [str(broker_env(objects))] + [str(o.get("data")) for o in find(objects, "ConfigMap")]
    for password in passwords:
        assert len(password) == 32
        assert not any(password in text for text in exposed)
    assert passwords[0] != passwords[1]
    jaas = secret_text(objects, "jaas.conf")
    assert f'user_admin="{passwords[0]}";' in jaas
    assert "ScramLoginModule required;" in jaas
    admin = secret_text(objects, "admin.properties")
    assert "sasl.mechanism=PLAIN" in admin and f'password="{passwords[0]}";' in admin


def test_the_app_authenticates_as_its_own_scram_user() -> None:
    objects = render([LOCAL], values={"loadGenerator.enabled": True})
    config = one(objects, "ConfigMap", "saga-saga-stack")["data"]
    assert config["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert config["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert config["KAFKA_SASL_USERNAME"] == "saga"
    refs = {}
    for obj in pod_templates(objects):
        for container in pod_spec(obj)["containers"]:
            for entry in container.get("env", []):
                if entry["name"] == "KAFKA_SASL_PASSWORD":
                    refs[obj["metadata"]["name"]] = entry["valueFrom"]["secretKeyRef"]
    assert {"saga-saga-stack", "saga-saga-stack-topics"} <= set(refs)
    expected = {"name": "saga-kafka", "key": "client-password", "optional": True}
    assert all(ref == expected for ref in refs.values())


def test_the_access_job_grants_the_apps_topics_and_group_once_per_revision() -> None:
    objects = render(
        [LOCAL],
        values={"topics.events": "orders.events", "topics.consumerGroup": "orders"},
        extra=["--is-upgrade"],
    )
    (job,) = [o for o in find(objects, "Job") if "kafka-access" in o["metadata"]["name"]]
    assert job["metadata"]["name"] == "saga-saga-stack-kafka-access-r1"
    assert "helm.sh/hook" not in job["metadata"].get("annotations", {})
    spec = pod_spec(job)
    assert spec["containers"][0]["image"].startswith("apache/kafka:")
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in spec["containers"][0]["env"]}
    assert env["TOPICS"] == "orders.events,saga.starts,saga.events.dlq"
    assert env["GROUP"] == "orders"
    assert env["APP_USER"] == "saga"
    assert env["APP_PASSWORD"] == {"secretKeyRef": {"name": "saga-kafka", "key": "client-password"}}
    assert job["spec"]["template"]["metadata"]["labels"]["saga-stack.io/kafka-client"] == "true"
    assert {v["secret"]["items"][0]["key"] for v in spec["volumes"] if "secret" in v} == {
        "admin.properties"
    }


def test_auth_off_is_plaintext_without_users_or_acls() -> None:
    objects = render([LOCAL], values={"kafka.auth.enabled": False})
    assert broker_env(objects)["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"] == (
        "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    )
    assert "KAFKA_AUTHORIZER_CLASS_NAME" not in broker_env(objects)
    assert not find(objects, "Secret", "saga-kafka")
    assert not [o for o in find(objects, "Job") if "kafka-access" in o["metadata"]["name"]]
    config = one(objects, "ConfigMap", "saga-saga-stack")["data"]
    assert config["KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
    assert "KAFKA_SASL_USERNAME" not in config


def test_the_apps_user_cannot_be_the_admin() -> None:
    message = render_error(values={"kafka.auth.clientUsername": "admin"})
    assert "kafka.auth.clientUsername" in message and "admin user" in message


@pytest.mark.parametrize("password", ['with"quote', "with\\,comma", "with space", "a=b"])
def test_a_password_that_would_break_the_jaas_file_is_refused(password: str) -> None:
    message = render_error(values={"kafka.auth.adminPassword": password})
    assert "adminPassword" in message
