"""Migrations, database constraints and the group-commit writer, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, inspect, update
from sqlalchemy.exc import IntegrityError

from bandit_router.config import Settings
from bandit_router.services.policies import ensure_active_policy
from bandit_router.store import proxy_log
from bandit_router.store import repository as repo
from bandit_router.store.db import WalCheckpointer, make_engine, migrate, schema_is_current
from bandit_router.store.models import PolicyVersion, utcnow
from bandit_router.store.writer import GroupCommitWriter


def _decision(i: int) -> dict:  # type: ignore[type-arg]
    return {
        "id": f"{i:032x}",
        "created_at": utcnow(),
        "prompt_hash": "0" * 64,
        "embedding": b"\0" * 16,
        "input_tokens": 3,
        "lam": 0.0,
        "candidates": [{"model": "m", "probability": 1.0}],
        "chosen_model": "m",
        "probability": 1.0,
        "exploration": "greedy",
        "policy_version": 1,
    }


def test_migrations_create_the_schema_idempotently(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    migrate(settings.database_url)  # again: a no-op
    assert schema_is_current(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"models", "decisions", "feedback", "policy_versions", "jobs"} <= tables
    engine.dispose()


def test_only_one_policy_can_be_active(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    with engine.begin() as conn:
        a = repo.insert_policy(conn, activate=True, vw_args="x", model_bytes=b"1", source="t")
        b = repo.insert_policy(conn, activate=True, vw_args="x", model_bytes=b"2", source="t")
        assert repo.active_policy_id(conn) == b
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(update(PolicyVersion).where(PolicyVersion.id == a).values(active=True))
    engine.dispose()


def test_policy_presence_and_a_store_with_versions_but_none_active(settings: Settings) -> None:
    """Start-up refuses a store whose versions were all deactivated, rather than adding a
    starter beside them; and it tells that state apart from an empty store in one read."""
    engine = make_engine(settings.database_url)
    with engine.begin() as conn:
        assert repo.policy_presence(conn) == (None, False)
        a = repo.insert_policy(conn, activate=False, vw_args="x", model_bytes=b"1", source="t")
        assert repo.policy_presence(conn) == (None, True)
    with pytest.raises(RuntimeError, match="no policy version is active"):
        ensure_active_policy(engine, settings.vw_args)
    with engine.begin() as conn:
        repo.activate_policy(conn, a)
        repo.insert_policy(conn, activate=False, vw_args="x", model_bytes=b"2", source="t")
        assert repo.policy_presence(conn) == (a, True)
    assert ensure_active_policy(engine, settings.vw_args) == a
    engine.dispose()


def test_a_mapped_read_inside_a_write_keeps_the_writes_around_it(settings: Settings) -> None:
    """Readers that return mapped objects open a Session on the caller's connection; inside the
    group-commit writer's transaction it must neither commit nor roll back the batch."""
    engine = make_engine(settings.database_url)
    writer = GroupCommitWriter(engine)

    def batch(conn: Connection) -> None:
        repo.insert_decisions(conn, [_decision(1)])
        assert repo.get_decision(conn, _decision(1)["id"]) is not None
        repo.insert_decisions(conn, [_decision(2)])

    writer.submit(batch).result()
    writer.close()
    with engine.connect() as conn:
        assert all(repo.get_decision(conn, _decision(i)["id"]) for i in (1, 2))
    engine.dispose()


def test_group_commit_persists_every_acknowledged_write(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    writer = GroupCommitWriter(engine)
    acks: list[str] = []
    lock = threading.Lock()

    def worker(start: int) -> None:
        for i in range(start, start + 50):
            row = _decision(i)
            writer.submit(lambda c, row=row: repo.insert_decisions(c, [row])).result()
            with lock:
                acks.append(row["id"])

    threads = [threading.Thread(target=worker, args=(k * 1000,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # A write that fails (duplicate key) fails alone; its batch neighbours still commit.
    dup = writer.submit(lambda c: repo.insert_decisions(c, [_decision(0)]))
    ok = writer.submit(lambda c: repo.insert_decisions(c, [_decision(99_999)]))
    with pytest.raises(IntegrityError):
        dup.result()
    ok.result()
    writer.close()
    with engine.connect() as conn:
        for did in [*acks, _decision(99_999)["id"]]:
            assert repo.get_decision(conn, did) is not None
    assert len(acks) == 300
    engine.dispose()


@pytest.mark.postgres
def test_group_commit_replaces_a_held_connection_the_server_dropped(
    pg_url: str,
    pg_admin: Engine,
) -> None:
    """The writer keeps one connection between batches; when the server ends it (a restart, an
    idle timeout), the next write goes through on a fresh one instead of failing."""
    engine = make_engine(pg_url)
    writer = GroupCommitWriter(engine)
    pid = writer.submit(lambda c: c.exec_driver_sql("SELECT pg_backend_pid()").scalar()).result()
    with pg_admin.connect() as admin:
        admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
    writer.submit(lambda c: repo.insert_decisions(c, [_decision(7)])).result()
    again = writer.submit(lambda c: c.exec_driver_sql("SELECT pg_backend_pid()").scalar()).result()
    assert again != pid
    writer.close()
    with engine.connect() as conn:
        assert repo.get_decision(conn, _decision(7)["id"]) is not None
    engine.dispose()


def _fill_wal(engine: Engine, commits: int) -> None:
    """~6 MB over many commits: past the 1,000 WAL pages at which SQLite checkpoints by itself."""
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS filler (b BLOB)")
    for _ in range(commits):
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO filler VALUES (randomblob(8000))")


def test_the_serving_engine_checkpoints_from_its_own_thread(tmp_path: Path) -> None:
    def db_file_after(background: bool, checkpointer: bool) -> int:
        path = tmp_path / f"{background}-{checkpointer}.db"
        engine = make_engine(f"sqlite:///{path}", background_checkpoint=background)
        cp = WalCheckpointer(engine, interval_s=0.05) if checkpointer else None
        _fill_wal(engine, 750)
        time.sleep(0.3)
        size = path.stat().st_size
        if cp is not None:
            cp.close()
        engine.dispose()
        return size

    # SQLite's own checkpoint moves the data into the file; switched off, it stays in the WAL;
    # the checkpointer thread moves it again.
    assert db_file_after(background=False, checkpointer=False) > 5_000_000
    assert db_file_after(background=True, checkpointer=False) < 100_000
    assert db_file_after(background=True, checkpointer=True) > 5_000_000


def test_proxy_answer_lookups_span_several_in_lists(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proxy_log, "_CHUNK", 2)  # 5 ids: three IN lists
    engine = make_engine(settings.database_url)
    rows = [_decision(i) for i in range(5)]
    with engine.begin() as conn:
        repo.insert_decisions(conn, rows)
        for i, row in enumerate(rows[:4]):
            answer = {"decision_id": row["id"], "served_model": f"m{i}", "status": 200}
            proxy_log.record_answer(conn, {**answer, "attempts": [], "output_tokens": i or None})
    ids = [r["id"] for r in rows]
    with engine.connect() as conn:
        assert proxy_log.served_by(conn, ids) == {ids[i]: f"m{i}" for i in range(4)}
        assert proxy_log.output_tokens(conn, ids) == {ids[i]: i for i in (1, 2, 3)}
    engine.dispose()
