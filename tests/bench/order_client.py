"""The saga bench's HTTP client: one keep-alive HTTP/1.1 connection per driver coroutine and
app process, one request at a time, written straight onto asyncio streams.

The bench measures what the whole machine does, and its driver shares the two cores with
the system under test: with httpx the driver's process spent 2.5-4 CPU-ms per saga (a
quarter of the machine at 64 in flight), with this client 0.5-0.7. It speaks only what the
bench needs: a JSON POST answered with a Content-Length body (uvicorn's answers)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import urlsplit


class ProtocolError(Exception):
    pass


class OrderConnection:
    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"need http://host:port, got {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post_json(self, path: str, body: Any) -> tuple[int, Any]:
        """POST `body` as JSON; the status and the decoded JSON answer."""
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        payload = json.dumps(body).encode()
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        try:
            status_line = await reader.readline()
            if not status_line:
                raise ProtocolError("the server closed the connection")
            status = int(status_line.split(b" ", 2)[1])
            length: int | None = None
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    raise ProtocolError("chunked answers are not read by this client")
            if length is None:
                raise ProtocolError(f"answer {status} without Content-Length")
            answer = await reader.readexactly(length)
        except BaseException:
            await self.close()
            raise
        return status, json.loads(answer) if answer else None

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
