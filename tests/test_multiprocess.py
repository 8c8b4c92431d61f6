"""Several processes on one database: exactly one scheduler, takeover when its owner dies, and
every `serve --workers N` process hot-loading a newly published policy."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from bandit_router.bench.load import Service, descendants
from bandit_router.cli import main
from bandit_router.config import Settings, load_settings
from bandit_router.jobs.ownership import SchedulerOwnership
from bandit_router.jobs.runner import JobRunner
from bandit_router.runtime import Runtime, prepare_database
from bandit_router.store.db import make_engine

LOCK_APP_NAME = "bandit-router scheduler lock"


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll until `cond` holds; the bound only stops a broken test from hanging."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.1)


def fast_lock_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"scheduler_lock_retry_seconds": 0.2})


def owners(*items: Runtime | SchedulerOwnership) -> list[bool]:
    out = []
    for item in items:
        scheduling = item.scheduling if isinstance(item, Runtime) else item
        out.append(scheduling is not None and scheduling.owner)
    return out


def test_exactly_one_runtime_owns_the_scheduler_and_the_other_takes_over(
    settings: Settings,
    encoder: Any,
) -> None:
    s = fast_lock_settings(settings)
    a = Runtime(s, encoder=encoder, scheduler=True)
    b = Runtime(s, encoder=encoder, scheduler=True)
    try:
        assert sorted(owners(a, b)) == [False, True]
        first, second = (a, b) if owners(a, b)[0] else (b, a)
        first.close()
        wait_for(lambda: owners(second) == [True], "the standby takes the scheduler over")
        assert second.scheduling is not None and second.scheduling.owner
    finally:
        for rt in (a, b):
            with contextlib.suppress(Exception):
                rt.close()


@contextlib.contextmanager
def ownership(settings: Settings) -> Iterator[SchedulerOwnership]:
    """Scheduler ownership the way `worker` holds it: no encoder, no HTTP."""
    engine = make_engine(settings.database_url)
    runner = JobRunner(engine, settings)
    own = SchedulerOwnership(runner, engine, settings)
    try:
        yield own
    finally:
        own.close()
        runner.close()
        engine.dispose()


def lock_backends(pg_admin: Engine, db_url: str) -> list[int]:
    """Server pids of the sessions holding the scheduler lock in this database."""
    db = db_url.rsplit("/", 1)[1]
    with pg_admin.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND a.datname = :db "
                "AND a.application_name = :app"
            ),
            {"db": db, "app": LOCK_APP_NAME},
        )
        return [int(r[0]) for r in rows]


@pytest.mark.postgres
def test_lost_lock_connection_hands_the_scheduler_over(
    pg_url: str,
    pool_file: Path,
    pg_admin: Engine,
) -> None:
    """What a PostgreSQL restart does to the owner: its session ends, so it must stop scheduling
    (it no longer holds the lock) and the lock goes to whoever asks next."""
    s = load_settings(database_url=pg_url, pool_file=pool_file, scheduler_lock_retry_seconds=0.2)
    with ownership(s) as a, ownership(s) as b:
        assert sorted(owners(a, b)) == [False, True]
        holder = lock_backends(pg_admin, pg_url)
        assert len(holder) == 1
        with pg_admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": holder[0]})

        # Whoever asks first after the session died may take it, the old owner included (it
        # reconnects): what must hold is one owner again, on a live session.
        def one_owner_again() -> bool:
            backends = lock_backends(pg_admin, pg_url)
            return (
                sorted(owners(a, b)) == [False, True]
                and len(backends) == 1
                and backends[0] != holder[0]
            )

        wait_for(one_owner_again, "exactly one owner again, on a new session")


def _worker_env(db_url: str, pool_file: Path) -> dict[str, str]:
    return {
        **os.environ,
        "BANDIT_ROUTER_DATABASE_URL": db_url,
        "BANDIT_ROUTER_POOL_FILE": str(pool_file),
        "BANDIT_ROUTER_SCHEDULER_LOCK_RETRY_SECONDS": "0.2",
        "BANDIT_ROUTER_STATE_POLL_SECONDS": "0.3",
    }


@pytest.mark.postgres
def test_worker_killed_9_loses_the_scheduler_to_a_standby(
    pg_url: str,
    pool_file: Path,
    pg_admin: Engine,
) -> None:
    cmd = [sys.executable, "-m", "bandit_router.cli", "worker"]
    worker = subprocess.Popen(cmd, env=_worker_env(pg_url, pool_file))
    try:
        wait_for(lambda: len(lock_backends(pg_admin, pg_url)) == 1, "the worker takes the lock")
        s = load_settings(
            database_url=pg_url, pool_file=pool_file, scheduler_lock_retry_seconds=0.2
        )
        with ownership(s) as standby:
            assert not standby.owner  # the worker has it
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            wait_for(lambda: standby.owner, "the standby takes over from the dead worker")
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_serve_refuses_several_workers_on_sqlite(
    tmp_path: Path,
    pool_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BANDIT_ROUTER_DATABASE_URL", f"sqlite:///{tmp_path}/r.db")
    monkeypatch.setenv("BANDIT_ROUTER_POOL_FILE", str(pool_file))
    assert main(["serve", "--workers", "2"]) == 2  # before anything is started
    err = capsys.readouterr().err
    assert "--workers > 1 needs PostgreSQL" in err
    assert "one process write at a time" in err


def _uvicorn_workers(parent: int) -> list[int]:
    def is_worker(pid: int) -> bool:
        with contextlib.suppress(OSError):
            return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        return False

    return [pid for pid in descendants(parent) if is_worker(pid)]


def _served_version(base: str) -> int:
    # A new client per call: a fresh connection, accepted by whichever worker is running.
    return int(httpx.get(f"{base}/healthz", timeout=10).json()["policy_version"])


def _publish_new_policy(base: str, settings: Settings) -> int:
    with httpx.Client(base_url=base, timeout=30) as c:
        for i in range(3):
            r = c.post("/v1/route", json={"prompt": f"Explain sorting, take {i}"})
            r.raise_for_status()
            fb = {"decision_id": r.json()["decision_id"], "type": "thumbs", "value": "up"}
            c.post("/v1/feedback", json=fb).raise_for_status()
    engine = make_engine(settings.database_url)
    runner = JobRunner(engine, settings)
    try:
        row = runner.run("update")
    finally:
        runner.close()
        engine.dispose()
    assert row.status == "succeeded", row
    return int(row.result["published"])


@pytest.mark.postgres
def test_processes_that_start_together_on_a_fresh_store_all_start(
    pg_url: str, pool_file: Path
) -> None:
    """`serve --workers 2` on a fresh PostgreSQL store: both workers seed the pool's models and
    the starter policy at the same moment; the one that loses the race must start anyway."""
    settings = load_settings(database_url=pg_url, pool_file=pool_file)
    engines = [make_engine(pg_url) for _ in range(3)]
    try:
        for _ in range(4):
            with engines[0].begin() as conn:
                conn.execute(text("DELETE FROM policy_versions"))
                conn.execute(text("DELETE FROM models"))
            start = threading.Barrier(len(engines))
            errors: list[BaseException] = []

            def set_up(
                engine: Engine, start: threading.Barrier, errors: list[BaseException]
            ) -> None:
                start.wait()
                try:
                    prepare_database(engine, settings)
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=set_up, args=(e, start, errors)) for e in engines]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert errors == []
            with engines[0].connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM models")).scalar() == 3
                active = "SELECT count(*) FROM policy_versions WHERE active"
                assert conn.execute(text(active)).scalar() == 1
    finally:
        for e in engines:
            e.dispose()


@pytest.mark.postgres
def test_every_serve_worker_hot_loads_a_new_policy(
    pg_url: str, pool_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANDIT_ROUTER_STATE_POLL_SECONDS", "0.3")
    settings = load_settings(database_url=pg_url, pool_file=pool_file, update_promotion="always")
    service = Service(settings, pg_url, workers=2)
    service.start()
    try:
        assert service.proc is not None
        workers = _uvicorn_workers(service.proc.pid)
        assert len(workers) == 2
        old = _served_version(service.base)
        new = _publish_new_policy(service.base, settings)
        assert new != old
        # Freeze all workers but one, so that worker alone answers; do it for each in turn.
        for serving in workers:
            frozen = [w for w in workers if w != serving]
            for w in frozen:
                os.kill(w, signal.SIGSTOP)
            try:
                wait_for(lambda: _served_version(service.base) == new, f"worker {serving}", 4.0)
            finally:
                for w in frozen:
                    os.kill(w, signal.SIGCONT)
        assert sorted(_uvicorn_workers(service.proc.pid)) == sorted(workers)  # no restarts
    finally:
        service.stop()
