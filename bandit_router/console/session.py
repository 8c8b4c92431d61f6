"""Console sessions: a signed, HttpOnly, SameSite=Strict cookie that names an API key by its hash.

The cookie never holds the key itself: it holds the key's SHA-256 (what the store keeps), an
expiry and an HMAC over both. Each request looks the hash up in the same in-memory key cache the
API uses, so a revoked key ends its console sessions within one key refresh.

State-changing forms are protected against cross-site requests twice: the browser does not send
a SameSite=Strict cookie on a cross-site request, and every POST must carry an Origin (or, from
older browsers, a Referer) of this very host."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request

from bandit_router.api.auth import auth_enforced
from bandit_router.config import Settings
from bandit_router.services.keys import KeyCache, KeyInfo
from bandit_router.store.api_keys import hash_key

COOKIE = "br_console"
# With auth off (no key exists) the API is open, and so is the console, as an admin.
OPEN_KEY = KeyInfo(id=0, prefix="(auth off)", role="admin", name=None, revoked=False)


@dataclass(frozen=True)
class Signer:
    secret: bytes
    max_age: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Signer:
        secret = settings.console_secret.encode() or secrets.token_bytes(32)
        return cls(secret, settings.console_session_hours * 3600)

    def _mac(self, payload: str) -> str:
        return hmac.new(self.secret, payload.encode(), hashlib.sha256).hexdigest()

    def issue(self, key: str) -> str:
        payload = f"{hash_key(key)}.{int(time.time() + self.max_age)}"
        return f"{payload}.{self._mac(payload)}"

    def key_hash(self, cookie: str) -> str | None:
        """The key hash of a valid, unexpired cookie, else None."""
        payload, _, mac = cookie.rpartition(".")
        key_hash, _, expires = payload.partition(".")
        if not payload or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        if not expires.isdigit() or int(expires) < time.time():
            return None
        return key_hash


def console_key(request: Request) -> KeyInfo | None:
    """The logged-in key of this request (OPEN_KEY with auth off), or None."""
    keys: KeyCache = request.app.state.keys
    settings: Settings = request.app.state.settings
    if not auth_enforced(settings, keys):
        return OPEN_KEY
    signer: Signer = request.app.state.console_signer
    key_hash = signer.key_hash(request.cookies.get(COOKIE, ""))
    key = keys.by_hash(key_hash) if key_hash else None
    if key is None or key.revoked or key.role not in ("admin", "grader"):
        return None
    return key


def same_origin(request: Request) -> bool:
    """Whether a POST comes from a page of this host (the CSRF check)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    given = urlsplit(source)
    return f"{given.scheme}://{given.netloc}" == f"{request.url.scheme}://{request.url.netloc}"


def login_key(request: Request, key: str) -> KeyInfo | None:
    """The key if it exists, is live and may use the console."""
    keys: KeyCache = request.app.state.keys
    found = keys.lookup(key.strip()) if key.strip() else None
    if found is None or found.revoked or found.role not in ("admin", "grader"):
        return None
    return found
