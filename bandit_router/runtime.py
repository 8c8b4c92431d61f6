"""Runtime: everything a serving process holds, built once at start-up.

The hot path only reads `pool` and `policy`, two references that background refreshes replace
whole (never mutate), so a request sees one consistent snapshot without taking a lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from bandit_router.config import ConfigError, Settings
from bandit_router.embed.service import EmbeddingService, TextEncoder
from bandit_router.jobs.ownership import SchedulerOwnership
from bandit_router.jobs.runner import JOBS, JobRunner
from bandit_router.policy.decide import Policy
from bandit_router.policy.pool import ModelSpec, ModelSpecIn, PoolFileError, load_pool_file
from bandit_router.services.admin import Admin
from bandit_router.services.feedback import FeedbackService
from bandit_router.services.policies import ensure_active_policy, load_policy
from bandit_router.services.pool import key_env_refused, model_warnings, numbers_problem
from bandit_router.services.proxy import ProxyRecords
from bandit_router.services.routing import RoutingService, Snapshot
from bandit_router.store import repository as repo
from bandit_router.store.db import (
    WalCheckpointer,
    is_sqlite,
    make_engine,
    migrate,
    schema_is_current,
)
from bandit_router.store.writer import GroupCommitWriter
from bandit_router.telemetry import instrument_jobs

log = logging.getLogger(__name__)

SETUP_ATTEMPTS = 3


class Runtime:
    def __init__(
        self, settings: Settings, encoder: TextEncoder | None = None, scheduler: bool | None = None
    ) -> None:
        self.settings = settings
        self.engine: Engine = make_engine(
            settings.database_url,
            connect_timeout=settings.database_connect_timeout_seconds,
            background_checkpoint=True,
        )
        prepare_database(self.engine, settings)
        if encoder is None:
            from bandit_router.embed.encoder import load_encoder

            encoders: TextEncoder | list[TextEncoder] = [
                load_encoder(settings) for _ in range(settings.embedding_workers)
            ]
        else:
            encoders = encoder
        self.embedder = EmbeddingService(
            encoders,
            settings.embedding_cache_size,
            settings.embedding_max_batch,
            settings.embedding_max_queue,
        )
        self.writer = GroupCommitWriter(self.engine)
        self.checkpointer = WalCheckpointer(self.engine) if is_sqlite(self.engine) else None
        self._snapshot: Snapshot | None = None
        self._refreshing = threading.Lock()
        self._fingerprint: tuple[Any, Any] = (None, None)
        self.refresh()
        self.routing = RoutingService(settings, self.engine, self.embedder, self.writer)
        self.feedback = FeedbackService(self.engine, self.writer, lambda: self.snapshot)
        self.proxy = ProxyRecords(self.engine, self.writer, settings)
        for model in self.pool.values():  # what the first request would otherwise find out
            for warning in model_warnings(model, settings) if model.enabled else []:
                log.warning("model %s: %s", model.name, warning)
        # Timed per kind for /metrics; wrapping here keeps jobs/ free of metrics code.
        jobs = instrument_jobs(JOBS)
        self.runner = JobRunner(self.engine, settings, jobs=jobs, on_success=self.refresh)
        self.admin = Admin(self.engine, settings, self.runner, on_change=self.refresh)
        run_scheduler = settings.scheduler_enabled if scheduler is None else scheduler
        # Every process may ask; one per database gets it (see jobs/ownership.py).
        self.scheduling = (
            SchedulerOwnership(self.runner, self.engine, settings) if run_scheduler else None
        )

    @property
    def snapshot(self) -> Snapshot:
        assert self._snapshot is not None  # set by the first refresh, in __init__
        return self._snapshot

    @property
    def pool(self) -> Mapping[str, ModelSpec]:
        return self.snapshot.pool

    @property
    def enabled_models(self) -> tuple[ModelSpec, ...]:
        return self.snapshot.enabled

    @property
    def policy(self) -> Policy:
        return self.snapshot.policy

    def refresh(self, force: bool = False) -> None:
        """Reload the pool and/or the active policy when the store says they changed, and swap
        in a new snapshot whole (one reference: in-flight requests keep the one they read).
        Called from the poller, the job runner and admin changes: serialised by a lock."""
        with self._refreshing:
            self._refresh(force)

    def _refresh(self, force: bool) -> None:
        old = self._snapshot
        with self.engine.connect() as conn:
            fingerprint = repo.state_fingerprint(conn)
            pool = old.pool if old is not None else None
            if pool is None or force or fingerprint[1] != self._fingerprint[1]:
                pool = {r.name: ModelSpec.from_row(r) for r in repo.list_models(conn)}
        policy_id = fingerprint[0]
        policy = old.policy if old is not None else None
        if policy_id is not None and (policy is None or policy.version != policy_id):
            policy = load_policy(self.engine, policy_id)
            log.info("serving policy version %s", policy_id)
        if policy is None:
            raise RuntimeError("no policy version is active")
        if old is None or policy is not old.policy or pool is not old.pool:
            # A model whose numbers cannot price a query is never routed, whatever stored it.
            enabled = tuple(m for m in pool.values() if m.enabled and numbers_problem(m) is None)
            # Read out here, off the hot path, for every model a request can name.
            policy = policy.read_out([m.name for m in enabled], self.embedder.encoder.dim)
            self._snapshot = Snapshot(policy, pool, enabled)
        self._fingerprint = fingerprint

    def close(self) -> None:
        if self.scheduling is not None:
            self.scheduling.close()
        self.runner.close()
        self.writer.close()
        if self.checkpointer is not None:
            self.checkpointer.close()
        self.embedder.close()
        self.engine.dispose()


def prepare_database(engine: Engine, settings: Settings) -> None:
    """SQLite (the embedded default) migrates itself; a server database must be migrated first."""
    url = settings.database_url
    if make_url(url).get_backend_name() == "sqlite":
        migrate(url)
    elif not schema_is_current(engine):
        raise RuntimeError(
            f"database {make_url(url).render_as_string(hide_password=True)} is not at the newest "
            "schema: run `bandit-router migrate` first"
        )
    specs = checked_pool_file(settings)
    for attempt in range(1, SETUP_ATTEMPTS + 1):
        try:
            with engine.begin() as conn:
                added = repo.seed_models(conn, [s.model_dump() for s in specs])
            ensure_active_policy(engine, settings.vw_args)
            break
        except IntegrityError:
            # Processes that start together on a fresh store (`serve --workers`) seed the same
            # models and starter policy; the ones that lose find the winner's on the next try.
            if attempt == SETUP_ATTEMPTS:
                raise
    if added:
        log.info("added models from %s: %s", settings.pool_file, ", ".join(added))


def checked_pool_file(settings: Settings) -> list[ModelSpecIn]:
    """The pool file's models, refused whole (ConfigError) when one has numbers that cannot price
    a query or takes its key from a variable outside the allow-list."""
    try:
        specs = load_pool_file(settings.pool_file)
    except PoolFileError as exc:
        raise ConfigError(str(exc)) from None
    for spec in specs:
        problem = numbers_problem(ModelSpec(**spec.model_dump())) or (
            key_env_refused(spec.api_key_env, settings) if spec.api_key_env else None
        )
        if problem:
            raise ConfigError(f"pool file {settings.pool_file}, model {spec.name}: {problem}")
    return specs


def run_worker(settings: Settings, stop: threading.Event) -> None:
    """`bandit-router worker`: the jobs and their schedule, no HTTP and no encoder (learning reads
    stored embeddings). Contends for the same lock as `serve`, so a stray second worker, or API
    replicas left with the scheduler enabled, still make exactly one scheduler."""
    engine = make_engine(
        settings.database_url, connect_timeout=settings.database_connect_timeout_seconds
    )
    prepare_database(engine, settings)
    runner = JobRunner(engine, settings)
    ownership = SchedulerOwnership(runner, engine, settings)
    if not ownership.owner:
        log.info("another process owns the scheduler; standing by to take over")
    try:
        while not stop.wait(1.0):
            pass
    finally:
        ownership.close()
        runner.close()
        engine.dispose()
