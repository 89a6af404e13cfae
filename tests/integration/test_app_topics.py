"""`saga-service create-topics` on a real broker: it creates the app's topics with the
partitions asked for, and gives an existing topic the partitions it lacks (a broker's
auto-creation makes one partition, which leaves every consumer but one idle)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.integration import app_processes, services
from tests.integration.app_processes import AppStack, StackFactory

pytestmark = pytest.mark.timeout(300)

# Fixtures of app_processes, made visible to this module.
app_stack_factory = app_processes.app_stack_factory


def partition_counts(stack: AppStack, kafka: services.KafkaInstance) -> dict[str, int]:
    async def describe() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
        await admin.start()
        try:
            topics = await admin.describe_topics(
                [stack.topic, stack.starts_topic, stack.dead_letter_topic]
            )
        finally:
            await admin.close()
        return {t["topic"]: len(t["partitions"]) for t in topics}

    return asyncio.run(describe())


def test_create_topics_adds_the_partitions_an_existing_topic_lacks(
    app_stack_factory: StackFactory,
    redis: services.RedisInstance,
    kafka: services.KafkaInstance,
) -> None:
    # as if a client had made the topics first, with a broker's default of one partition
    stack = app_stack_factory(redis.env(), KAFKA_TOPIC_PARTITIONS="1")
    assert partition_counts(stack, kafka) == {
        stack.topic: 1,
        stack.starts_topic: 1,
        stack.dead_letter_topic: 1,
    }

    stack.env["KAFKA_TOPIC_PARTITIONS"] = "6"
    first = stack.run_command("create-topics")
    assert partition_counts(stack, kafka) == {
        stack.topic: 6,
        stack.starts_topic: 6,
        stack.dead_letter_topic: 6,
    }
    assert "partitions 1 -> 6" in first.stdout + first.stderr

    again = stack.run_command("create-topics")  # idempotent
    assert '"topics_changed": "none"' in again.stdout + again.stderr
    assert partition_counts(stack, kafka) == {
        stack.topic: 6,
        stack.starts_topic: 6,
        stack.dead_letter_topic: 6,
    }
