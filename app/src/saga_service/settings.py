"""Configuration from the environment (names are part of the app contract), and the few
settings a running process also takes from a file without a restart (RELOADABLE)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Shorter bearer tokens are guessable; the settings refuse them.
API_TOKEN_MIN_LENGTH = 16


class Settings(BaseSettings):
    """Every knob of the service; see docs/app-contract.md for the meaning of each."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    port: int = Field(8080, ge=1, le=65535)
    # Idle keep-alive connections stay open this long. A proxy in front reuses its pooled
    # connections until its own idle timeout; if the app closes first, a request written
    # in that instant meets a closed socket and the proxy answers 502. So this outlasts the
    # usual proxies' idle timeouts (Traefik and Go 90 s, ingress-nginx and ALB 60 s, a GCP
    # load balancer 600 s).
    http_keep_alive_seconds: int = Field(620, ge=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Spans exported over OTLP/HTTP to this collector's base URL (/v1/traces is added); empty:
    # none (the trace context still travels and the logs carry it). OpenTelemetry's own
    # variable names; OTEL_TRACES_SAMPLER and OTEL_RESOURCE_ATTRIBUTES work as in any SDK.
    otel_exporter_otlp_endpoint: str = Field("", pattern=r"^(https?://[^\s/]+(/\S*)?)?$")
    otel_service_name: str = Field("saga-service", min_length=1)

    database_host: str
    database_port: int = 5432
    database_name: str = "saga"
    database_user: str = "saga"
    database_password: SecretStr
    # `migrate` only: the role that owns the schema. Set, the migrations run as it and then
    # give DATABASE_USER exactly the reads and writes the service needs (creating that role,
    # or setting its password, when the owner may). Empty: DATABASE_USER runs them.
    database_owner_user: str = Field("", pattern=r"^([a-z_][a-z0-9_$]{0,62})?$")
    database_owner_password: SecretStr = SecretStr("")
    # libpq's modes. Only verify-full checks both the CA and the host name; prefer and
    # allow fall back to plaintext when the server has no TLS (the chart never uses them).
    database_sslmode: Literal[
        "disable", "allow", "prefer", "require", "verify-ca", "verify-full"
    ] = "prefer"
    # libpq's sslrootcert: the CA bundle that signed the server's certificate, or
    # "system" for the image's trust store. Unset: libpq's ~/.postgresql/root.crt.
    database_sslrootcert: str | None = None
    database_pool_size: int = Field(10, ge=2, le=200)

    redis_mode: Literal["standalone", "sentinel"] = "standalone"
    redis_host: str | None = None
    redis_port: int = 6379
    # An ACL user (Redis 6+); empty: the default user, as with requirepass.
    redis_username: str = ""
    redis_password: SecretStr = SecretStr("")
    redis_tls: bool = False
    # CA bundle that signed the server's certificate; unset: the system trust store.
    redis_tls_ca_file: str | None = None
    redis_sentinel_nodes: str | None = None
    redis_sentinel_master: str = "mymaster"
    # The Sentinels' ACL user (Redis 6.2+); empty: their default user.
    redis_sentinel_username: str = ""
    redis_sentinel_password: SecretStr = SecretStr("")

    kafka_bootstrap_servers: str
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    # CA bundle that signed the brokers' certificates (SSL, SASL_SSL); unset: system store.
    kafka_ssl_ca_file: str | None = None
    # Continuing steps of sagas under way; new sagas' first events go to the starts topic,
    # which a consumer reads only while it has nothing of the first kind waiting.
    kafka_topic_events: str = "saga.events"
    kafka_topic_starts: str = "saga.starts"
    kafka_topic_dead_letter: str = "saga.events.dlq"
    kafka_consumer_group: str = "saga-service"
    kafka_topic_partitions: int = Field(6, ge=1)
    kafka_topic_replication_factor: int = Field(1, ge=1)
    kafka_topic_min_insync_replicas: int = Field(1, ge=1)
    kafka_session_timeout_ms: int = Field(10000, ge=1000)

    lock_ttl_ms: int = Field(5000, ge=50)
    lock_acquire_timeout_ms: int = Field(10000, ge=10)
    saga_lease_seconds: float = Field(30.0, gt=0)
    # A new saga's lease: how long its first event may wait on the starts topic before the
    # recovery sweep starts the saga itself. Under overload new sagas wait there on purpose;
    # a lease as short as a step's would let the sweep start them past the sagas under way.
    saga_start_lease_seconds: float = Field(300.0, gt=0)
    saga_max_attempts: int = Field(5, ge=1)
    saga_step_delay_ms: int = Field(0, ge=0)
    shutdown_grace_seconds: float = Field(20.0, gt=0)
    # Seconds after SIGTERM that HTTP keeps serving, every answer with `Connection: close`:
    # keep-alive clients (a ClusterIP's conntrack pins them to this pod after the endpoint
    # is gone) move to another pod on their next request instead of meeting a closed socket.
    # Unset: 2 s, or a quarter of a shorter grace period.
    shutdown_drain_seconds: float | None = Field(None, ge=0)
    max_body_bytes: int = Field(65536, ge=1024)
    # Bearer tokens accepted by the write endpoints (POST /orders, PUT /stock/{sku}),
    # separated by commas or new lines; several let a token be rotated without an outage.
    # Empty: writes are open. Reads, health and metrics never ask for one.
    api_tokens: SecretStr = SecretStr("")
    max_order_items: int = Field(50, ge=1)
    # A JSON file of RELOADABLE settings, watched while serving; its values win over the
    # environment's. Unset: the environment alone, read once.
    saga_runtime_config: Path | None = None

    # Background jobs (docs/app-contract.md, "Background jobs").
    # Off: a confirmed order writes no job and no relay feeds the queue, so an install
    # without workers never grows a queue that nothing drains.
    jobs_enabled: bool = False
    jobs_queue: str = Field("saga-jobs", min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    jobs_prefix: str = Field("bull", min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    jobs_concurrency: int = Field(4, ge=1, le=256)
    jobs_lock_ms: int = Field(30000, ge=500)
    jobs_stalled_interval_ms: int = Field(30000, ge=100)
    jobs_max_stalled_count: int = Field(2, ge=0)
    jobs_attempts: int = Field(5, ge=1)
    jobs_backoff_ms: int = Field(1000, ge=0)
    jobs_keep_completed: int = Field(1000, ge=0)
    jobs_keep_failed: int = Field(10000, ge=0)
    jobs_metrics_interval_seconds: float = Field(2.0, gt=0)
    jobs_ack_delay_ms: int = Field(0, ge=0)
    reconcile_document_grace_seconds: float = Field(300.0, ge=0)

    @model_validator(mode="after")
    def _redis_mode_needs(self) -> Settings:
        if self.redis_mode == "standalone" and not self.redis_host:
            raise ValueError("REDIS_HOST is required when REDIS_MODE=standalone")
        if self.redis_mode == "sentinel" and not self.redis_sentinel_nodes:
            raise ValueError("REDIS_SENTINEL_NODES is required when REDIS_MODE=sentinel")
        self._tls_settings_agree()
        short = [t for t in self.write_tokens() if len(t) < API_TOKEN_MIN_LENGTH]
        if short:
            # Never echo a token, not even a part of one: say how many.
            raise ValueError(
                f"API_TOKENS: {len(short)} token(s) shorter than {API_TOKEN_MIN_LENGTH} "
                "characters; use long random tokens (e.g. `openssl rand -hex 32`)"
            )
        if self.database_owner_user == self.database_user:
            raise ValueError(
                "DATABASE_OWNER_USER must differ from DATABASE_USER (leave it empty to "
                "run the migrations as DATABASE_USER)"
            )
        topics = (self.kafka_topic_events, self.kafka_topic_starts, self.kafka_topic_dead_letter)
        if len(set(topics)) < len(topics):
            raise ValueError(
                "KAFKA_TOPIC_EVENTS, KAFKA_TOPIC_STARTS and KAFKA_TOPIC_DEAD_LETTER must be "
                f"three different topics (got {', '.join(topics)})"
            )
        if self.saga_start_lease_seconds < self.saga_lease_seconds:
            raise ValueError(
                "SAGA_START_LEASE_SECONDS must be at least SAGA_LEASE_SECONDS "
                f"({self.saga_start_lease_seconds:g} < {self.saga_lease_seconds:g})"
            )
        drain = self.shutdown_drain_seconds
        if drain is not None and drain >= self.shutdown_grace_seconds:
            raise ValueError(
                "SHUTDOWN_DRAIN_SECONDS must be less than SHUTDOWN_GRACE_SECONDS "
                f"({drain:g} >= {self.shutdown_grace_seconds:g})"
            )
        return self

    def _tls_settings_agree(self) -> None:
        # A CA file next to TLS that is off means someone expected TLS: connecting in
        # plaintext anyway would send the password in the clear without a word.
        verifying = ("require", "verify-ca", "verify-full")
        if self.database_sslrootcert and self.database_sslmode not in verifying:
            raise ValueError(
                "DATABASE_SSLROOTCERT is set but DATABASE_SSLMODE="
                f"{self.database_sslmode} may connect without TLS; use verify-full"
            )
        if self.redis_tls_ca_file and not self.redis_tls:
            raise ValueError("REDIS_TLS_CA_FILE is set but REDIS_TLS is false")
        if self.kafka_ssl_ca_file and self.kafka_security_protocol not in ("SSL", "SASL_SSL"):
            raise ValueError(
                "KAFKA_SSL_CA_FILE is set but KAFKA_SECURITY_PROTOCOL="
                f"{self.kafka_security_protocol} does not use TLS"
            )
        for name, path in (
            ("DATABASE_SSLROOTCERT", self.database_sslrootcert),
            ("REDIS_TLS_CA_FILE", self.redis_tls_ca_file),
            ("KAFKA_SSL_CA_FILE", self.kafka_ssl_ca_file),
        ):
            if path and path != "system" and not Path(path).is_file():
                raise ValueError(f"{name}: no such file: {path}")

    def write_tokens(self) -> list[str]:
        """API_TOKENS as a list (empty: the write endpoints are open)."""
        raw = self.api_tokens.get_secret_value().replace("\n", ",")
        return [t.strip() for t in raw.split(",") if t.strip()]

    def drain_seconds(self) -> float:
        if self.shutdown_drain_seconds is not None:
            return self.shutdown_drain_seconds
        return min(2.0, self.shutdown_grace_seconds / 4)

    def sentinel_nodes(self) -> list[tuple[str, int]]:
        """Parse REDIS_SENTINEL_NODES (`host:port,host:port`)."""
        nodes: list[tuple[str, int]] = []
        for part in (self.redis_sentinel_nodes or "").split(","):
            part = part.strip()
            if not part:
                continue
            host, _, port = part.rpartition(":")
            if not host:
                host, port = port, "26379"
            nodes.append((host, int(port)))
        return nodes

    def bootstrap_servers(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap_servers.split(",") if s.strip()]


def load_settings() -> Settings:
    """Read the settings from the environment (raises ValidationError naming what is wrong)."""
    return Settings()


# What a running process may change without a restart, by environment name. Each is read
# afresh at every use (a log record, a step, a lock acquisition), so a new value needs no
# new client, pool or task. Left out, although harmless to read twice: SAGA_LEASE_SECONDS
# (the recovery sweep's pace is derived from it at start, and every pod must agree on it to
# take over another's sagas at the right time), SAGA_MAX_ATTEMPTS (not set by the chart),
# MAX_ORDER_ITEMS and MAX_BODY_BYTES (published in /openapi.json and built into the
# middleware), and everything that sizes or connects a client (pools, Kafka, Redis).
RELOADABLE: dict[str, str] = {
    "LOG_LEVEL": "log_level",
    "SAGA_STEP_DELAY_MS": "saga_step_delay_ms",
    "LOCK_TTL_MS": "lock_ttl_ms",
    "LOCK_ACQUIRE_TIMEOUT_MS": "lock_acquire_timeout_ms",
}
_ENV_NAME = {field: name for name, field in RELOADABLE.items()}


class RuntimeConfigError(ValueError):
    """The runtime file cannot be used; `keys` names the settings at fault (empty when the
    file as a whole is: not JSON, not an object, unreadable)."""

    def __init__(self, keys: list[str], problem: str) -> None:
        super().__init__(problem)
        self.keys = keys


def parse_runtime_config(content: bytes) -> dict[str, Any]:
    """The file's settings by field name. Keys are the environment names of RELOADABLE;
    values are strings or numbers, as the environment's strings would be."""
    try:
        data = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RuntimeConfigError([], f"not valid JSON: {exc}") from None
    except RecursionError:
        # json.loads gives up on deep nesting this way; a refusal like any other.
        raise RuntimeConfigError([], "not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise RuntimeConfigError([], "not a JSON object of settings")
    fields: dict[str, Any] = {}
    for key, value in data.items():
        field = RELOADABLE.get(key)
        if field is None:
            if key.upper() in RELOADABLE:
                problem = f"names are the environment's, upper case: {key.upper()}"
            elif key.lower() in Settings.model_fields:
                problem = "not reloadable: set it in the environment (a change needs a restart)"
            else:
                problem = f"unknown setting (reloadable: {', '.join(RELOADABLE)})"
            raise RuntimeConfigError([key], f"{key}: {problem}")
        # JSON true would pass as 1 and null as "unset": neither is what the writer meant.
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise RuntimeConfigError([key], f"{key}: must be a string or a number")
        fields[field] = value
    return fields


def with_runtime_config(base: Settings, content: bytes) -> Settings:
    """`base` (the environment's settings) with the file's on top, checked by the same rules
    as the environment; raises RuntimeConfigError naming the keys at fault."""
    overrides = parse_runtime_config(content)
    try:
        return Settings.model_validate({**base.model_dump(), **overrides})
    except ValidationError as exc:
        keys: list[str] = []
        problems: list[str] = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            key = _ENV_NAME.get(field, field.upper() or "settings")
            keys.append(key)
            problems.append(f"{key}: {error['msg']}")
        raise RuntimeConfigError(keys, "; ".join(problems)) from None


def load_runtime_config(base: Settings) -> tuple[Settings, bytes | None]:
    """The settings in effect at start: `base` with SAGA_RUNTIME_CONFIG's file on top, and
    the content they were built from (None without a file)."""
    if base.saga_runtime_config is None:
        return base, None
    try:
        content = base.saga_runtime_config.read_bytes()
    except OSError as exc:
        raise RuntimeConfigError([], f"SAGA_RUNTIME_CONFIG: {exc}") from None
    return with_runtime_config(base, content), content
