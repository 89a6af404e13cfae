"""Kafka: a single-node KRaft broker (combined broker + controller) from the
jars that ci/install-services.sh fetches, optionally with a SASL listener."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.integration.services.process import (
    INSTALL_HINT,
    KAFKA_START_TIMEOUT,
    LOOPBACK,
    ManagedProcess,
    MissingBinaryError,
    ServiceError,
    _PortInUse,
    _require,
    _Restartable,
    _run_checked,
    _tail,
    _with_port_retries,
    cache_dir,
    free_port,
    port_open,
    read_versions,
    wait_until,
)
from tests.integration.services.tls import ServerCertificate


@dataclasses.dataclass
class KafkaInstance(_Restartable):
    host: str
    port: int
    controller_port: int
    cluster_id: str
    workdir: Path
    process: ManagedProcess = dataclasses.field(repr=False)
    startup_seconds: float = 0.0
    sasl_port: int | None = None
    sasl_users: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)
    start_timeout: float = KAFKA_START_TIMEOUT
    sasl_ssl_port: int | None = None
    ca_file: Path | None = None

    @property
    def bootstrap_servers(self) -> str:
        """The PLAINTEXT listener."""
        return f"{self.host}:{self.port}"

    @property
    def sasl_bootstrap_servers(self) -> str:
        """The SASL_PLAINTEXT listener (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512);
        only when started with ``sasl_users``."""
        if self.sasl_port is None:
            raise ServiceError("this Kafka was started without sasl_users")
        return f"{self.host}:{self.sasl_port}"

    def sasl_env(self, username: str, mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
        """App-contract variables for the SASL_PLAINTEXT listener as ``username``."""
        if mechanism not in KAFKA_SASL_MECHANISMS:
            raise ValueError(f"mechanism must be one of {KAFKA_SASL_MECHANISMS}")
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.sasl_bootstrap_servers,
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": mechanism,
            "KAFKA_SASL_USERNAME": username,
            "KAFKA_SASL_PASSWORD": self.sasl_users[username],
        }

    @property
    def sasl_ssl_bootstrap_servers(self) -> str:
        """The SASL_SSL listener (same users and mechanisms as SASL_PLAINTEXT); only
        when started with ``sasl_users`` and ``tls``."""
        if self.sasl_ssl_port is None:
            raise ServiceError("this Kafka was started without sasl_users and tls")
        return f"{self.host}:{self.sasl_ssl_port}"

    def sasl_ssl_env(self, username: str, mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
        """App-contract variables for the SASL_SSL listener as ``username``, trusting
        the CA that signed the broker's certificate."""
        return {
            **self.sasl_env(username, mechanism),
            "KAFKA_BOOTSTRAP_SERVERS": self.sasl_ssl_bootstrap_servers,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SSL_CA_FILE": str(self.ca_file),
        }

    def _ready(self) -> bool:
        return _kafka_ready(self.host, self.port)

    def _describe(self) -> str:
        return f"Kafka on {self.bootstrap_servers}"

    def env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
        }


KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _jaas_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def kafka_libs_dir() -> Path:
    """The jars fetched by ci/install-services.sh ($SAGA_KAFKA_LIBS overrides;
    $KAFKA_VERSION overrides ci/versions.sh, as in the script)."""
    override = os.environ.get("SAGA_KAFKA_LIBS")
    if override:
        libs = Path(override)
    else:
        version = os.environ.get("KAFKA_VERSION") or read_versions()["KAFKA_VERSION"]
        libs = cache_dir() / f"kafka-{version}" / "libs"
    if not libs.is_dir() or not any(libs.glob("kafka_*.jar")):
        raise MissingBinaryError(f"Kafka jars not found in {libs}; {INSTALL_HINT}")
    return libs


def java_binary() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return _require("java")


