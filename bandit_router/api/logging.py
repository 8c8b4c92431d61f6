"""Structured logs (one JSON object per line, BANDIT_ROUTER_LOG_FORMAT=json) that carry the
request's decision id, and the outermost middleware that times every request for logs and metrics.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bandit_router import telemetry as metrics
from bandit_router.telemetry import RequestContext, current_request, request_context

access_log = logging.getLogger("bandit_router.access")

# A whole API key (prefix + secret) anywhere in a message: logged text never carries one.
_KEY_PATTERN = re.compile(r"(brk_[0-9a-f]{8})_[A-Za-z0-9_-]{16,}")
# Other secrets a caller may put where logs see them: a bearer token, or a query parameter
# (`?api_key=...` ends up in every access line) whose name says it is one.
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+")
_SECRET_PARAM = re.compile(
    r"(?i)([?&][^=&\s\"']*(?:key|token|secret|pass|auth|sig|session|credential)[^=&\s\"']*=)"
    r"[^&\s\"']*"
)
_VENDOR_KEY = re.compile(r"\b((?:sk|pk|rk)-)[A-Za-z0-9_-]{16,}")  # OpenAI-style keys
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Exceptions whose messages never quote what a client sent (connections, timeouts, the database
# without its statement's parameters): their messages stay in tracebacks.
_SAFE_MESSAGES: tuple[type[BaseException], ...] = (OSError, TimeoutError, SQLAlchemyError)
WITHHELD = "<message withheld: it may quote request text (BANDIT_ROUTER_STORE_PROMPTS=false)>"


def redact(text: str) -> str:
    text = _KEY_PATTERN.sub(r"\1_[redacted]", text)
    text = _BEARER.sub(r"\1[redacted]", text)
    text = _VENDOR_KEY.sub(r"\1[redacted]", text)
    return _SECRET_PARAM.sub(r"\1[redacted]", text)


def scrubbed_traceback(exc_info: Any, keep_messages: bool) -> str:
    """A traceback with its frames (file, line, code) but, unless prompts may be logged, without
    the exceptions' messages, which can quote the request that caused them."""
    _, exc, _ = exc_info
    if exc is None:
        return ""
    parts: list[str] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        message = str(exc) if keep_messages or isinstance(exc, _SAFE_MESSAGES) else WITHHELD
        frames = "".join(traceback.format_tb(exc.__traceback__))
        parts.append(f"Traceback (most recent call last):\n{frames}{type(exc).__name__}: {message}")
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return redact("\n\nDuring handling of the above exception:\n\n".join(reversed(parts)))


class Scrub(logging.Filter):
    """On every handler: keys and secret query values are redacted from each line (uvicorn's
    access lines included), and tracebacks lose their messages unless prompts are stored."""

    def __init__(self, keep_messages: bool) -> None:
        super().__init__()
        self.keep_messages = keep_messages

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            # AccessFormatter unpacks (client, method, full path, version, status): keep the shape.
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        else:
            record.msg, record.args = redact(record.getMessage()), ()
        if record.exc_info:
            record.exc_text = scrubbed_traceback(record.exc_info, self.keep_messages)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the request's ids, extra `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ctx = current_request()
        if ctx is not None:
            out["request_id"] = ctx.request_id
            if ctx.decision_id:
                out["decision_id"] = ctx.decision_id
            if ctx.key_prefix:
                out["key"] = ctx.key_prefix
        out.update(getattr(record, "fields", {}))
        if record.exc_text:  # already scrubbed
            out["exc"] = record.exc_text
        elif record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(out, default=str))  # every field: a key may hide in any


def configure_logging(log_format: str, store_prompts: bool = False) -> None:
    """Per process, at app start (after uvicorn set up its own loggers, so this wins). Both formats
    scrub every line (see Scrub); `json` also formats every root handler as JSON and sends
    uvicorn's loggers through them."""
    root = logging.getLogger()
    if log_format == "json":
        if not root.handlers:
            root.addHandler(logging.StreamHandler(sys.stderr))
        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())
        if root.getEffectiveLevel() > logging.INFO:
            root.setLevel(logging.INFO)
        for name in ("uvicorn", "uvicorn.error"):
            logging.getLogger(name).handlers = []
            logging.getLogger(name).propagate = True
        # Our access line carries the decision id and key prefix; uvicorn's would be a second one.
        logging.getLogger("uvicorn.access").disabled = True
    scrub = Scrub(keep_messages=store_prompts)
    loggers = [
        root,
        *(logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")),
    ]
    for handler in {h for logger in loggers for h in logger.handlers}:
        for old in [f for f in handler.filters if isinstance(f, Scrub)]:
            handler.removeFilter(old)
        handler.addFilter(scrub)


class ObserveMiddleware:
    """Outermost: gives each request its context, then records its latency and (JSON mode) logs
    one access line once the response, streamed or not, has been sent."""

    def __init__(self, app: ASGIApp, access_lines: bool) -> None:
        self.app = app
        self.access_lines = access_lines

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = RequestContext(request_id=_request_id(scope))
        token = request_context.set(ctx)
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", ctx.request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            seconds = time.perf_counter() - started
            route = _route_template(scope)
            metrics.observe_request(route, scope["method"], status, seconds)
            if self.access_lines:
                _log_access(scope, route, status, seconds)
            request_context.reset(token)


def _route_template(scope: Scope) -> str:
    """The matched route's path template: bounded label values. Requests refused before routing
    (401, 403, 413, 429) and unknown paths count as "unmatched"."""
    return str(getattr(scope.get("route"), "path", "unmatched"))


def _request_id(scope: Scope) -> str:
    """The caller's x-request-id when it is a sane token (to join their logs), else a new one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            given = value.decode("latin-1")
            if _REQUEST_ID.match(given):
                return given
    return uuid.uuid4().hex[:16]


def _log_access(scope: Scope, route: str, status: int, seconds: float) -> None:
    fields = {
        "method": scope["method"],
        "path": scope["path"],
        "route": route,
        "status": status,
        "duration_ms": round(seconds * 1000, 2),
    }
    access_log.info("%s %s %s", scope["method"], scope["path"], status, extra={"fields": fields})
