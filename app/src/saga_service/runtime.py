"""Wires the service together: Postgres pool, Redis locks, Kafka clients, and the
background loops (outbox relay, job relay, consumer, recovery sweep); owns the shutdown
sequence."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from psycopg_pool import PoolTimeout
from redis.exceptions import TimeoutError as RedisTimeout

from saga_service.adapters import kafka
from saga_service.adapters.diagnosis import (
    MISCONFIGURED,
    Diagnosed,
    Diagnosis,
    ServerWithoutTLS,
    answers_plaintext_redis,
    diagnose,
)
from saga_service.adapters.job_queue import JobQueue, JobRelay
from saga_service.adapters.lock import LockService, make_redis
from saga_service.adapters.outbox import OutboxRelay
from saga_service.adapters.postgres.db import Pool, connection_problem, open_pool
from saga_service.entrypoints.consumer import SagaConsumer
from saga_service.observability import logs, metrics
from saga_service.observability.tasks import BackgroundTasks
from saga_service.reloader import RuntimeConfigWatcher, export_metrics, setting_values
from saga_service.service.commands import OrderCommands
from saga_service.service.orchestrator import SagaExecutor
from saga_service.service.recovery import RecoverySweeper
from saga_service.settings import Settings

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 2.0


def instance_id() -> str:
    host = os.environ.get("HOSTNAME") or socket.gethostname()
    return f"{host}-{os.getpid()}-{secrets.token_hex(2)}"


class Runtime(BackgroundTasks):
    def __init__(
        self,
        settings: Settings,
        *,
        environment: Settings | None = None,
        runtime_config: bytes | None = None,
    ) -> None:
        """`settings` are in effect; with SAGA_RUNTIME_CONFIG they are `environment`'s with
        the file's `runtime_config` content on top, and the file is watched while serving."""
        self.settings = settings
        self.instance_id = instance_id()
        self.stopping = asyncio.Event()
        self.shutting_down = False
        self.pool: Pool | None = None
        self.producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.relay: OutboxRelay | None = None
        self.redis = make_redis(settings)
        self._redis_probe = make_redis(settings, retry=False)
        self.locks = LockService(
            self.redis,
            ttl_ms=settings.lock_ttl_ms,
            acquire_timeout_ms=settings.lock_acquire_timeout_ms,
        )
        self._tasks: list[asyncio.Task[Any]] = []
        self.dead_tasks: list[str] = []
        self._dependency_up: dict[str, bool] = {}
        self._dependency_misconfigured: dict[str, bool] = {}
        self.kafka_problem: Diagnosis | None = None
        self._executor: SagaExecutor | None = None
        self._commands: OrderCommands | None = None
        self.config_watcher: RuntimeConfigWatcher | None = None
        if settings.saga_runtime_config is not None:
            self.config_watcher = RuntimeConfigWatcher(
                settings.saga_runtime_config,
                base=environment or settings,
                current=settings,
                content=runtime_config,
                apply=self.apply_settings,
            )
        export_metrics(settings)
        self.job_queue = JobQueue(settings)
        self.job_relay: JobRelay | None = None

    @property
    def executor(self) -> SagaExecutor:
        assert self._executor is not None, "runtime not started"
        return self._executor

    @property
    def commands(self) -> OrderCommands:
        assert self._commands is not None, "runtime not started"
        return self._commands

    async def start(self) -> None:
        self.pool = await open_pool(self.settings)
        self._executor = SagaExecutor(
            self.pool,
            self.locks,
            instance_id=self.instance_id,
            consumer_name=self.settings.kafka_consumer_group,
            lease_seconds=self.settings.saga_lease_seconds,
            step_delay_ms=self.settings.saga_step_delay_ms,
            jobs_enabled=self.settings.jobs_enabled,
            on_outbox_write=self._notify_relay,
            on_job_write=self._notify_job_relay,
        )
        self._commands = OrderCommands(
            self.pool,
            self.locks,
            instance_id=self.instance_id,
            max_items=self.settings.max_order_items,
            start_lease_seconds=self.settings.saga_start_lease_seconds,
            on_outbox_write=self._notify_relay,
        )
        sweeper = RecoverySweeper(
            self.pool,
            self._executor,
            instance_id=self.instance_id,
            lease_seconds=self.settings.saga_lease_seconds,
            max_attempts=self.settings.saga_max_attempts,
        )
        self._spawn(sweeper.run(self.stopping), "recovery")
        if self.config_watcher is not None:
            self._spawn(self.config_watcher.run(self.stopping), "runtime-config")
        if self.settings.jobs_enabled:
            self.job_relay = JobRelay(self.pool, self.job_queue)
            self._spawn(self.job_relay.run(self.stopping), "job-relay")
        self._spawn(self._kafka_supervisor(), "kafka")
        log.info("runtime started", extra={"instance": self.instance_id})

    def apply_settings(self, new: Settings) -> None:
        """Put new values of the RELOADABLE settings into effect (the rest of `new` equals
        the settings in effect: only the runtime file changes, and it holds only those)."""
        self.settings = new
        logs.set_level(new.log_level)
        self.locks.configure(ttl_ms=new.lock_ttl_ms, acquire_timeout_ms=new.lock_acquire_timeout_ms)
        if self._executor is not None:
            self._executor.step_delay = new.saga_step_delay_ms / 1000.0

    def describe_config(self) -> dict[str, Any]:
        """What GET /config answers: the reloadable settings in effect and their sources."""
        watcher = self.config_watcher
        values = setting_values(self.settings)
        if watcher is None:
            fields = self.settings.model_fields_set
            sources = {
                name: "environment" if name.lower() in fields else "default" for name in values
            }
        else:
            sources = watcher.sources()
        return {
            "settings": values,
            "sources": sources,
            "file": watcher.describe() if watcher is not None else None,
        }

    def _notify_relay(self) -> None:
        if self.relay is not None:
            self.relay.notify()

    def _notify_job_relay(self) -> None:
        if self.job_relay is not None:
            self.job_relay.notify()

    async def _kafka_supervisor(self) -> None:
        """Connect to Kafka (retrying while it is away), then run relay and consumer."""
        delay = 0.5
        while not self.stopping.is_set():
            producer = kafka.make_producer(self.settings)
            consumer = kafka.make_consumer(self.settings)
            try:
                await producer.start()
                await consumer.start()
                break
            except Exception as exc:
                await _quietly(producer.stop())
                await _quietly(consumer.stop())
                cause = await kafka.connection_problem(self.settings, timeout=5.0)
                self.kafka_problem = diagnose(
                    cause or exc, tls_handshake=cause is not None and self._kafka_tls
                )
                if self.kafka_problem.misconfigured:
                    log.error("kafka misconfigured", extra={"error": str(self.kafka_problem)})
                else:
                    log.warning("kafka not reachable yet", extra={"error": str(self.kafka_problem)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=delay)
                delay = min(delay * 2, 10.0)
        else:
            return
        self.kafka_problem = None
        self.producer, self.consumer = producer, consumer
        assert self.pool is not None
        self.relay = OutboxRelay(
            self.pool,
            producer,
            events_topic=self.settings.kafka_topic_events,
            starts_topic=self.settings.kafka_topic_starts,
        )
        saga_consumer = SagaConsumer(
            consumer,
            producer,
            self.executor,
            events_topic=self.settings.kafka_topic_events,
            starts_topic=self.settings.kafka_topic_starts,
            dead_letter_topic=self.settings.kafka_topic_dead_letter,
            group=self.settings.kafka_consumer_group,
            concurrency=max(1, self.settings.database_pool_size - 2),
        )
        self._spawn(self.relay.run(self.stopping), "outbox-relay")
        self._spawn(saga_consumer.run(self.stopping), "consumer")

    # --- health -------------------------------------------------------------------------

    @property
    def _kafka_tls(self) -> bool:
        return self.settings.kafka_security_protocol in ("SSL", "SASL_SSL")

    async def check_dependencies(self) -> dict[str, str]:
        """'ok' or the reason, per dependency; a misconfiguration's reason begins with
        'misconfigured: ' and names it (see adapters/diagnosis.py)."""
        results = await asyncio.gather(
            self._probe(self._check_postgres()),
            self._probe(self._check_redis()),
            self._probe(self._check_kafka()),
        )
        checks = dict(zip(("postgres", "redis", "kafka"), results, strict=True))
        for name, result in checks.items():
            up = result == "ok"
            misconfigured = result.startswith(MISCONFIGURED)
            if misconfigured and not self._dependency_misconfigured.get(name, False):
                # Waiting will not fix it: said at ERROR, with what to change.
                log.error("dependency misconfigured", extra={"dependency": name, "result": result})
            self._dependency_misconfigured[name] = misconfigured
            if misconfigured:
                self._dependency_up[name] = False
                metrics.DEPENDENCY_UP.labels(name).set(0)
                continue
            if self._dependency_up.get(name, True) != up:
                level = logging.INFO if up else logging.WARNING
                log.log(
                    level,
                    "dependency %s",
                    "back" if up else "lost",
                    extra={"dependency": name, "result": result},
                )
            self._dependency_up[name] = up
            metrics.DEPENDENCY_UP.labels(name).set(1 if up else 0)
        return checks

    async def _probe(self, coro: Any) -> str:
        try:
            await asyncio.wait_for(coro, PROBE_TIMEOUT)
            return "ok"
        except TimeoutError:
            return "timeout"
        except Exception as exc:
            return str(diagnose(exc))[:400]

    async def _check_postgres(self) -> None:
        assert self.pool is not None
        try:
            async with self.pool.connection(timeout=PROBE_TIMEOUT / 2) as conn:
                await conn.execute("SELECT 1")
        except PoolTimeout:
            # The pool says only that it waited; one connection made here says why (a
            # password, a certificate, a server without TLS) when connecting fails. When it
            # connects, the server answers and the pool is only busy: that is load, and
            # taking the pod out of the Service for it would only push the load elsewhere.
            problem = await connection_problem(self.settings, timeout=PROBE_TIMEOUT / 2)
            if problem is not None:
                raise problem from None

    async def _check_redis(self) -> None:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT * 0.6):
                if not await self._redis_probe.ping():
                    raise RuntimeError("no PONG")
        except (TimeoutError, RedisTimeout) as exc:
            # A TLS handshake with a plaintext Redis gets no answer, only this timeout.
            settings = self.settings
            if (
                settings.redis_tls
                and settings.redis_mode == "standalone"
                and await answers_plaintext_redis(
                    settings.redis_host or "localhost",
                    settings.redis_port,
                    timeout=PROBE_TIMEOUT * 0.3,
                )
            ):
                raise ServerWithoutTLS(
                    f"{settings.redis_host}:{settings.redis_port} answered a plaintext PING "
                    "and nothing to a TLS handshake"
                ) from exc
            raise

    async def _check_kafka(self) -> None:
        if self.producer is None or self.consumer is None:
            if self.kafka_problem is not None:
                raise Diagnosed(self.kafka_problem)
            raise RuntimeError("not connected yet")
        metadata = await self.producer.client.fetch_all_metadata()
        if not metadata.brokers():
            raise RuntimeError("no brokers in metadata")

    # --- shutdown -----------------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """Readiness goes false at once; intake stops (HTTP is closed by the server)."""
        if not self.shutting_down:
            log.info("shutdown requested")
        self.shutting_down = True

    async def stop(self, timeout: float) -> None:
        """Finish or hand back in-flight work within `timeout` seconds."""
        self.shutting_down = True
        self.stopping.set()
        _, pending = await asyncio.wait(self._tasks, timeout=max(0.1, timeout * 0.6))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        # Leaving the group hands our partitions to the survivors right away.
        if self.consumer is not None:
            await _quietly(asyncio.wait_for(self.consumer.stop(), timeout * 0.2))
        if self.producer is not None:
            await _quietly(asyncio.wait_for(self.producer.stop(), timeout * 0.1))
        await _quietly(self.locks.release_all())
        await _quietly(self.redis.aclose())
        await _quietly(self.job_queue.close())
        await _quietly(self._redis_probe.aclose())
        if self.pool is not None:
            await _quietly(self.pool.close(timeout=1.0))
        log.info("runtime stopped")


async def _quietly(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception as exc:
        log.debug("ignored during cleanup", extra={"error": repr(exc)})
