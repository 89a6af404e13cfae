"""Configuration from the environment only (names are part of the app contract)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service; see docs/app-contract.md for the meaning of each."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    port: int = Field(8080, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    database_host: str
    database_port: int = 5432
    database_name: str = "saga"
    database_user: str = "saga"
    database_password: SecretStr
    database_sslmode: str = "prefer"
    database_pool_size: int = Field(10, ge=2, le=200)

    redis_mode: Literal["standalone", "sentinel"] = "standalone"
    redis_host: str | None = None
    redis_port: int = 6379
    redis_password: SecretStr = SecretStr("")
    redis_tls: bool = False
    redis_sentinel_nodes: str | None = None
    redis_sentinel_master: str = "mymaster"
    redis_sentinel_password: SecretStr = SecretStr("")

    kafka_bootstrap_servers: str
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_topic_events: str = "saga.events"
    kafka_topic_dead_letter: str = "saga.events.dlq"
    kafka_consumer_group: str = "saga-service"
    kafka_topic_partitions: int = Field(6, ge=1)
    kafka_topic_replication_factor: int = Field(1, ge=1)
    kafka_topic_min_insync_replicas: int = Field(1, ge=1)
    kafka_session_timeout_ms: int = Field(10000, ge=1000)

    lock_ttl_ms: int = Field(5000, ge=50)
    lock_acquire_timeout_ms: int = Field(10000, ge=10)
    saga_lease_seconds: float = Field(30.0, gt=0)
    saga_max_attempts: int = Field(5, ge=1)
    saga_step_delay_ms: int = Field(0, ge=0)
    shutdown_grace_seconds: float = Field(20.0, gt=0)
    # Seconds after SIGTERM that HTTP keeps serving, every answer with `Connection: close`:
    # keep-alive clients (a ClusterIP's conntrack pins them to this pod after the endpoint
    # is gone) move to another pod on their next request instead of meeting a closed socket.
    # Unset: 2 s, or a quarter of a shorter grace period.
    shutdown_drain_seconds: float | None = Field(None, ge=0)
    max_body_bytes: int = Field(65536, ge=1024)
    max_order_items: int = Field(50, ge=1)

    @model_validator(mode="after")
    def _redis_mode_needs(self) -> Settings:
        if self.redis_mode == "standalone" and not self.redis_host:
            raise ValueError("REDIS_HOST is required when REDIS_MODE=standalone")
        if self.redis_mode == "sentinel" and not self.redis_sentinel_nodes:
            raise ValueError("REDIS_SENTINEL_NODES is required when REDIS_MODE=sentinel")
        drain = self.shutdown_drain_seconds
        if drain is not None and drain >= self.shutdown_grace_seconds:
            raise ValueError(
                "SHUTDOWN_DRAIN_SECONDS must be less than SHUTDOWN_GRACE_SECONDS "
                f"({drain:g} >= {self.shutdown_grace_seconds:g})"
            )
        return self

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
