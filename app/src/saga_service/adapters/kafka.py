"""Kafka clients built from the contract's settings, and topic creation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.conn import create_conn
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
        # Verifies the chain and the host name (check_hostname is on in this context).
        options["ssl_context"] = ssl.create_default_context(cafile=settings.kafka_ssl_ca_file)
    if settings.kafka_security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


async def connection_problem(settings: Settings, timeout: float = 10.0) -> BaseException | None:
    """Why a connection to the first bootstrap server fails (None: it does not).

    aiokafka's bootstrap error says only "Unable to bootstrap from [...]"; one connection
    made by hand (TLS handshake and SASL included) raises the real cause.
    """
    options = client_options(settings)
    host, _, port = options.pop("bootstrap_servers")[0].rpartition(":")
    try:
        async with asyncio.timeout(timeout):
            conn = await create_conn(
                host or "localhost",
                int(port),
                client_id=options.pop("client_id"),
                request_timeout_ms=int(timeout * 1000),
                **options,
            )
    except Exception as exc:
        return exc
    conn.close()
    return None


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
    """Create the events, starts and dead-letter topics when missing, and give an existing one the
    partitions it lacks; return what was done, one line per topic changed.

    An existing topic can have too few partitions when a client touched it before this ran
    and the broker auto-created it with its default (1): every consumer but one would then
    sit idle however far the app scales out. Partitions can only be added (keys then map
    to new partitions for new messages; a saga has one event pending at a time, so its
    order holds). A replication factor below the setting is reported, not changed: that
    needs a partition reassignment.
    """
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    done: list[str] = []
    try:
        existing = {t["topic"]: t for t in await admin.describe_topics() if not t["error_code"]}
        configs = {"min.insync.replicas": str(settings.kafka_topic_min_insync_replicas)}
        wanted = settings.kafka_topic_partitions
        names = (
            settings.kafka_topic_events,
            settings.kafka_topic_starts,
            settings.kafka_topic_dead_letter,
        )
        for name in names:
            topic = existing.get(name)
            if topic is None:
                new = NewTopic(
                    name=name,
                    num_partitions=wanted,
                    replication_factor=settings.kafka_topic_replication_factor,
                    topic_configs=configs,
                )
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics([new])
                    done.append(f"{name}: created with {wanted} partitions")
                continue
            partitions = topic["partitions"]
            if len(partitions) < wanted:
                await admin.create_partitions({name: NewPartitions(total_count=wanted)})
                done.append(f"{name}: partitions {len(partitions)} -> {wanted}")
            replicas = min((len(p["replicas"]) for p in partitions), default=0)
            if replicas < settings.kafka_topic_replication_factor:
                log.warning(
                    "topic has fewer replicas than configured; reassign its partitions",
                    extra={
                        "topic": name,
                        "replicas": replicas,
                        "wanted": settings.kafka_topic_replication_factor,
                    },
                )
    finally:
        await admin.close()
    return done
