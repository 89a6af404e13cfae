"""Runs inside the cluster, in a pod with the app's image and environment, and measures
what a client of the data layer sees: it takes and releases a Redis lock (the app's own
LockService, through Sentinel when the release uses it) and produces to a Kafka topic
(the app's producer settings: acks=all, idempotent) on a fixed period, printing one
JSON line per attempt: {"kind", "start", "end", "ok", "error"} with wall-clock seconds.

`--master` prints the Redis master's address as the Sentinels name it, and exits.

Fed to `python3 -` on stdin, so it needs only what the app image has.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from redis.sentinel import Sentinel
from saga_service.adapters.kafka import client_options, make_producer
from saga_service.adapters.lock import LockService, make_redis
from saga_service.settings import Settings, load_settings

# tests/e2e/ha/conftest.py grants the app's Kafka user this topic.
PROBE_TOPIC = "e2e.probe"
PROBE_PARTITIONS = 3
PROBE_SKU = "e2e-probe"


def emit(kind: str, start: float, ok: bool, error: str = "") -> None:
    line = {"kind": kind, "start": start, "end": time.time(), "ok": ok, "error": error}
    print(json.dumps(line), flush=True)


async def lock_loop(settings: Settings, until: float, period: float) -> None:
    locks = LockService(make_redis(settings), ttl_ms=2000, acquire_timeout_ms=1000)
    while time.time() < until:
        start = time.time()
        try:
            lease = await asyncio.wait_for(locks.try_acquire(PROBE_SKU), timeout=3)
            if lease is not None:
                await locks.release(lease)
            emit("lock", start, lease is not None, "" if lease else "held")
        except Exception as exc:  # the probe reports every failure kind, it never stops
            emit("lock", start, False, type(exc).__name__)
        await asyncio.sleep(max(0.0, period - (time.time() - start)))


async def ensure_probe_topic(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        replicas = settings.kafka_topic_replication_factor
        topic = NewTopic(
            PROBE_TOPIC,
            num_partitions=PROBE_PARTITIONS,
            replication_factor=replicas,
            topic_configs={"min.insync.replicas": str(settings.kafka_topic_min_insync_replicas)},
        )
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([topic])
    finally:
        await admin.close()


async def produce_loop(settings: Settings, until: float, period: float) -> set[int]:
    """Produces a sequence number per period; returns the numbers Kafka acknowledged."""
    await ensure_probe_topic(settings)
    producer = make_producer(settings)
    await producer.start()
    sequence = 0
    acknowledged: set[int] = set()
    try:
        while time.time() < until:
            start = time.time()
            sequence += 1
            try:
                await asyncio.wait_for(
                    producer.send_and_wait(PROBE_TOPIC, str(sequence).encode()), timeout=15
                )
                acknowledged.add(sequence)
                emit("produce", start, True)
            except Exception as exc:  # reported, and the loop goes on
                emit("produce", start, False, type(exc).__name__)
            await asyncio.sleep(max(0.0, period - (time.time() - start)))
    finally:
        await producer.stop()
    return acknowledged


async def read_back(settings: Settings, acknowledged: set[int]) -> None:
    """Reads the probe topic from the start: an acknowledged number missing is a lost write."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **client_options(settings))
    await consumer.start()
    try:
        partitions = [TopicPartition(PROBE_TOPIC, p) for p in range(PROBE_PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        seen: set[int] = set()

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in partitions])

        while await behind():
            batches = await consumer.getmany(*partitions, timeout_ms=1000)
            for records in batches.values():
                seen.update(int(r.value or b"0") for r in records)
    finally:
        await consumer.stop()
    line = {"kind": "read-back", "acknowledged": len(acknowledged), "read": len(seen)}
    print(json.dumps({**line, "missing": sorted(acknowledged - seen)}), flush=True)


def print_master(settings: Settings) -> None:
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        settings.sentinel_nodes(),
        sentinel_kwargs={
            "username": settings.redis_sentinel_username or None,
            "password": settings.redis_sentinel_password.get_secret_value() or None,
        },
        socket_timeout=2,
    )
    master = settings.redis_sentinel_master
    host, port = sentinel.discover_master(master)  # type: ignore[no-untyped-call]
    print(json.dumps({"host": host, "port": port}), flush=True)


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--period", type=float, default=0.1)
    parser.add_argument("--master", action="store_true")
    parser.add_argument("--only", choices=["lock", "produce"])
    parser.add_argument("--read-back", action="store_true", help="check acknowledged writes")
    args = parser.parse_args(argv)
    settings = load_settings()
    if args.master:
        print_master(settings)
        return 0
    until = time.time() + args.seconds
    locks = lock_loop(settings, until, args.period) if args.only != "produce" else None
    produced = produce_loop(settings, until, args.period) if args.only != "lock" else None
    results = await asyncio.gather(*(loop for loop in (locks, produced) if loop is not None))
    acknowledged = results[-1]
    if args.read_back and isinstance(acknowledged, set):
        await read_back(settings, acknowledged)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
