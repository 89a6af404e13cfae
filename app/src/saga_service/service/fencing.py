"""What a fenced stock write does when PostgreSQL refuses its token: the lock's token floor
is lifted to the token stored with the stock row, so the next lock hands out a higher one."""

from __future__ import annotations

import asyncio
import logging

from saga_service.adapters.lock import LockService
from saga_service.adapters.postgres import commands
from saga_service.adapters.postgres.commands import FencingRejected
from saga_service.adapters.postgres.db import Pool
from saga_service.observability import metrics

log = logging.getLogger(__name__)

# attempts of one stock write (each under a new lock) before it gives up
FENCING_RETRIES = 5


async def lift_token_floor(
    pool: Pool, locks: LockService, exc: FencingRejected, attempt: int
) -> None:
    metrics.LOCK_FENCING_REJECTIONS.inc()
    log.warning(
        "stock write fenced off; lifting the token floor and retrying",
        extra={"sku": exc.sku, "token": exc.token, "attempt": attempt + 1},
    )
    async with pool.connection() as conn:
        stored = await commands.stock_fence_token(conn, exc.sku)
    await locks.raise_floor(exc.sku, stored)
    await asyncio.sleep(0.01 * (attempt + 1))
