"""Per-key rate limits (a token bucket per key, in memory, per process) and a request body cap.

Per process on purpose: the hot path stays free of shared state, at the price that with N workers
a key may reach up to N times the configured rate (see the README).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bandit_router import telemetry as metrics
from bandit_router.api.auth import request_key
from bandit_router.api.errors import error_response
from bandit_router.config import Settings


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`rate` tokens per second, at most `burst` saved up; one request takes one token."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[int, _Bucket] = {}

    def acquire(self, key_id: int, now: float | None = None) -> float:
        """0 when the request may go ahead, else the seconds until the next token."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.setdefault(key_id, _Bucket(float(self.burst), now))
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"request body larger than {limit} bytes (BANDIT_ROUTER_MAX_BODY_BYTES)",
        )


class LimitsMiddleware:
    """After authentication: the key's rate limit (429 + Retry-After), then the body size (413),
    checked on Content-Length up front and on the bytes actually received (chunked uploads)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.max_body = settings.max_body_bytes
        rate = settings.rate_limit_per_second
        self.limiter = RateLimiter(rate, settings.rate_limit_burst) if rate > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self._rate_limited(scope) or self._declared_too_large(scope)
        if refused is not None:
            await refused(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, self._capped(receive), send_wrapper)
        except BodyTooLarge as exc:  # raised outside FastAPI's handlers, before any answer
            if started:
                raise
            await error_response(scope["path"], 413, exc.detail)(scope, receive, send)

    def _rate_limited(self, scope: Scope) -> JSONResponse | None:
        key = request_key(scope)
        if self.limiter is None or key is None:
            return None
        wait = self.limiter.acquire(key.id)
        if wait <= 0:
            return None
        metrics.record_rejection("rate_limited")
        retry = max(1, math.ceil(wait))
        detail = (
            f"rate limit exceeded for API key {key.prefix}: {self.limiter.rate:g} requests/s, "
            f"burst {self.limiter.burst}; retry in {retry} s"
        )
        return error_response(scope["path"], 429, detail, {"Retry-After": str(retry)})

    def _declared_too_large(self, scope: Scope) -> JSONResponse | None:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                metrics.record_rejection("body_too_large")
                detail = BodyTooLarge(self.max_body).detail
                return error_response(scope["path"], 413, detail)
        return None

    def _capped(self, receive: Receive) -> Receive:
        received = 0

        async def capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    metrics.record_rejection("body_too_large")
                    raise BodyTooLarge(self.max_body)
            return message

        return capped
