"""API-key authentication and roles, checked in memory on every request.

Keys live in the store as prefix + SHA-256; each process holds all of them in a `KeyCache` that a
background task reloads every STATE_POLL_SECONDS, so the hot path never touches the database and a
revoked key stops working within one poll. Keys are enforced as soon as any key has been created
(revoking the last one locks the service rather than opening it), or with AUTH_REQUIRED=true.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import Engine
from starlette.types import ASGIApp, Receive, Scope, Send

from bandit_router import telemetry as metrics
from bandit_router.api.errors import error_response
from bandit_router.api.openapi import is_open
from bandit_router.config import ConfigError, Settings
from bandit_router.services.keys import KeyCache, KeyInfo
from bandit_router.telemetry import bind_key

log = logging.getLogger(__name__)

# Which roles may call a path: admin can do everything; client and grader are disjoint.
GRANTS = {"client": {"client", "admin"}, "grader": {"grader", "admin"}, "admin": {"admin"}}
SCOPE_KEY = "bandit_router.api_key"


def required_role(path: str) -> str:
    if path == "/v1/admin" or path.startswith("/v1/admin/"):
        return "admin"
    if path == "/v1/audits" or path.startswith("/v1/audits/"):
        return "grader"
    return "client"


def presented_key(scope: Scope) -> str | None:
    """`Authorization: Bearer <key>` or, for clients that cannot set it, `x-api-key: <key>`."""
    headers = dict(scope["headers"])
    if b"authorization" in headers:
        scheme, _, value = headers[b"authorization"].decode("latin-1").partition(" ")
        given = value if scheme.lower() == "bearer" else ""
    else:
        given = headers.get(b"x-api-key", b"").decode("latin-1")
    return given.strip() or None


def check_access(key: KeyInfo | None, path: str, had_key: bool) -> tuple[int, str] | None:
    """None when allowed, else (status, message). Messages never echo the key."""
    if key is None:
        if had_key:
            return 401, "unknown API key"
        return 401, "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
    if key.revoked:
        return 401, f"API key {key.prefix} has been revoked"
    role = required_role(path)
    if key.role not in GRANTS[role]:
        return 403, f"API key {key.prefix} has role '{key.role}'; {path} needs role '{role}'"
    return None


def check_auth_settings(settings: Settings) -> None:
    if settings.auth_required and settings.auth_disabled:
        raise ConfigError(
            "BANDIT_ROUTER_AUTH_REQUIRED and BANDIT_ROUTER_AUTH_DISABLED are both true: choose one"
        )


def auth_enforced(settings: Settings, keys: KeyCache) -> bool:
    return not settings.auth_disabled and (settings.auth_required or keys.has_keys)


class AuthMiddleware:
    """401 without a valid key, 403 with the wrong role; the key's identity goes into the scope
    for the rate limiter and into the request's log context (its prefix only)."""

    def __init__(self, app: ASGIApp, keys: KeyCache, settings: Settings) -> None:
        self.app = app
        self.keys = keys
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or is_open(scope["path"])
            or not auth_enforced(self.settings, self.keys)
        ):
            await self.app(scope, receive, send)
            return
        given = presented_key(scope)
        key = self.keys.lookup(given) if given else None
        if key is not None:
            bind_key(key.prefix)  # refused or not, the log line says whose key it was
        refused = check_access(key, scope["path"], given is not None)
        if refused is not None:
            status, detail = refused
            metrics.record_rejection("unauthenticated" if status == 401 else "forbidden")
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            await error_response(scope["path"], status, detail, headers)(scope, receive, send)
            return
        scope[SCOPE_KEY] = key
        await self.app(scope, receive, send)


# --- start-up -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def key_refresh(keys: KeyCache, engine: Engine, settings: Settings) -> AsyncIterator[None]:
    """Load the keys before the first request is served, then keep reloading them."""
    check_auth_settings(settings)
    await asyncio.to_thread(keys.refresh, engine)
    _warn_if_open(settings, keys)
    task = asyncio.create_task(_poll(keys, engine, settings.state_poll_seconds))
    try:
        yield
    finally:
        task.cancel()


async def _poll(keys: KeyCache, engine: Engine, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await asyncio.to_thread(keys.refresh, engine)
        except Exception as exc:  # keep serving with the keys we have; never fall open
            log.warning("API key refresh failed: %s", exc)


def _warn_if_open(settings: Settings, keys: KeyCache) -> None:
    if settings.auth_disabled:
        log.warning(
            "AUTHENTICATION IS DISABLED (BANDIT_ROUTER_AUTH_DISABLED=true): anyone who can reach "
            "this port can route, send feedback and administer the pool"
        )
    elif not auth_enforced(settings, keys):
        log.warning(
            "AUTHENTICATION IS OFF: no API key exists, so every endpoint is open. Fine on "
            "127.0.0.1 for development; create one with `bandit-router keys create --role admin`"
        )


class BindRefused(RuntimeError):
    """Listening beyond loopback with no key to check and auth not explicitly disabled."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname may resolve to anything: treat it as reachable


def check_bind_allowed(settings: Settings, host: str, has_keys: bool) -> None:
    """For `serve`, before listening: like Redis' protected mode, an open service may only listen
    on loopback. Raises BindRefused (or ConfigError) with what to do."""
    check_auth_settings(settings)
    if settings.auth_disabled or settings.auth_required or has_keys or is_loopback(host):
        return
    raise BindRefused(
        f"refusing to listen on {host} with no API key: anyone who can reach it could route, "
        "send feedback and change the model pool. Create a key first (`bandit-router keys create "
        "--role admin`), or set BANDIT_ROUTER_AUTH_DISABLED=true to run open on purpose (e.g. "
        "behind a gateway that authenticates), or listen on 127.0.0.1"
    )


def request_key(scope: Scope | Any) -> KeyInfo | None:
    """The authenticated key of a request (None when auth is off)."""
    found: KeyInfo | None = scope.get(SCOPE_KEY)
    return found
