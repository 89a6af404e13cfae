"""Redis lock per SKU with a fencing token.

Acquire is one Lua call: `SET lock NX PX ttl` and, only when that succeeded, `INCR fence`.
The token goes with every stock write, and Postgres accepts the write only when the token
is newer than the last one stored for the SKU (see postgres/commands.fence_stock). A holder
that pauses past its TTL (GC, SIGSTOP, a slow node) finds its token stale and cannot write.

Release is compare-and-delete, so a holder never deletes a lock someone else now holds.
After a Sentinel failover the fence counter may come back older than Postgres's token;
`raise_floor` lifts it past the stored token so the lock service recovers by itself.
Works with a single Redis and with Sentinel (master discovery through redis.asyncio).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from saga_service.observability import metrics
from saga_service.settings import Settings

log = logging.getLogger(__name__)

_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_RAISE_FLOOR = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if current < floor then
  redis.call('SET', KEYS[1], ARGV[1])
  return floor
end
return current
"""


class LockUnavailable(Exception):
    """The locks could not be had in time (contention or Redis unreachable)."""


@dataclass(frozen=True, slots=True)
class Lease:
    sku: str
    owner: str
    token: int


def lock_key(sku: str) -> str:
    # The hash tag keeps both keys of a SKU in one slot (Redis Cluster-safe Lua).
    return f"saga:lock:{{{sku}}}"


def fence_key(sku: str) -> str:
    return f"saga:fence:{{{sku}}}"


def tls_options(settings: Settings) -> dict[str, Any]:
    """redis-py's TLS options: the chain and the host name are verified (its defaults,
    stated here so that no upgrade loosens them), against the CA file when one is set."""
    if not settings.redis_tls:
        return {}
    return {
        "ssl": True,
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "ssl_ca_certs": settings.redis_tls_ca_file,
    }


def make_redis(
    settings: Settings,
    *,
    decode_responses: bool = False,
    socket_timeout: float = 2.0,
    retry: bool = True,
) -> Redis:
    """A client for the current master: direct, or discovered through Sentinel.

    `retry=False` is for the readiness probe: redis-py retries a refused password or
    certificate (they are ConnectionErrors) for seconds, past the probe's timeout, so
    the probe would report "timeout" instead of the cause.
    """
    password = settings.redis_password.get_secret_value() or None
    common: dict[str, Any] = {
        "username": settings.redis_username or None,
        "password": password,
        "decode_responses": decode_responses,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 2.0,
        "health_check_interval": 15,
    }
    if not retry:
        common["retry"] = Retry(NoBackoff(), 0)
    if settings.redis_mode == "sentinel":
        sentinel_password = settings.redis_sentinel_password.get_secret_value() or None
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            settings.sentinel_nodes(),
            sentinel_kwargs={
                "username": settings.redis_sentinel_username or None,
                "password": sentinel_password,
                "socket_timeout": 1.0,
                "socket_connect_timeout": 1.0,
                **tls_options(settings),
            },
            **tls_options(settings),
            **common,
        )
        client: Redis = sentinel.master_for(settings.redis_sentinel_master)
        return client
    return Redis(
        host=settings.redis_host or "localhost",
        port=settings.redis_port,
        **tls_options(settings),
        **common,
    )


class LockService:
    def __init__(self, redis: Redis, *, ttl_ms: int, acquire_timeout_ms: int) -> None:
        self.redis = redis
        self.ttl_ms = ttl_ms
        self.acquire_timeout = acquire_timeout_ms / 1000.0
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)
        self._raise_floor = redis.register_script(_RAISE_FLOOR)
        self._held: set[Lease] = set()

    def configure(self, *, ttl_ms: int, acquire_timeout_ms: int) -> None:
        """New timings for the locks taken from now on; locks held keep their TTL."""
        self.ttl_ms = ttl_ms
        self.acquire_timeout = acquire_timeout_ms / 1000.0

    async def try_acquire(self, sku: str) -> Lease | None:
        owner = secrets.token_hex(12)
        token = int(
            await self._acquire(keys=[lock_key(sku), fence_key(sku)], args=[owner, self.ttl_ms])
        )
        if token == 0:
            return None
        lease = Lease(sku, owner, token)
        self._held.add(lease)
        return lease

    async def acquire(self, sku: str, deadline: float) -> Lease:
        delay = 0.001
        last_error: Exception | None = None
        while True:
            try:
                lease = await self.try_acquire(sku)
                if lease is not None:
                    return lease
            except (RedisError, OSError) as exc:
                last_error = exc
                log.warning(
                    "redis error while acquiring lock", extra={"sku": sku, "error": repr(exc)}
                )
            if time.monotonic() >= deadline:
                reason = "redis_error" if last_error else "timeout"
                metrics.LOCK_ACQUIRE_FAILURES.labels(reason).inc()
                raise LockUnavailable(f"lock for {sku} not acquired ({reason}: {last_error})")
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.05 if last_error is None else 0.5)

    async def release(self, lease: Lease) -> bool:
        self._held.discard(lease)
        try:
            return bool(await self._release(keys=[lock_key(lease.sku)], args=[lease.owner]))
        except (RedisError, OSError) as exc:
            # The TTL frees it anyway; the fencing token protects the data meanwhile.
            log.warning("lock release failed", extra={"sku": lease.sku, "error": repr(exc)})
            return False

    async def raise_floor(self, sku: str, floor: int) -> int:
        """Make the next token for `sku` larger than `floor` (recovery after failover)."""
        return int(await self._raise_floor(keys=[fence_key(sku)], args=[floor]))

    @contextlib.asynccontextmanager
    async def hold(self, skus: list[str]) -> AsyncIterator[dict[str, int]]:
        """Hold the locks of `skus` (taken in sorted order, so no deadlock); yield tokens."""
        started = time.monotonic()
        deadline = started + self.acquire_timeout
        leases: list[Lease] = []
        try:
            for sku in sorted(set(skus)):
                leases.append(await self.acquire(sku, deadline))
            acquired = time.monotonic()
            metrics.LOCK_WAIT.observe(acquired - started)
            yield {lease.sku: lease.token for lease in leases}
        finally:
            if leases and len(leases) == len(set(skus)):
                metrics.LOCK_HOLD.observe(time.monotonic() - acquired)
            for lease in reversed(leases):
                await self.release(lease)

    async def release_all(self) -> None:
        """Release every lock this process still holds (shutdown)."""
        for lease in list(self._held):
            await self.release(lease)

    async def ping(self) -> bool:
        return bool(await self.redis.ping())
