"""How `serve` runs uvicorn: its connection limits, from the settings.

uvicorn closes an idle keep-alive connection after `timeout_keep_alive`, but only once a first
request has been answered: a connection that never sends a byte stays open forever, and 20,000
of them exhausted the process's file descriptors (/healthz stopped answering). The protocol below
(uvicorn's httptools one, which uvicorn[standard] installs) starts the same timer when the
connection is made, and bounds a request's headers. Headers that trickle in slowly are a reverse
proxy's job (see the README)."""

from __future__ import annotations

import asyncio
from typing import Any

from httptools import HttpParserError
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base

from bandit_router.config import Settings

PROTOCOL = f"{__name__}:IdleClosingProtocol"  # an import path: workers are separate processes


class HeadersTooLarge(HttpParserError):
    pass


class IdleClosingProtocol(_Base):
    """A connection must start a request within TIMEOUT_KEEP_ALIVE_SECONDS of opening, and a
    request's line and headers must fit in MAX_HEADER_BYTES (else 400 and the connection closes:
    httptools itself sets no bound)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0

    def _count(self, size: int) -> None:
        self._head_bytes = getattr(self, "_head_bytes", 0) + size
        limit = self.config.h11_max_incomplete_event_size
        if limit is not None and self._head_bytes > limit:
            raise HeadersTooLarge("the request line and headers are too large")

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "http": PROTOCOL,
        "limit_concurrency": settings.limit_concurrency,
        "timeout_keep_alive": settings.timeout_keep_alive_seconds,
        "backlog": settings.backlog,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
    }
