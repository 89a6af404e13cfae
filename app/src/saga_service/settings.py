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
    max_body_bytes: int = Field(65536, ge=1024)
    max_order_items: int = Field(50, ge=1)

    # Background jobs (docs/app-contract.md, "Background jobs").
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
        return self

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
