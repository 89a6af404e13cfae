"""The HTTP client the e2e tests run inside the cluster, prepended to each test's snippet
(`tests.e2e.cluster.in_cluster`): the standard library only, so it runs in any image with
python3, and one new connection per request, so the Service spreads them over the pods.

`in_cluster` sets BASE after this file and before the test's snippet.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

BASE = ""  # the app Service's URL
TOKEN = ""  # a bearer token for the writes, when the release has apiAuth on


def call(method: str, path: str, body: Any = None) -> tuple[int, Any, dict[str, str]]:
    """(status, parsed JSON body, headers) of one request; an HTTP error is an answer too."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if TOKEN:
        headers["authorization"] = "Bearer " + TOKEN
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null"), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null"), dict(err.headers)


def wait_final(order_id: str, timeout: float = 120) -> str:
    """The order's status once it is no longer PENDING, or PENDING after `timeout` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, body, _ = call("GET", "/orders/" + order_id)
        if status == 200 and body["status"] != "PENDING":
            return str(body["status"])
        time.sleep(0.5)
    return "PENDING"