def new_kafka_cluster_id() -> str:
    """A random cluster id in Kafka's own format (url-safe base64 of 16 bytes)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):  # Kafka avoids ids that look like options
            return text


_LOG4J2_PROPERTIES = """\
# Written by tests/integration/services/kafka.py for a test broker.
status = warn
name = saga-test-kafka
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.kafkaapache.name = org.apache.kafka
logger.kafkaapache.level = INFO
logger.requests.name = kafka.request.logger
logger.requests.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
"""


def kafka_metadata(host: str, port: int, timeout: float = 2.0) -> tuple[list[int], int]:
    """(broker node ids, controller id) from one Kafka Metadata request.

    Synchronous for the polling callers: it runs its own event loop, so it
    cannot be called from inside one.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    async def describe() -> tuple[list[int], int]:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=f"{host}:{port}",
            client_id="saga-readiness",
            request_timeout_ms=int(timeout * 1000),
        )
        try:
            async with asyncio.timeout(timeout):
                await admin.start()
                cluster = await admin.describe_cluster()
        finally:
            await admin.close()
        return [int(b["node_id"]) for b in cluster["brokers"]], int(cluster["controller_id"])

    return asyncio.run(describe())


def _kafka_ready(host: str, port: int) -> bool:
    # aiokafka logs every refused bootstrap at ERROR (to stderr outside pytest):
    # while the JVM starts, a plain connect keeps the polling quiet.
    if not port_open(host, port):
        return False
    brokers, controller = kafka_metadata(host, port)
    return 1 in brokers and controller >= 0


