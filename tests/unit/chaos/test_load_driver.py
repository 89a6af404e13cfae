"""The load driver's HTTP client against real sockets on loopback."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.chaos.load_driver import CONNECT_ATTEMPTS, Api


class _Orders(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        body = json.dumps({"order_id": "o1", "saga_id": "s1"}).encode()
        self.send_response(202)
        self.send_header("content-type", "application/json")
        self.send_header("x-served-by", "pod-a")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Orders)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_answer_is_done_with_no_connection_retried(server: int) -> None:
    reply = Api(f"http://127.0.0.1:{server}").call("POST", "/orders", {"items": []})
    assert (reply.phase, reply.status, reply.refused) == ("done", 202, [])
    assert reply.body == {"order_id": "o1", "saga_id": "s1"}
    assert reply.headers["x-served-by"] == "pod-a"


def test_a_connection_that_never_opens_is_tried_again_then_given_up() -> None:
    reply = Api(f"http://127.0.0.1:{closed_port()}").call("GET", "/stock/a")
    assert (reply.phase, reply.status, reply.body) == ("connect", None, None)
    assert reply.refused == ["ConnectionRefusedError"] * CONNECT_ATTEMPTS
    assert reply.error == "ConnectionRefusedError"
