"""API keys: only a display prefix and a SHA-256 of each key are stored."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import Connection, func, insert, select, update

from bandit_router.store.models import ApiKey, utcnow
from bandit_router.store.records import HashedKeyRecord, KeyRecord, first, records

ROLES = ("client", "grader", "admin")
KEY_PREFIX = "brk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def prefix_of(key: str) -> str:
    return key[: len(KEY_PREFIX) + 8]


def new_key() -> tuple[str, str]:
    """(the key, its prefix). 256 random bits: a plain SHA-256 is enough, no slow KDF needed."""
    prefix = KEY_PREFIX + secrets.token_hex(4)
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


def create_key(conn: Connection, role: str, name: str | None = None) -> tuple[str, KeyRecord]:
    """Store a new key; returns the key (its only appearance) and its stored row."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    key, prefix = new_key()
    conn.execute(insert(ApiKey).values(prefix=prefix, key_hash=hash_key(key), role=role, name=name))
    row = get_key(conn, prefix)
    assert row is not None
    return key, row


_PUBLIC = [c for c in ApiKey.__table__.c if c.name != "key_hash"]


def list_keys(conn: Connection) -> list[KeyRecord]:
    return records(KeyRecord, conn.execute(select(*_PUBLIC).order_by(ApiKey.id)))


def get_key(conn: Connection, ident: str) -> KeyRecord | None:
    """By numeric id or by prefix."""
    where = ApiKey.id == int(ident) if ident.isdigit() else ApiKey.prefix == ident
    return first(KeyRecord, conn.execute(select(*_PUBLIC).where(where)))


def revoke_key(conn: Connection, ident: str) -> KeyRecord | None:
    """Revoke by id or prefix (idempotent: a revoked key keeps its first revocation time)."""
    row = get_key(conn, ident)
    if row is None or row.revoked_at is not None:
        return row
    conn.execute(update(ApiKey).where(ApiKey.id == row.id).values(revoked_at=utcnow()))
    return get_key(conn, ident)


def key_hashes(conn: Connection) -> list[HashedKeyRecord]:
    """What the auth cache holds: every key, revoked ones too (they must get a clear 401)."""
    return records(HashedKeyRecord, conn.execute(select(ApiKey.__table__)))


def count_keys(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(ApiKey)).scalar_one())
