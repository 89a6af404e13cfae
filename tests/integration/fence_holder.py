"""A lock holder in its own process, for the fencing test (the test SIGSTOPs it).

    python -m tests.integration.fence_holder SKU

Environment: the app contract's DATABASE_* and REDIS_* variables, LOCK_TTL_MS.
Takes the Redis lock of SKU through saga_service.adapters.lock and prints ``LOCKED <token>``;
then, for each line on stdin: ``write`` tries to reserve one unit of SKU in Postgres with
that token and prints ``WROTE`` or ``REJECTED``; ``release`` prints ``RELEASED <0|1>``
(compare-and-delete); ``quit`` exits.
"""

from __future__ import annotations

import asyncio
import sys
import time

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from saga_service.adapters.lock import LockService, make_redis
from saga_service.adapters.postgres import commands
from saga_service.adapters.postgres.db import make_conninfo
from saga_service.settings import load_settings


async def main(sku: str) -> int:
    settings = load_settings()
    redis = make_redis(settings)
    locks = LockService(redis, ttl_ms=settings.lock_ttl_ms, acquire_timeout_ms=5000)
    lease = await locks.acquire(sku, time.monotonic() + 5)
    print(f"LOCKED {lease.token}", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line in ("", "quit"):
            break
        if line == "write":
            conn = await AsyncConnection.connect(make_conninfo(settings), row_factory=dict_row)
            try:
                async with conn.transaction():
                    level = await commands.fence_stock(conn, sku, lease.token)
                    assert level is not None
                    await commands.apply(conn, commands.stock_level(level.reserve(1)))
                print("WROTE", flush=True)
            except commands.FencingRejected:
                print("REJECTED", flush=True)
            finally:
                await conn.close()
        elif line == "release":
            print(f"RELEASED {int(await locks.release(lease))}", flush=True)
    await redis.aclose()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
