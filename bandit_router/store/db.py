"""Engine creation and schema migration for SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def migrations_dir() -> Path:
    """In a checkout the scripts sit beside the package; an installed copy (the container image)
    has no source tree around it, so BANDIT_ROUTER_MIGRATIONS_DIR says where they are."""
    configured = os.environ.get("BANDIT_ROUTER_MIGRATIONS_DIR")
    return Path(configured) if configured else MIGRATIONS_DIR


def make_engine(
    url: str, connect_timeout: int = 5, background_checkpoint: bool = False, **kwargs: Any
) -> Engine:
    """Create an engine; for SQLite also the parent folder, WAL and foreign keys.

    `connect_timeout` (PostgreSQL) bounds how long a request waits on an unreachable server before
    it fails (and gets a 503) instead of hanging on the TCP connect. `background_checkpoint`
    (SQLite) leaves WAL checkpoints to a `WalCheckpointer` instead of the committing connection."""
    parsed = make_url(url)
    # A failed statement's message would carry its parameters (prompt text, keys' hashes) into
    # the logs and error answers.
    kwargs.setdefault("hide_parameters", True)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        if background_checkpoint:
            event.listen(engine, "connect", _no_autocheckpoint)
        return engine
    if parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    kwargs.setdefault("connect_args", {"connect_timeout": connect_timeout})
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    return create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL: readers never block the writer; synchronous=NORMAL is durable against a process crash
    # (kill -9), not against power loss — see the README's guarantees.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _no_autocheckpoint(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA wal_autocheckpoint=0")
    cur.execute(f"PRAGMA journal_size_limit={64 * 1024 * 1024}")  # a reset WAL shrinks back
    cur.close()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


class WalCheckpointer:
    """Checkpoints a SQLite WAL from its own thread (PASSIVE: never waits for, nor blocks, writers).

    SQLite's automatic checkpoint runs inside the commit that crosses 1,000 WAL pages; its fsync
    held that commit, and every write queued behind it, for up to 200 ms under load."""

    def __init__(self, engine: Engine, interval_s: float = 1.0) -> None:
        self._engine = engine
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def checkpoint(self, mode: str = "PASSIVE") -> None:
        with self._engine.connect() as conn:
            conn.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})")

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.checkpoint()
            except Exception as exc:  # e.g. the file is busy: the next round catches up
                log.warning("WAL checkpoint failed: %s", exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        try:
            self.checkpoint()
        except Exception as exc:  # what is left in the WAL is still committed and read from it
            log.warning("final WAL checkpoint failed: %s", exc)


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision` (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def schema_is_current(engine: Engine) -> bool:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory(str(migrations_dir())).get_heads())
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    return current == heads
