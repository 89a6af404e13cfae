"""Runs inside the cluster, in a pod with the app's image, and tries the bundled Redis's
doors as one client: a key under the app's prefix, a key outside it, and the administrator's
commands KEYS, CONFIG GET and FLUSHALL (refused before they run, so they cost nothing when
the ACL holds). Prints one JSON object: each attempt's outcome, "ok" or "refused: <error>".

Run as `python3 -c <this file> + a call of main(...)`, so it needs only the app image.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

APP_KEY = "saga:e2e-access:"
FOREIGN_KEY = "e2e-forged:"


def attempts(client: Redis) -> dict[str, Callable[[], Any]]:
    token = uuid.uuid4().hex
    return {
        "own-key": lambda: client.set(APP_KEY + token, "1", px=60_000),
        "other-key": lambda: client.set(FOREIGN_KEY + token, "1", px=60_000),
        "keys": lambda: client.keys("*"),
        "config-get": lambda: client.config_get("maxmemory"),
        "flushall": lambda: client.flushall(),
    }


def main(host: str, port: int, user: str, password: str, wanted: list[str]) -> None:
    client = Redis(
        host=host,
        port=port,
        username=user or None,
        password=password or None,
        socket_timeout=5,
        socket_connect_timeout=5,
    )
    outcome: dict[str, str] = {}
    try:
        for name, attempt in attempts(client).items():
            if name not in wanted:
                continue
            try:
                attempt()
                outcome[name] = "ok"
            except RedisError as error:
                outcome[name] = f"refused: {type(error).__name__}"
    finally:
        client.close()
    print(json.dumps(outcome), flush=True)
