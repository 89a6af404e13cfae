"""A hostile pod in the release's namespace, labelled so that the NetworkPolicies let it reach
the brokers and Redis: without credentials, or as a Kafka user of its own, it can neither
forge a saga event nor read one nor read the app's consumer group; with the app's
credentials it can. In Redis, without credentials it can do nothing, and even the app's user
may touch only the app's keys and none of the administrator's commands. Authentication and
ACLs are the lock, not the policy."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest

from tests.e2e.cluster import RELEASE, client_pod, kafka_admin, kubectl_json, run_python_in

PROBE = (Path(__file__).parent / "probes" / "kafka_access_probe.py").read_text()
REDIS_PROBE = (Path(__file__).parent / "probes" / "redis_access_probe.py").read_text()
KAFKA = f"{RELEASE}-kafka"
BOOTSTRAP = f"{KAFKA}:9092"
EVENTS = "saga.events"
STARTS = "saga.starts"
GROUP = "saga-service"


@pytest.fixture(scope="module")
def intruder(release: str, app_image: str) -> str:
    """A pod outside the release with the app's image (Python, aiokafka, redis-py) and none
    of its credentials, admitted by the brokers' and Redis's NetworkPolicies."""
    labels = {"saga-stack.io/kafka-client": "true", "saga-stack.io/redis-client": "true"}
    return client_pod(release, "e2e-intruder", app_image, labels=labels)


def attempts(
    namespace: str,
    pod: str,
    user: str = "",
    password: str = "",
    topic: str = EVENTS,
) -> dict[str, str]:
    args = (BOOTSTRAP, user, password, topic, GROUP, ["produce", "read", "group"])
    call = f"\nasyncio.run(main(*{args!r}))\n"
    outcome: dict[str, str] = run_python_in(namespace, pod, PROBE + call)
    return outcome


def test_a_client_without_credentials_gets_nowhere(release: str, intruder: str) -> None:
    """The broker closes the connection of a client that does not authenticate first."""
    assert attempts(release, intruder) == dict.fromkeys(
        ("produce", "read", "group"), "refused: KafkaConnectionError"
    )


@pytest.mark.parametrize("topic", [EVENTS, STARTS])
def test_another_kafka_user_can_neither_forge_nor_read_saga_events(
    release: str, intruder: str, topic: str
) -> None:
    """An authenticated user without ACLs, as a leaked or misused credential of another
    client would be: the authorizer refuses it the app's topics and group."""
    password = secrets.token_urlsafe(24)
    kafka_admin(
        release, "kafka-configs.sh", "--alter", "--entity-type", "users",
        "--entity-name", "intruder", "--add-config", f"SCRAM-SHA-512=[password={password}]",
    )  # fmt: skip
    outcome = attempts(release, intruder, "intruder", password, topic)
    assert outcome == {
        "produce": "refused: TopicAuthorizationFailedError",
        "read": "refused: TopicNotVisible",
        "group": "refused: GroupAuthorizationFailedError",
    }


def test_the_apps_own_user_is_let_through_from_the_same_pod(release: str, intruder: str) -> None:
    """The app's credentials, from the same pod, on the dead-letter topic (nothing consumes
    it, so the test message harms nothing): what the others were refused, the ACLs grant
    the app, its group included."""
    secret = kubectl_json("get", "secret", "-n", release, KAFKA)
    password = base64.b64decode(secret["data"]["client-password"]).decode()
    config = kubectl_json("get", "configmap", "-n", release, f"{RELEASE}-saga-stack")
    outcome = attempts(
        release,
        intruder,
        config["data"]["KAFKA_SASL_USERNAME"],
        password,
        topic=config["data"]["KAFKA_TOPIC_DEAD_LETTER"],
    )
    assert outcome == {"produce": "ok", "read": "ok", "group": "ok"}


REDIS = (f"{RELEASE}-redis-master", 6379)
REDIS_ATTEMPTS = ["own-key", "other-key", "keys", "config-get", "flushall"]


def redis_attempts(namespace: str, pod: str, user: str = "", password: str = "") -> dict[str, str]:
    call = f"\nmain(*{(*REDIS, user, password, REDIS_ATTEMPTS)!r})\n"
    outcome: dict[str, str] = run_python_in(namespace, pod, REDIS_PROBE + call)
    return outcome


def test_redis_refuses_a_client_without_credentials(release: str, intruder: str) -> None:
    assert redis_attempts(release, intruder) == dict.fromkeys(
        REDIS_ATTEMPTS, "refused: AuthenticationError"
    )


def test_the_apps_redis_user_may_touch_only_its_keys(release: str, intruder: str) -> None:
    """The app's credentials, as a compromised app pod would hold them: its keys yes; another
    prefix, listing every key, reading the server's configuration, wiping it: no."""
    secret = kubectl_json("get", "secret", "-n", release, f"{RELEASE}-redis")
    password = base64.b64decode(secret["data"]["client-password"]).decode()
    config = kubectl_json("get", "configmap", "-n", release, f"{RELEASE}-saga-stack")
    outcome = redis_attempts(release, intruder, config["data"]["REDIS_USERNAME"], password)
    assert outcome == {
        "own-key": "ok",
        "other-key": "refused: NoPermissionError",
        "keys": "refused: NoPermissionError",
        "config-get": "refused: NoPermissionError",
        "flushall": "refused: NoPermissionError",
    }
