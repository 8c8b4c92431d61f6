"""API keys as the service checks them: every key by its hash, held in memory and refreshed whole
(the store keeps only a display prefix and a SHA-256 of each key)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, inspect

from bandit_router.store import api_keys as store
from bandit_router.store.db import make_engine


@dataclass(frozen=True)
class KeyInfo:
    id: int
    prefix: str
    role: str
    name: str | None
    revoked: bool


class KeyCache:
    """All keys by hash. `refresh` swaps the whole dict, so readers never see a half-built one."""

    def __init__(self) -> None:
        self._by_hash: dict[str, KeyInfo] = {}

    @property
    def has_keys(self) -> bool:
        return bool(self._by_hash)

    def lookup(self, key: str) -> KeyInfo | None:
        return self._by_hash.get(store.hash_key(key))

    def by_hash(self, key_hash: str) -> KeyInfo | None:
        """For the console's session cookie, which holds the key's hash, never the key."""
        return self._by_hash.get(key_hash)

    def refresh(self, engine: Engine) -> None:
        with engine.connect() as conn:
            rows = store.key_hashes(conn)
        self._by_hash = {
            r.key_hash: KeyInfo(r.id, r.prefix, r.role, r.name, r.revoked_at is not None)
            for r in rows
        }


def has_api_keys(database_url: str) -> bool:
    """Whether any key was ever created (revoked ones count: auth stays on). For `serve`."""
    engine = make_engine(database_url)
    try:
        if not inspect(engine).has_table(store.ApiKey.__tablename__):
            return False  # a database not migrated yet has no keys
        with engine.connect() as conn:
            return store.count_keys(conn) > 0
    finally:
        engine.dispose()
