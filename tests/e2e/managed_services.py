"""Services that play the managed ones (RDS, ElastiCache, MSK) for the production profile,
in a namespace of their own outside the release, with certificates from a CA the test makes:

- PostgreSQL that accepts TLS connections with a scram password only (`hostssl` lines);
- Redis on a TLS port only, its default user off and an ACL user for the app;
- Kafka whose client listener is SASL_SSL with SCRAM-SHA-512, the user created through the
  admin API once the broker runs, as a platform team creates it on a managed cluster;
- a plaintext-only Redis on the TLS Redis's port, to play a server whose TLS is off.

One Kafka broker, so topics need a replication factor of 1; the rest is as a cloud has it.
The images are the chart's data-layer images (offline or upstream: the same interfaces).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.cluster import CHART, VALUES, CommandFailed, kubectl, pod_manifest, wait_for
from tests.e2e.releases import dump_diagnostics, keep_requested
from tests.integration.services.tls import CertificateAuthority, make_ca

POSTGRES_PORT = 5432
REDIS_TLS_PORT = 6380
KAFKA_SASL_SSL_PORT = 9096
# The broker's own PLAINTEXT listener (inter-broker and the admin commands run in its pod):
# reachable inside the namespace, and a port the release's egress must not let out.
KAFKA_INTERNAL_PORT = 9092
USER = "saga"
JAAS_SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


@dataclasses.dataclass(frozen=True)
class ManagedServices:
    namespace: str
    ca: CertificateAuthority
    database_password: str
    redis_password: str
    kafka_password: str

    def host(self, service: str) -> str:
        return f"{service}.{self.namespace}.svc.cluster.local"

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host('kafka')}:{KAFKA_SASL_SSL_PORT}"


def data_images() -> dict[str, str]:
    """postgresql/redis/kafka -> image, as the chart runs them in this cluster."""
    offline = VALUES / "offline-images.yaml"
    images = {}
    for name in ("postgresql", "redis", "kafka"):
        if os.environ.get("SAGA_STACK_IMAGES", "offline") == "offline" and offline.is_file():
            image = yaml.safe_load(offline.read_text())[name]["image"]
        else:
            image = yaml.safe_load((CHART / "charts" / name / "values.yaml").read_text())["image"]
        images[name] = f"{image['repository']}:{image['tag']}"
    return images


def _secret(namespace: str, name: str, files: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": files,
    }


def _service(namespace: str, name: str, ports: list[int]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"managed-service": name},
            "ports": [{"name": f"p{p}", "port": p, "targetPort": p} for p in ports],
        },
    }


def _pod(
    namespace: str,
    name: str,
    image: str,
    uid: int,
    *,
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
    mounts: dict[str, str] | None = None,
    ready_port: int,
) -> dict[str, Any]:
    """A pod running `image` as `uid`; `mounts` maps a Secret (its files readable by the uid's
    group only, which PostgreSQL requires of a key) to a directory."""
    mounts = mounts or {}
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
        "ports": [{"containerPort": ready_port}],
        "readinessProbe": {"tcpSocket": {"port": ready_port}, "periodSeconds": 2},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [
            {"name": secret, "mountPath": path, "readOnly": True} for secret, path in mounts.items()
        ]
        + [{"name": "scratch", "mountPath": "/var/run/postgresql"}],
    }
    if args:
        container["args"] = args
    return pod_manifest(
        namespace,
        name,
        {"managed-service": name},
        {
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 2,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": uid,
                "runAsGroup": uid,
                "fsGroup": uid,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [
                {"name": s, "secret": {"secretName": s, "defaultMode": 0o640}} for s in mounts
            ]
            + [{"name": "scratch", "emptyDir": {}}],
        },
    )


def _manifests(services: ManagedServices) -> list[dict[str, Any]]:
    ns = services.namespace
    images = data_images()
    ca = services.ca
    certs = {
        name: ca.issue(name, (services.host(name), f"{name}.{ns}.svc"))
        for name in ("pg", "redis", "kafka")
    }

    def pem(name: str) -> dict[str, str]:
        cert = certs[name]
        return {"tls.crt": cert.cert.read_text(), "tls.key": cert.key.read_text()}

    hba = "local all all trust\nhostssl all all all scram-sha-256\n"
    redis_conf = (
        f"port 0\ntls-port {REDIS_TLS_PORT}\n"
        "tls-cert-file /tls/tls.crt\ntls-key-file /tls/tls.key\ntls-auth-clients no\n"
        'protected-mode no\nsave ""\nappendonly no\n'
        "user default off\n"
        f"user {USER} on >{services.redis_password} ~* &* +@all\n"
    )
    kafka_host = services.host("kafka")
    kafka_env = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@127.0.0.1:9093",
        "KAFKA_LISTENERS": (
            f"INTERNAL://:{KAFKA_INTERNAL_PORT},CONTROLLER://127.0.0.1:9093,"
            f"SASL_SSL://:{KAFKA_SASL_SSL_PORT}"
        ),
        "KAFKA_ADVERTISED_LISTENERS": (
            f"INTERNAL://127.0.0.1:{KAFKA_INTERNAL_PORT},"
            f"SASL_SSL://{kafka_host}:{KAFKA_SASL_SSL_PORT}"
        ),
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": (
            "CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL"
        ),
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "INTERNAL",
        # listener.name.sasl_ssl.* ("__" is "_", "___" is "-" in the image's interface)
        "KAFKA_LISTENER_NAME_SASL__SSL_SASL_ENABLED_MECHANISMS": "SCRAM-SHA-512",
        "KAFKA_LISTENER_NAME_SASL__SSL_SCRAM___SHA___512_SASL_JAAS_CONFIG": JAAS_SCRAM,
        "KAFKA_LISTENER_NAME_SASL__SSL_SSL_KEYSTORE_TYPE": "PEM",
        "KAFKA_LISTENER_NAME_SASL__SSL_SSL_KEYSTORE_LOCATION": "/tls/keystore.pem",
        "KAFKA_LOG_DIRS": "/tmp/kafka-data",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_HEAP_OPTS": "-Xmx256m -Xms256m",
    }
    postgres_args = [
        "postgres",
        "-c", "ssl=on",
        "-c", "ssl_cert_file=/tls/tls.crt",
        "-c", "ssl_key_file=/tls/tls.key",
        "-c", "hba_file=/etc/managed/pg_hba.conf",
    ]  # fmt: skip
    return [
        _secret(ns, "pg-tls", pem("pg")),
        _secret(ns, "pg-hba", {"pg_hba.conf": hba}),
        _secret(ns, "redis-conf", {**pem("redis"), "redis.conf": redis_conf}),
        _secret(
            ns,
            "kafka-tls",
            {"keystore.pem": certs["kafka"].key.read_text() + certs["kafka"].cert.read_text()},
        ),
        _pod(
            ns,
            "pg",
            images["postgresql"],
            999,
            args=postgres_args,
            env={
                "POSTGRES_USER": USER,
                "POSTGRES_PASSWORD": services.database_password,
                "POSTGRES_DB": "saga",
                "PGDATA": "/var/run/postgresql/data",
            },
            mounts={"pg-tls": "/tls", "pg-hba": "/etc/managed"},
            ready_port=POSTGRES_PORT,
        ),
        _pod(
            ns,
            "redis",
            images["redis"],
            999,
            args=["/tls/redis.conf"],
            mounts={"redis-conf": "/tls"},
            ready_port=REDIS_TLS_PORT,
        ),
        _pod(
            ns,
            "redis-plain",
            images["redis"],
            999,
            args=["--port", str(REDIS_TLS_PORT), "--save", "", "--appendonly", "no"],
            ready_port=REDIS_TLS_PORT,
        ),
        _pod(
            ns,
            "kafka",
            images["kafka"],
            1000,
            env=kafka_env,
            mounts={"kafka-tls": "/tls"},
            ready_port=KAFKA_SASL_SSL_PORT,
        ),
        _service(ns, "pg", [POSTGRES_PORT]),
        _service(ns, "redis", [REDIS_TLS_PORT]),
        _service(ns, "redis-plain", [REDIS_TLS_PORT]),
        _service(ns, "kafka", [KAFKA_SASL_SSL_PORT, KAFKA_INTERNAL_PORT]),
    ]


def _add_kafka_user(services: ManagedServices) -> None:
    """The app's SCRAM-SHA-512 user, through the broker's admin API (the metadata log keeps
    it); retried until the broker answers."""

    scram = f"SCRAM-SHA-512=[iterations=8192,password={services.kafka_password}]"

    def added() -> bool | None:
        try:
            kubectl(
                "exec", "-n", services.namespace, "kafka", "--",
                "env", "KAFKA_HEAP_OPTS=-Xmx64m",
                "kafka-configs.sh", "--bootstrap-server", f"127.0.0.1:{KAFKA_INTERNAL_PORT}",
                "--alter", "--entity-type", "users", "--entity-name", USER,
                "--add-config", scram,
                timeout=90,
            )  # fmt: skip
        except CommandFailed:
            return None
        return True

    wait_for("the Kafka user added through the admin API", added, timeout=240, every=3)


@contextlib.contextmanager
def managed_services(workdir: Path) -> Iterator[ManagedServices]:
    """Starts the services in a new namespace, yields them Ready (the Kafka user made), and
    removes the namespace afterwards (SAGA_E2E_KEEP=1 keeps it)."""
    namespace = f"managed-{secrets.token_hex(3)}"
    services = ManagedServices(
        namespace=namespace,
        ca=make_ca(workdir / "ca", "managed-services-ca"),
        database_password=secrets.token_hex(16),
        redis_password=secrets.token_hex(16),
        kafka_password=secrets.token_hex(16),
    )
    kubectl("create", "namespace", namespace)
    try:
        for manifest in _manifests(services):
            kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
        try:
            kubectl(
                "wait", "-n", namespace, "pod", "--all", "--for=condition=Ready", "--timeout=300s",
                timeout=320,
            )  # fmt: skip
            _add_kafka_user(services)
        except (CommandFailed, AssertionError) as exc:
            where = dump_diagnostics(namespace, f"managed services did not start: {exc}")
            raise CommandFailed(f"{exc}\n(diagnostics in {where})") from exc
        yield services
    finally:
        if not keep_requested():
            # Waited for, as every release's removal is: the next test starts on a settled cluster.
            kubectl("delete", "pods", "--all", "-n", namespace, "--grace-period=1", "--wait=false",
                    check=False)  # fmt: skip
            kubectl("delete", "namespace", namespace, "--timeout=5m", check=False, timeout=320)
