"""Runs inside the cluster, in a pod with the app's image, and tries the bundled Kafka's
doors as one client: produce to a topic, read it (a partition assigned by hand), read a
consumer group's offsets, the ones it is asked for. Prints one JSON object: each attempt's outcome,
"ok" or "refused: <error class>".

Run as `python3 -c <this file> + a call of main(...)`, so it needs only the app image.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

# Long enough for a broker that answers; an attempt that gets no answer at all is refused.
ATTEMPT_SECONDS = 20.0


def client_options(bootstrap: str, user: str, password: str) -> dict[str, Any]:
    options: dict[str, Any] = {"bootstrap_servers": bootstrap, "request_timeout_ms": 5000}
    if user:
        options.update(
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_plain_username=user,
            sasl_plain_password=password,
        )
    return options


async def produce(options: dict[str, Any], topic: str, group: str) -> None:
    producer = AIOKafkaProducer(**options)
    try:
        await producer.start()
        forged = {"type": "PaymentCharged", "saga_id": str(uuid.uuid4()), "forged": True}
        await producer.send_and_wait(topic, json.dumps(forged).encode())
    finally:
        await producer.stop()


class TopicNotVisible(Exception):
    """The broker leaves a topic this user may not describe out of its metadata."""


async def read(options: dict[str, Any], topic: str, group: str) -> None:
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **options)
    try:
        await consumer.start()
        if topic not in await consumer.topics():
            raise TopicNotVisible(topic)
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        await consumer.getmany(partition, timeout_ms=2000)
        await consumer.end_offsets([partition])
    finally:
        await consumer.stop()


async def group(options: dict[str, Any], topic: str, group: str) -> None:
    """The group's committed offset of the topic's first partition: the coordinator lookup
    and the offset fetch need the group's ACLs, and nothing joins the group (the app's
    consumers are not disturbed)."""
    consumer = AIOKafkaConsumer(group_id=group, enable_auto_commit=False, **options)
    try:
        await consumer.start()
        await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()


async def attempt(
    action: Callable[[dict[str, Any], str, str], Awaitable[None]],
    options: dict[str, Any],
    topic: str,
    group: str,
) -> str:
    try:
        await asyncio.wait_for(action(options, topic, group), ATTEMPT_SECONDS)
    except Exception as exc:  # the error's class is the finding
        return f"refused: {type(exc).__name__}"
    return "ok"


ACTIONS = {"produce": produce, "read": read, "group": group}


async def main(
    bootstrap: str, user: str, password: str, topic: str, group: str, actions: list[str]
) -> None:
    options = client_options(bootstrap, user, password)
    outcome = {name: await attempt(ACTIONS[name], options, topic, group) for name in actions}
    print(json.dumps(outcome), flush=True)
