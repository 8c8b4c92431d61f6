"""Runs jobs one at a time per kind, in a background thread, recording each run in the store."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sqlalchemy import Engine, update

from bandit_router.config import Settings
from bandit_router.jobs.retention import run_retention
from bandit_router.jobs.retrain import run_retrain
from bandit_router.jobs.update import run_update
from bandit_router.services.admin import JOB_KINDS
from bandit_router.services.audits import run_upkeep
from bandit_router.store import repository as repo
from bandit_router.store.models import Job, JobStatus, utcnow
from bandit_router.store.records import JobRecord

log = logging.getLogger(__name__)

JobFn = Callable[[Engine, Settings], dict[str, Any]]
JOBS: dict[str, JobFn] = {
    "update": run_update,
    "retrain": run_retrain,
    "retention": run_retention,
    "audits": run_upkeep,
}
assert set(JOBS) == set(JOB_KINDS), "services/admin.py names the jobs an admin may start"
# Periodic jobs: kind -> the Settings field holding its interval in seconds.
SCHEDULE: dict[str, str] = {
    "update": "update_interval_seconds",
    "retrain": "retrain_interval_seconds",
    "retention": "retention_interval_seconds",
    "audits": "audit_job_interval_seconds",
}


class JobRunner:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        jobs: dict[str, JobFn] | None = None,
        on_success: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._on_success = on_success
        self._settings = settings
        self._jobs = dict(jobs or JOBS)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobs")
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[int, Future[dict[str, Any]]]] = {}

    @property
    def kinds(self) -> list[str]:
        return sorted(self._jobs)

    def submit(self, kind: str, trigger: str) -> tuple[int, Future[dict[str, Any]]]:
        """Queue a run; if one of this kind is already queued or running, return that one."""
        if kind not in self._jobs:
            raise KeyError(kind)
        with self._lock:
            if kind in self._pending:
                return self._pending[kind]
            with self._engine.begin() as conn:
                job_id = repo.create_job(conn, kind, trigger)
            fut = self._executor.submit(self._execute, kind, job_id)
            self._pending[kind] = (job_id, fut)
        return job_id, fut

    def run(self, kind: str, trigger: str = "cli") -> JobRecord:
        """Run now (or join the run under way) and wait; returns the job row."""
        job_id, fut = self.submit(kind, trigger)
        fut.result()
        with self._engine.connect() as conn:
            row = repo.get_job(conn, job_id)
        assert row is not None
        return row

    def _execute(self, kind: str, job_id: int) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            with self._engine.begin() as conn:
                repo.start_job(conn, job_id)
            result = self._jobs[kind](self._engine, self._settings)
            result["duration_s"] = round(time.perf_counter() - started, 3)
            status, error = JobStatus.SUCCEEDED, None
        except Exception as exc:
            log.error("job %s (%s) failed: %s", job_id, kind, exc)
            result = {"duration_s": round(time.perf_counter() - started, 3)}
            status, error = JobStatus.FAILED, "".join(traceback.format_exception_only(exc)).strip()
        finally:
            with self._lock:
                self._pending.pop(kind, None)
        with self._engine.begin() as conn:
            repo.finish_job(conn, job_id, status, result, error)
        if status == JobStatus.SUCCEEDED and self._on_success is not None:
            self._on_success()  # serve a freshly published policy now, not at the next poll
        return result

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def fail_interrupted_jobs(engine: Engine) -> int:
    """Jobs left queued/running by a dead process are marked failed (the policy is untouched)."""
    with engine.begin() as conn:
        res = conn.execute(
            update(Job)
            .where(Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))
            .values(
                status=JobStatus.FAILED,
                finished_at=utcnow(),
                error="interrupted: the process stopped",
            )
        )
    return int(res.rowcount or 0)