def _launch_kafka(
    workdir: Path,
    libs: Path,
    java: str,
    heap: tuple[str, str],
    sasl_users: dict[str, str] | None = None,
    tls: ServerCertificate | None = None,
    ca_file: Path | None = None,
) -> KafkaInstance:
    port = free_port()
    controller_port = free_port()
    while controller_port == port:
        controller_port = free_port()
    sasl_port: int | None = None
    if sasl_users:
        sasl_port = free_port()
        while sasl_port in (port, controller_port):
            sasl_port = free_port()
    sasl_ssl_port: int | None = None
    if sasl_users and tls is not None:
        sasl_ssl_port = free_port()
        while sasl_ssl_port in (port, controller_port, sasl_port):
            sasl_ssl_port = free_port()
    cluster_id = new_kafka_cluster_id()
    data_dir = workdir / "data"
    logs_dir = workdir / "logs"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    logs_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{LOOPBACK}:{controller_port}",
        "listeners": f"PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "5",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "5",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "log.retention.hours": "1",
        "delete.topic.enable": "true",
    }
    scram_args: list[str] = []
    if sasl_users and sasl_port is not None:
        settings["listeners"] += f",SASL_PLAINTEXT://{LOOPBACK}:{sasl_port}"
        settings["advertised.listeners"] += f",SASL_PLAINTEXT://{LOOPBACK}:{sasl_port}"
        settings["listener.security.protocol.map"] += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
        settings["sasl.enabled.mechanisms"] = ",".join(KAFKA_SASL_MECHANISMS)
        prefix = "listener.name.sasl_plaintext"
        plain_users = " ".join(f"user_{name}={_jaas_quote(pw)}" for name, pw in sasl_users.items())
        settings[f"{prefix}.plain.sasl.jaas.config"] = (
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
        )
        for mechanism in ("scram-sha-256", "scram-sha-512"):
            settings[f"{prefix}.{mechanism}.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            )
        if tls is not None and sasl_ssl_port is not None:
            # Same users, over TLS: the managed-Kafka shape (MSK, Confluent, Aiven).
            settings["listeners"] += f",SASL_SSL://{LOOPBACK}:{sasl_ssl_port}"
            settings["advertised.listeners"] += f",SASL_SSL://{LOOPBACK}:{sasl_ssl_port}"
            settings["listener.security.protocol.map"] += ",SASL_SSL:SASL_SSL"
            ssl_prefix = "listener.name.sasl_ssl"
            settings[f"{ssl_prefix}.ssl.keystore.type"] = "PEM"
            settings[f"{ssl_prefix}.ssl.keystore.location"] = str(tls.key_and_chain)
            settings[f"{ssl_prefix}.sasl.enabled.mechanisms"] = ",".join(KAFKA_SASL_MECHANISMS)
            settings[f"{ssl_prefix}.plain.sasl.jaas.config"] = settings[
                f"{prefix}.plain.sasl.jaas.config"
            ]
            for mechanism in ("scram-sha-256", "scram-sha-512"):
                settings[f"{ssl_prefix}.{mechanism}.sasl.jaas.config"] = (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                )
        # SCRAM credentials live in the metadata log: written at format time
        for name, pw in sasl_users.items():
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                scram_args += [
                    "--add-scram",
                    f"{mechanism}=[name={name},password={_jaas_quote(pw)}]",
                ]
    server_properties = workdir / "server.properties"
    server_properties.write_text(
        "".join(f"{k}={v}\n" for k, v in settings.items()), encoding="utf-8"
    )
    log4j = workdir / "log4j2.properties"
    log4j.write_text(_LOG4J2_PROPERTIES.format(log_file=logs_dir / "server.log"), encoding="utf-8")
    classpath = str(libs / "*")
    jvm_common = [
        java,
        f"-Xmx{heap[0]}",
        f"-Xms{heap[1]}",
        "-XX:+UseSerialGC",
        *os.environ.get("SAGA_KAFKA_JVM_OPTS", "").split(),
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        f"-Dkafka.logs.dir={logs_dir}",
        "-cp",
        classpath,
    ]
    env = dict(os.environ)
    env.pop("KAFKA_OPTS", None)
    env.pop("KAFKA_HEAP_OPTS", None)
    _run_checked(
        [
            *jvm_common[:2],
            "-Xms64m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            cluster_id,
            "--config",
            str(server_properties),
            "--ignore-formatted",
            *scram_args,
        ],
        "kafka storage format",
        env=env,
    )
    proc = ManagedProcess(
        "kafka",
        [*jvm_common, "kafka.Kafka", str(server_properties)],
        logs_dir / "stdout.log",
        cwd=workdir,
        env=env,
        death_signal=signal.SIGKILL,
    )
    started = time.monotonic()

    try:
        wait_until(
            lambda: _kafka_ready(LOOPBACK, port),
            timeout=KAFKA_START_TIMEOUT,
            what=f"Kafka metadata on {LOOPBACK}:{port}",
            process=proc,
            max_interval=0.25,
        )
    except ServiceError as exc:
        proc.stop()
        log = _tail(logs_dir / "server.log", 200)
        if "Address already in use" in log or "BindException" in log:
            raise _PortInUse(str(exc)) from exc
        raise ServiceError(f"{exc}\nserver.log:\n{_tail(logs_dir / 'server.log')}") from exc
    return KafkaInstance(
        host=LOOPBACK,
        port=port,
        controller_port=controller_port,
        cluster_id=cluster_id,
        workdir=workdir,
        process=proc,
        startup_seconds=time.monotonic() - started,
        sasl_port=sasl_port,
        sasl_users=dict(sasl_users or {}),
        sasl_ssl_port=sasl_ssl_port,
        ca_file=ca_file if sasl_ssl_port is not None else None,
    )


@contextlib.contextmanager
def start_kafka(
    workdir: Path,
    *,
    heap_max: str = "512m",
    heap_initial: str = "256m",
    sasl_users: dict[str, str] | None = None,
    tls: ServerCertificate | None = None,
    ca_file: Path | None = None,
) -> Iterator[KafkaInstance]:
    """A single-node KRaft Kafka (combined broker + controller), PLAINTEXT on loopback.

    With ``sasl_users`` ({name: password}) there is also a SASL_PLAINTEXT
    listener accepting those users with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512
    (see ``sasl_bootstrap_servers`` and ``sasl_env()``); their SCRAM credentials are
    written into the metadata log when the storage is formatted (``--add-scram``).
    With ``tls`` too (a certificate signed by ``ca_file``), a SASL_SSL listener for the
    same users (``sasl_ssl_bootstrap_servers``, ``sasl_ssl_env()``).
    """
    if tls is not None and ca_file is None:
        raise ValueError("tls needs the ca_file that signed it")
    libs = kafka_libs_dir()
    java = java_binary()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    instance: KafkaInstance = _with_port_retries(
        lambda: _launch_kafka(
            workdir, libs, java, (heap_max, heap_initial), sasl_users, tls, ca_file
        )
    )
    try:
        yield instance
    finally:
        instance.process.stop()
