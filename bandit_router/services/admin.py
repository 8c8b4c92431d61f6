"""Administration: the model pool, policy versions, jobs, and what the jobs leave behind (the
daily roll-up, the bias estimates). One service for the admin API and the console alike."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from bandit_router.config import Settings
from bandit_router.policy.pool import ModelSpec
from bandit_router.services.errors import Conflict, Invalid, NotFound, excerpt
from bandit_router.services.pool import key_env_refused, model_warnings
from bandit_router.store import repository as repo

# The HTTP layer names JobRecord and PolicyVersion from here: it may not import the store.
from bandit_router.store.models import PolicyVersion
from bandit_router.store.records import JobRecord, ModelRecord

# The jobs an admin may start (jobs/runner.py runs exactly these).
JOB_KINDS = ("update", "retrain", "retention", "audits")
# Ids are 32-bit in PostgreSQL; a larger one names nothing (and must not reach the database).
MAX_ID = 2**31 - 1
R = TypeVar("R")


class Jobs(Protocol):
    """What administration needs of the job runner (jobs/runner.py)."""

    @property
    def kinds(self) -> list[str]: ...

    def submit(self, kind: str, trigger: str) -> tuple[int, Future[dict[str, Any]]]: ...


def stored_id(value: int) -> bool:
    return 1 <= value <= MAX_ID


class Admin:
    """`on_change(force)` reloads the serving snapshot after a pool (force) or policy change."""

    def __init__(
        self, engine: Engine, settings: Settings, jobs: Jobs, on_change: Callable[[bool], None]
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.jobs = jobs
        self.on_change = on_change

    # --- the model pool ---------------------------------------------------------------------

    def model_view(self, row: ModelRecord) -> dict[str, Any]:
        return {**asdict(row), "warnings": model_warnings(ModelSpec.from_row(row), self.settings)}

    def list_models(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [self.model_view(row) for row in repo.list_models(conn)]

    def get_model(self, name: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = repo.get_model(conn, name)
        if row is None:
            raise NotFound(f"model {excerpt(name, 200)} does not exist")
        return self.model_view(row)

    def add_model(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A new model is routable at once: it starts from what all models share and gets
        explored. Its `warnings` say what will not work yet (e.g. its key is not set)."""
        self._check_key_env(spec.get("api_key_env"))
        try:
            with self.engine.begin() as conn:
                repo.add_model(conn, spec)
        except IntegrityError:
            raise Conflict(f"model {spec['name']} already exists; PATCH it instead") from None
        self.on_change(True)
        return self.get_model(spec["name"])

    def change_model(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        self._check_key_env(changes.get("api_key_env"))
        with self.engine.begin() as conn:
            if repo.get_model(conn, name) is None:
                raise NotFound(f"model {excerpt(name, 200)} does not exist")
            if changes.get("enabled") is False:
                others = [m for m in repo.list_models(conn, enabled_only=True) if m.name != name]
                if not others:
                    raise Conflict("cannot disable the last enabled model")
            repo.update_model(conn, name, changes)
        self.on_change(True)
        return self.get_model(name)

    def _check_key_env(self, name: str | None) -> None:
        refused = key_env_refused(name, self.settings) if name else None
        if refused:
            raise Invalid(refused)

    # --- policy versions --------------------------------------------------------------------

    def list_policies(self) -> list[PolicyVersion]:
        with self.engine.connect() as conn:
            return repo.list_policies(conn)

    def get_policy(self, version: int) -> PolicyVersion:
        return self._stored(repo.get_policy, version, f"policy version {version}")

    def activate_policy(self, version: int) -> PolicyVersion:
        """Activate any stored version: promotion by hand, or rollback to an older one."""
        with self.engine.begin() as conn:
            if not stored_id(version) or repo.get_policy(conn, version) is None:
                raise NotFound(f"policy version {version} does not exist")
            repo.activate_policy(conn, version)
        self.on_change(False)
        return self.get_policy(version)

    # --- jobs and what they leave -----------------------------------------------------------

    def submit_job(self, kind: str) -> JobRecord:
        try:
            job_id, _ = self.jobs.submit(kind, "admin")
        except KeyError:
            known = ", ".join(self.jobs.kinds)
            raise NotFound(f"unknown job kind {excerpt(kind, 40)}; known: {known}") from None
        return self.get_job(job_id)

    def list_jobs(self) -> list[JobRecord]:
        with self.engine.connect() as conn:
            return repo.list_jobs(conn)

    def get_job(self, job_id: int) -> JobRecord:
        return self._stored(repo.get_job, job_id, f"job {job_id}")

    def _stored(self, read: Callable[[Connection, int], R | None], ident: int, what: str) -> R:
        """The row with this id, or NotFound (an id past the column's range names nothing)."""
        row = None
        if stored_id(ident):
            with self.engine.connect() as conn:
                row = read(conn, ident)
        if row is None:
            raise NotFound(f"{what} does not exist")
        return row

    def daily(self) -> list[dict[str, Any]]:
        """Per UTC day and chosen model, what the retention purge rolled up before deleting the
        decisions (RETENTION_DAYS): the history that outlives the rows, oldest day first."""
        with self.engine.connect() as conn:
            rows = repo.daily_aggregates(conn)
        return [
            {
                **asdict(r),
                "mean_reward": r.reward_sum / r.feedback if r.feedback else None,
                "mean_grade": r.gold_sum / r.audits if r.audits else None,
            }
            for r in rows
        ]

    def bias(self) -> dict[str, Any]:
        """Per-model bias of preference feedback (gold − preference) with PPI++ intervals, from
        the newest successful retraining run; `alert` marks an estimate outside the previous
        interval."""
        with self.engine.connect() as conn:
            job = repo.latest_bias_job(conn)
        if job is None:
            raise NotFound("no retraining run has estimated the bias yet")
        return {
            "job_id": job.id,
            "finished_at": job.finished_at,
            "method": job.result.get("bias_method"),
            "models": job.result["bias"],
        }
