"""The campaign's load, run inside the cluster (fed to `python3 -` in a client pod on the
control-plane node, which no fault touches). Python's standard library only, and only the
HTTP API of docs/app-contract.md, so it runs in any image with a python3 against any app
that meets the contract.

It sets the stock of a few hot SKUs (so the per-SKU locks are contended), then places
orders on a fixed schedule (open loop: a slow answer never delays the next order) until
the stop file appears or --max-seconds pass, sampling the stock every second. Then it
waits for every accepted order to be final (up to --settle-seconds) and prints what the
app says of each. Everything goes to stdout as JSON lines, in the shapes of
tests/chaos/history.py ("setup", "op", "stock", "order", "final_stock", "done").

A request is "fail" when it certainly did not reach the app (no connection) or the app
answered something other than 202, and "info" when it was sent but no answer came: that
order may exist, and the checker treats it so. A connection that does not open is tried
once more, as HTTP clients do (nothing was sent, so nothing can be done twice); each op
line lists the errors of the attempts that failed to connect.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, NamedTuple
from urllib.parse import urlsplit

CONNECT_TIMEOUT = 3.0
CONNECT_ATTEMPTS = 2
ANSWER_TIMEOUT = 10.0
_print_lock = threading.Lock()


def emit(line: dict[str, Any]) -> None:
    with _print_lock:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


class Reply(NamedTuple):
    """phase is "connect" when the request never left, "answer" when it was sent but no
    answer came, "done" otherwise; `refused` holds the errors of the connection attempts
    that failed."""

    phase: str
    status: int | None
    body: Any
    headers: dict[str, str]
    error: str
    refused: list[str]


class Api:
    def __init__(self, target: str, host: str = "") -> None:
        parts = urlsplit(target)
        # Through an ingress controller: the route's host name (else the target's)
        self.host_header = {"host": host} if host else {}
        # Resolved once: a lookup per request is not bounded by the connect timeout, and
        # DNS may be on the node a fault just took away.
        self.host = socket.gethostbyname(parts.hostname or "localhost")
        self.port = parts.port or 80

    def call(
        self, method: str, path: str, body: Any = None, timeout: float = ANSWER_TIMEOUT
    ) -> Reply:
        refused: list[str] = []
        for _ in range(CONNECT_ATTEMPTS):
            conn = http.client.HTTPConnection(self.host, self.port, timeout=CONNECT_TIMEOUT)
            try:
                conn.connect()
            except OSError as exc:
                conn.close()
                refused.append(type(exc).__name__)
                continue
            return self._exchange(conn, method, path, body, timeout, refused)
        return Reply("connect", None, None, {}, refused[-1], refused)

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        path: str,
        body: Any,
        timeout: float,
        refused: list[str],
    ) -> Reply:
        try:
            assert conn.sock is not None
            conn.sock.settimeout(timeout)
            try:
                data = None if body is None else json.dumps(body).encode()
                headers = {"content-type": "application/json"} if data else {}
                headers.update(self.host_header)
                conn.request(method, path, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException) as exc:
                return Reply("answer", None, None, {}, type(exc).__name__, refused)
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            return Reply("done", response.status, parsed, dict(response.getheaders()), "", refused)
        finally:
            conn.close()


def set_stock(api: Api, sku: str, quantity: int, deadline: float) -> None:
    while time.time() < deadline:
        reply = api.call("PUT", f"/stock/{sku}", {"quantity": quantity})
        if reply.phase == "done" and reply.status == 200:
            emit({"type": "setup", "sku": sku, "initial": quantity})
            return
        time.sleep(0.5)
    raise SystemExit(f"could not set the stock of {sku}")


def place(api: Api, seq: int, sku: str, quantity: int, customer: str) -> None:
    start = time.time()
    body = {
        "customer_id": customer,
        "items": [{"sku": sku, "quantity": quantity, "unit_price_cents": 250}],
    }
    phase, status, answer, headers, error, refused = api.call("POST", "/orders", body)
    line: dict[str, Any] = {
        "type": "op",
        "seq": seq,
        "start": start,
        "end": time.time(),
        "sku": sku,
        "quantity": quantity,
        "customer_id": customer,
        "status": status,
        "order_id": None,
        "saga_id": None,
        "error": error,
        "served_by": headers.get("x-served-by", ""),
        "connect_errors": refused,
    }
    code = str(answer.get("error", "")) if isinstance(answer, dict) else ""
    if phase == "done" and status == 202 and isinstance(answer, dict):
        line.update(outcome="ok", order_id=answer["order_id"], saga_id=answer["saga_id"])
    elif phase == "answer" or (status is not None and status >= 500 and code != "shutting_down"):
        # No answer, or the app's own trouble (a connection lost during COMMIT answers 503
        # too): the order may exist.
        line["outcome"] = "info"
    else:
        line["outcome"] = "fail"
    if code and not error:
        line["error"] = code
    emit(line)
    if line["outcome"] == "ok":
        with _accepted_lock:
            _accepted.append(line)


_accepted: list[dict[str, Any]] = []
_accepted_lock = threading.Lock()


def sample_stock(api: Api, skus: list[str], stop: threading.Event) -> None:
    while not stop.wait(1.0):
        for sku in skus:
            reply = api.call("GET", f"/stock/{sku}", timeout=3)
            if reply.phase == "done" and reply.status == 200 and isinstance(reply.body, dict):
                emit(
                    {
                        "type": "stock",
                        "at": time.time(),
                        "sku": sku,
                        "available": reply.body["available"],
                        "reserved": reply.body["reserved"],
                    }
                )


def epoch(value: str | None) -> float | None:
    return None if value is None else datetime.fromisoformat(value).timestamp()


def final_view(api: Api, op: dict[str, Any], deadline: float) -> dict[str, Any]:
    """The order and its saga once final, or as they are at the deadline."""
    order: Any = None
    saga: Any = None
    while True:
        _, status, order, *_ = api.call("GET", f"/orders/{op['order_id']}")
        _, saga_status, saga, *_ = api.call("GET", f"/sagas/{op['saga_id']}")
        final = (
            status == 200
            and saga_status == 200
            and order["status"] != "PENDING"
            and saga["finished_at"] is not None
        )
        if final or time.time() > deadline:
            break
        time.sleep(1.0)
    steps = [
        {
            "step": s["step"],
            "outcome": s["outcome"],
            "executed_by": s["executed_by"],
            "at": epoch(s["at"]),
        }
        for s in (saga or {}).get("steps", [])
    ]
    return {
        "type": "order",
        "order_id": op["order_id"],
        "saga_id": op["saga_id"],
        "status": (order or {}).get("status", "UNKNOWN"),
        "saga_state": (saga or {}).get("state", "UNKNOWN"),
        "steps": steps,
        "finished_at": epoch((saga or {}).get("finished_at")),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="base URL of the app")
    parser.add_argument(
        "--host", default="", help="Host header (the route's name, when --target is an ingress)"
    )
    parser.add_argument("--run-id", required=True, help="prefix of SKUs and customers")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=5.0, help="orders per second")
    parser.add_argument("--skus", type=int, default=3, help="hot SKUs")
    parser.add_argument("--stock", type=int, default=1000, help="initial units per SKU")
    parser.add_argument("--decline-ratio", type=float, default=0.1)
    parser.add_argument("--fail-confirm-ratio", type=float, default=0.05)
    parser.add_argument("--max-seconds", type=float, default=600, help="hard bound on load")
    parser.add_argument("--settle-seconds", type=float, default=300)
    parser.add_argument("--stop-file", default="/tmp/chaos-stop")
    parser.add_argument(
        "--concurrency", type=int, default=128, help="requests in flight (one may take 13 s)"
    )
    args = parser.parse_args()

    api = Api(args.target, args.host)
    rng = random.Random(args.seed)
    skus = [f"{args.run_id}-sku-{i}" for i in range(args.skus)]
    for sku in skus:
        set_stock(api, sku, args.stock, time.time() + 300)

    stop = threading.Event()
    sampler = threading.Thread(target=sample_stock, args=(api, skus, stop), daemon=True)
    sampler.start()
    started = time.time()
    emit({"type": "load", "started": started})
    seq = 0
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        while time.time() - started < args.max_seconds and not os.path.exists(args.stop_file):
            due = started + seq / args.rate
            time.sleep(max(0.0, due - time.time()))
            roll = rng.random()
            if roll < args.decline_ratio:
                customer = f"decline-{args.run_id}-{seq}"
            elif roll < args.decline_ratio + args.fail_confirm_ratio:
                customer = f"fail-confirm-{args.run_id}-{seq}"
            else:
                customer = f"{args.run_id}-c{seq}"
            pool.submit(place, api, seq, rng.choice(skus), rng.randint(1, 3), customer)
            seq += 1
    ended = time.time()
    stop.set()
    emit({"type": "load", "ended": ended, "sent": seq})

    deadline = time.time() + args.settle_seconds
    with ThreadPoolExecutor(max_workers=16) as pool:
        for view in pool.map(lambda op: final_view(api, op, deadline), list(_accepted)):
            emit(view)
    for sku in skus:
        while True:
            _, status, body, _, error, _ = api.call("GET", f"/stock/{sku}")
            if status == 200 or time.time() > deadline + 60:
                break
            time.sleep(1.0)
        if status != 200:
            raise SystemExit(f"final stock of {sku} unreadable: {status} {error}")
        emit(
            {
                "type": "final_stock",
                "sku": sku,
                "available": body["available"],
                "reserved": body["reserved"],
            }
        )
    emit({"type": "done", "at": time.time()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
