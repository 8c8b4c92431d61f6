"""A small HTTP/1.1 keep-alive client: the load generator of `bench latency` and `bench load`.

On 2 cores the load generator shares the machine with the service it measures. httpx spends about
a millisecond of CPU per request, which at 500 requests/s is half a core taken from the service;
this client (asyncio streams, JSON bodies, pooled keep-alive connections) spends a fraction of it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body)


class BenchClient:
    """`post` raises TimeoutError when no answer came within `timeout`, and OSError (or
    asyncio.IncompleteReadError) when the connection failed: the service is down or went away."""

    def __init__(self, base: str, timeout: float, max_connections: int = 512) -> None:
        url = urlsplit(base)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.timeout = timeout
        self._idle: list[Stream] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def post(self, path: str, body: Any) -> Reply:
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        async with self._slots:
            async with asyncio.timeout(self.timeout):
                if self._idle:
                    try:
                        return await self._exchange(self._idle.pop(), head + payload)
                    except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
                        if getattr(exc, "partial", b""):
                            raise
                        # No byte came back on a pooled connection: the server had closed it
                        # while idle (keep-alive timeout) before reading this request. Resend.
                return await self._exchange(
                    await asyncio.open_connection(self.host, self.port), head + payload
                )

    async def _exchange(self, stream: Stream, request: bytes) -> Reply:
        try:
            stream[1].write(request)
            reply, keep = await _read_reply(stream[0])
        except BaseException:
            stream[1].close()
            raise
        if keep:
            self._idle.append(stream)
        else:
            stream[1].close()
        return reply

    async def aclose(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()

    async def __aenter__(self) -> BenchClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _read_reply(reader: asyncio.StreamReader) -> tuple[Reply, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Reply(status, headers, body), headers.get("connection", "").lower() != "close"


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        chunk = await reader.readexactly(size + 2)  # the chunk and its CRLF
        if size == 0:
            return b"".join(parts)
        parts.append(chunk[:-2])
