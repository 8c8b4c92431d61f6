"""`bandit-router keys create|list|revoke`: API keys, straight in the store."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import make_url

from bandit_router.config import Settings, UserError
from bandit_router.store import api_keys as store
from bandit_router.store.db import make_engine, migrate, schema_is_current


def register(sub: Any) -> None:
    keys = sub.add_parser("keys", help="API keys: create, list, revoke")
    actions = keys.add_subparsers(dest="keys_action", required=True)

    s = actions.add_parser("create", help="create a key and print it (the only time it is shown)")
    s.add_argument("--role", required=True, choices=store.ROLES)
    s.add_argument("--name", default=None, help="who or what uses it")
    s.set_defaults(func=cmd_keys_create)

    s = actions.add_parser("list", help="list keys (prefix, role, name, created, revoked)")
    s.set_defaults(func=cmd_keys_list)

    s = actions.add_parser("revoke", help="revoke a key; serving processes drop it within seconds")
    s.add_argument("key", help="the key's id or prefix (brk_...)")
    s.set_defaults(func=cmd_keys_revoke)


@contextlib.contextmanager
def _transaction(settings: Settings) -> Iterator[Connection]:
    """SQLite migrates itself (as `serve` does); a server database must already be migrated."""
    url = settings.database_url
    if make_url(url).get_backend_name() == "sqlite":
        migrate(url)
    engine = make_engine(url)
    try:
        if not schema_is_current(engine):
            raise UserError("the database is not at the newest schema: run migrate")
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    with _transaction(settings) as conn:
        key, row = store.create_key(conn, args.role, args.name)
    # The key alone on stdout (for `KEY=$(bandit-router keys create ...)`), the rest on stderr.
    print(
        f"created {row.role} key {row.id} ({row.prefix}); it is shown only now, store it safely:",
        file=sys.stderr,
    )
    print(key)
    return 0


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    with _transaction(settings) as conn:
        rows = store.list_keys(conn)
    print(f"{'id':>4}  {'prefix':<12}  {'role':<6}  {'created':<19}  {'revoked':<19}  name")
    for r in rows:
        revoked = _when(r.revoked_at) or "-"
        print(
            f"{r.id:>4}  {r.prefix:<12}  {r.role:<6}  {_when(r.created_at):<19}  "
            f"{revoked:<19}  {r.name or ''}"
        )
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    with _transaction(settings) as conn:
        row = store.revoke_key(conn, args.key)
    if row is None:
        print(f"bandit-router: no key with id or prefix {args.key!r}", file=sys.stderr)
        return 1
    print(f"revoked key {row.id} ({row.prefix}) at {_when(row.revoked_at)}")
    return 0


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""
