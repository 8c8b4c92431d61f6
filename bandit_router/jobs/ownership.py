"""Scheduler ownership: exactly one process runs the periodic jobs, across processes and machines.

PostgreSQL: a session-level advisory lock taken on a dedicated connection that the process keeps
for its lifetime. The server releases the lock when that session ends, so when the holder dies
(kill -9, machine lost, connection cut) the next process that tries takes over.
SQLite: everything is on one machine, so an exclusive flock on a file beside the database does the
same (the kernel drops it when the holder dies).

Every process that may schedule (`serve` with the scheduler enabled, `worker`) runs a
`SchedulerOwnership`: it tries at once, then every `scheduler_lock_retry_seconds`; the owner uses
the same beat to check it still holds the lock and stops its scheduler when it does not.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import Any, Protocol

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from bandit_router.config import Settings
from bandit_router.jobs.runner import JobRunner, fail_interrupted_jobs
from bandit_router.jobs.scheduler import start_scheduler

log = logging.getLogger(__name__)

# Advisory locks are per database, so one fixed key is enough: two deployments sharing a database
# share its tables too, and must then share one scheduler.
SCHEDULER_LOCK_KEY = 0x62616E6469742D72  # "bandit-r"


class Lock(Protocol):
    def try_acquire(self) -> bool: ...

    def held(self) -> bool: ...

    def release(self) -> None: ...


class AdvisoryLock:
    """pg_try_advisory_lock on a connection of its own (not from the pool: a pooled connection
    goes back to the pool and the lock would go with whoever borrows it next)."""

    def __init__(self, url: str, connect_timeout: int, key: int = SCHEDULER_LOCK_KEY) -> None:
        self._conninfo = make_url(url).set(drivername="postgresql").render_as_string(False)
        self._connect_timeout = connect_timeout
        self._key = key
        self._conn: Any = None
        self._owned = False

    def _connect(self) -> Any:
        import psycopg

        # Keepalives and a TCP user timeout: a connection to a vanished server must be noticed in
        # seconds, or the owner would keep scheduling without really holding the lock.
        return psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=self._connect_timeout,
            application_name="bandit-router scheduler lock",
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
            tcp_user_timeout=self._connect_timeout * 1000,
        )

    def try_acquire(self) -> bool:
        if self._owned:
            return self.held()
        try:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
        except Exception as exc:  # an unreachable database: not the owner, try again later
            log.debug("scheduler lock attempt failed: %s", exc)
            self._drop()
            return False
        self._owned = bool(row[0])
        return self._owned

    def held(self) -> bool:
        """The lock lives exactly as long as the session: a live connection still holds it."""
        if not self._owned:
            return False
        try:
            self._conn.execute("SELECT 1")
        except Exception as exc:
            log.warning("scheduler lock connection lost: %s", exc)
            self._drop()
            return False
        return True

    def release(self) -> None:
        self._drop()  # closing the session releases the lock on the server

    def _drop(self) -> None:
        self._owned = False
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: nothing left to release
                conn.close()


class FileLock:
    """flock on a file beside the SQLite database: one owner per machine, released on death."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock


class NoLock:
    """An in-memory SQLite database exists in one process only: that process owns it."""

    def try_acquire(self) -> bool:
        return True

    def held(self) -> bool:
        return True

    def release(self) -> None:
        return None


def lock_for(settings: Settings) -> Lock:
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite":
        return AdvisoryLock(settings.database_url, settings.database_connect_timeout_seconds)
    if not url.database or url.database == ":memory:":
        return NoLock()
    db = Path(url.database).expanduser().resolve()
    return FileLock(db.with_name(db.name + ".scheduler-lock"))


class SchedulerOwnership:
    """Runs the scheduler while this process holds the lock; otherwise keeps trying."""

    def __init__(
        self, runner: JobRunner, engine: Engine, settings: Settings, lock: Lock | None = None
    ) -> None:
        self._runner = runner
        self._engine = engine
        self._settings = settings
        self._lock = lock if lock is not None else lock_for(settings)
        self._scheduler: BackgroundScheduler | None = None
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self.check()  # at once, so a lone process owns the scheduler when start-up returns
        self._thread = threading.Thread(target=self._loop, name="scheduler-lock", daemon=True)
        self._thread.start()

    @property
    def owner(self) -> bool:
        return self._scheduler is not None

    def check(self) -> None:
        """One beat: confirm ownership if we have it, otherwise try to take it."""
        with self._mutex:
            if self._stop.is_set():
                return
            if self._scheduler is not None:
                if self._lock.held():
                    return
                log.warning("lost scheduler ownership; stopping the scheduler in this process")
                self._stop_scheduler()
            if self._lock.try_acquire():
                self._start_scheduler()

    def _start_scheduler(self) -> None:
        try:
            # The previous owner is gone (its lock was free): its unfinished runs never will be.
            fail_interrupted_jobs(self._engine)
            self._scheduler = start_scheduler(self._runner, self._settings, guard=self._confirm)
        except Exception as exc:  # e.g. the database went away between the lock and the update
            log.warning("could not start the scheduler, will retry: %s", exc)
            self._lock.release()
            return
        log.info("this process owns the scheduler (pid %d)", os.getpid())

    def _stop_scheduler(self) -> None:
        sched, self._scheduler = self._scheduler, None
        if sched is not None:
            sched.shutdown(wait=False)

    def _confirm(self) -> bool:
        with self._mutex:
            return self._scheduler is not None and self._lock.held()

    def _loop(self) -> None:
        while not self._stop.wait(self._settings.scheduler_lock_retry_seconds):
            try:
                self.check()
            except Exception as exc:  # the beat must survive anything, or ownership would freeze
                log.warning("scheduler ownership check failed: %s", exc)

    def close(self) -> None:
        self._stop.set()
        with self._mutex:
            self._stop_scheduler()
            self._lock.release()
        self._thread.join(timeout=5)
