"""API keys (only a display prefix and a SHA-256 of each key are stored) and, in the same module
because both are tables of the serving edge, the proxy's record of which upstream answered."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from bandit_router.store.models import Base, utcnow

ROLES = ("client", "grader", "admin")
KEY_PREFIX = "brk_"


class ApiKey(Base):
    """A caller's key. The key itself is shown once at creation and never stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prefix: Mapped[str] = mapped_column(String(20))  # "brk_" + 8 hex: safe to show and to log
    key_hash: Mapped[str] = mapped_column(String(64))  # sha256 hex of the whole key
    role: Mapped[str] = mapped_column(String(20))
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    __table_args__ = (
        UniqueConstraint("prefix", name="uq_api_keys_prefix"),
        UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )


class ProxyAnswer(Base):
    """Which model actually answered a proxied decision, and what failed before it.

    A table of its own rather than a decisions column: the decision row is the policy's log (what
    it chose, with which probability) and stays as written; a fallback is a fact of the proxy."""

    __tablename__ = "proxy_answers"

    decision_id: Mapped[str] = mapped_column(
        ForeignKey("decisions.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    served_model: Mapped[str | None] = mapped_column(String(200), default=None)  # None: none did
    status: Mapped[int] = mapped_column(Integer)  # the HTTP status the caller got
    attempts: Mapped[list[Any]] = mapped_column(JSON)  # [{"model", "status"?, "error"?}, ...]
    # The answer's length (usage.completion_tokens, else characters / chars_per_token): what a
    # judge's verbosity bias keys on. A stream's is set when it ends; None if it broke off.
    output_tokens: Mapped[int | None] = mapped_column(Integer, default=None)


class ProxyRequest(Base):
    """A proxied request's identity, so that a retry of it reuses its decision: the caller's
    Idempotency-Key, or (for clients that retry without one, like OpenAI's SDKs) its body."""

    __tablename__ = "proxy_requests"

    decision_id: Mapped[str] = mapped_column(
        ForeignKey("decisions.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    caller: Mapped[str] = mapped_column(String(20))  # the API key's prefix; "" with auth off
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    body_hash: Mapped[str] = mapped_column(String(64))  # SHA-256 of the canonical JSON body

    __table_args__ = (
        UniqueConstraint("caller", "idempotency_key", name="uq_proxy_requests_key"),
        Index("ix_proxy_requests_body", "caller", "body_hash", "created_at"),
    )


# --- keys -------------------------------------------------------------------------------------


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def prefix_of(key: str) -> str:
    return key[: len(KEY_PREFIX) + 8]


def new_key() -> tuple[str, str]:
    """(the key, its prefix). 256 random bits: a plain SHA-256 is enough, no slow KDF needed."""
    prefix = KEY_PREFIX + secrets.token_hex(4)
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


def create_key(conn: Connection, role: str, name: str | None = None) -> tuple[str, dict[str, Any]]:
    """Store a new key; returns the key (its only appearance) and its stored row."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    key, prefix = new_key()
    conn.execute(insert(ApiKey).values(prefix=prefix, key_hash=hash_key(key), role=role, name=name))
    row = get_key(conn, prefix)
    assert row is not None
    return key, row


_PUBLIC = [c for c in ApiKey.__table__.c if c.name != "key_hash"]


def list_keys(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(select(*_PUBLIC).order_by(ApiKey.id))]


def get_key(conn: Connection, ident: str) -> dict[str, Any] | None:
    """By numeric id or by prefix."""
    where = ApiKey.id == int(ident) if ident.isdigit() else ApiKey.prefix == ident
    row = conn.execute(select(*_PUBLIC).where(where)).first()
    return dict(row._mapping) if row else None


def revoke_key(conn: Connection, ident: str) -> dict[str, Any] | None:
    """Revoke by id or prefix (idempotent: a revoked key keeps its first revocation time)."""
    row = get_key(conn, ident)
    if row is None or row["revoked_at"] is not None:
        return row
    conn.execute(update(ApiKey).where(ApiKey.id == row["id"]).values(revoked_at=utcnow()))
    return get_key(conn, ident)


def key_hashes(conn: Connection) -> list[dict[str, Any]]:
    """What the auth cache holds: every key, revoked ones too (they must get a clear 401)."""
    cols = (ApiKey.id, ApiKey.prefix, ApiKey.key_hash, ApiKey.role, ApiKey.name, ApiKey.revoked_at)
    return [dict(r._mapping) for r in conn.execute(select(*cols))]


def count_keys(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(ApiKey)).scalar_one())


# --- proxy answers ----------------------------------------------------------------------------


def record_answer(conn: Connection, row: dict[str, Any]) -> None:
    """Who answered. A retried request answers its decision again: the newest answer wins and
    the attempts accumulate."""
    before = get_answer(conn, row["decision_id"])
    if before is None:
        conn.execute(insert(ProxyAnswer).values(**row))
        return
    attempts = [*before["attempts"], *row["attempts"]]
    stmt = update(ProxyAnswer).where(ProxyAnswer.decision_id == row["decision_id"])
    conn.execute(stmt.values(**{**row, "attempts": attempts}))


def record_request(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(insert(ProxyRequest).values(**row))


def request_by_key(conn: Connection, caller: str, key: str) -> dict[str, Any] | None:
    stmt = select(ProxyRequest.__table__).where(
        ProxyRequest.caller == caller, ProxyRequest.idempotency_key == key
    )
    row = conn.execute(stmt).first()
    return dict(row._mapping) if row else None


def request_by_body(
    conn: Connection, caller: str, body_hash: str, since: datetime
) -> dict[str, Any] | None:
    """The newest request without a key from this caller with this body since `since`."""
    stmt = (
        select(ProxyRequest.__table__)
        .where(
            ProxyRequest.caller == caller,
            ProxyRequest.body_hash == body_hash,
            ProxyRequest.created_at >= since,
            ProxyRequest.idempotency_key.is_(None),
        )
        .order_by(ProxyRequest.created_at.desc())
        .limit(1)
    )
    row = conn.execute(stmt).first()
    return dict(row._mapping) if row else None


def get_answer(conn: Connection, decision_id: str) -> dict[str, Any] | None:
    stmt = select(ProxyAnswer.__table__).where(ProxyAnswer.decision_id == decision_id)
    row = conn.execute(stmt).first()
    return dict(row._mapping) if row else None


def set_output_tokens(conn: Connection, decision_id: str, tokens: int) -> None:
    """A streamed answer's length, known once the stream has ended."""
    stmt = update(ProxyAnswer).where(ProxyAnswer.decision_id == decision_id)
    conn.execute(stmt.values(output_tokens=tokens))


_CHUNK = 5000  # SQLite caps the bound parameters of one statement


def _answer_column(conn: Connection, column: Any, decision_ids: list[str]) -> dict[str, Any]:
    """decision id -> `column` of its proxy answer, in bounded IN lists (a retraining window can
    hold far more decisions than SQLite takes parameters)."""
    out: dict[str, Any] = {}
    for start in range(0, len(decision_ids), _CHUNK):
        chunk = decision_ids[start : start + _CHUNK]
        stmt = select(ProxyAnswer.decision_id, column).where(ProxyAnswer.decision_id.in_(chunk))
        out.update((d, value) for d, value in conn.execute(stmt).tuples())
    return out


def output_tokens(conn: Connection, decision_ids: list[str]) -> dict[str, int]:
    """The answer length of each proxied decision whose length is known."""
    found = _answer_column(conn, ProxyAnswer.output_tokens, decision_ids)
    return {d: int(t) for d, t in found.items() if t is not None}


def served_by(conn: Connection, decision_ids: list[str]) -> dict[str, str | None]:
    """For the learning jobs: who answered each proxied decision (None: no upstream did).
    Decisions absent from the result were not proxied: their chosen model is what answered."""
    return _answer_column(conn, ProxyAnswer.served_model, decision_ids)
