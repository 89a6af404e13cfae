"""Kafka clients built from the contract's settings, and topic creation."""

from __future__ import annotations

import logging
import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from saga_service.settings import Settings

log = logging.getLogger(__name__)


def client_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers(),
        "security_protocol": settings.kafka_security_protocol,
        "client_id": "saga-service",
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context()
    if settings.kafka_security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def make_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        acks="all",
        enable_idempotence=True,
        linger_ms=1,
        request_timeout_ms=10000,
        **client_options(settings),
    )


def make_consumer(settings: Settings) -> AIOKafkaConsumer:
    session = settings.kafka_session_timeout_ms
    # The topic is subscribed by SagaConsumer.run, with its rebalance listener.
    return AIOKafkaConsumer(
        group_id=settings.kafka_consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=session,
        heartbeat_interval_ms=max(100, session // 4),
        max_poll_interval_ms=300000,
        metadata_max_age_ms=30000,
        **client_options(settings),
    )


async def create_topics(settings: Settings) -> list[str]:
    """Create the events and dead-letter topics when missing; return the ones created."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        configs = {"min.insync.replicas": str(settings.kafka_topic_min_insync_replicas)}
        for name in (settings.kafka_topic_events, settings.kafka_topic_dead_letter):
            if name in existing:
                continue
            topic = NewTopic(
                name=name,
                num_partitions=settings.kafka_topic_partitions,
                replication_factor=settings.kafka_topic_replication_factor,
                topic_configs=configs,
            )
            try:
                await admin.create_topics([topic])
                created.append(name)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()
    return created
