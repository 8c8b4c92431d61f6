"""Policy versions in the store: create the first one, load the active one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine

from bandit_router.offline.starter import load_starter
from bandit_router.policy import regions
from bandit_router.policy.decide import Policy
from bandit_router.policy.learner import QualityModel
from bandit_router.store import repository as repo
from bandit_router.store.models import PolicyVersion


def ensure_active_policy(engine: Engine, vw_args: str) -> int:
    """A fresh store gets the packaged starter policy when it knows the pool's models and was
    built under these VW arguments (offline/starter.py), else a cold (untrained) one, so the
    service can route from request one."""
    with engine.begin() as conn:
        active, any_stored = repo.policy_presence(conn)
        if active is not None:
            return active
        if any_stored:
            raise RuntimeError("no policy version is active; activate one through the admin API")
        # The pool file's models: prepare_database seeds them before it calls this.
        starter = load_starter(vw_args, [m.name for m in repo.list_models(conn)])
        if starter is not None:
            return repo.insert_policy(conn, activate=True, **starter)
        model = QualityModel(vw_args)
        try:
            blob = model.to_bytes()
        finally:
            model.close()
        return repo.insert_policy(
            conn,
            activate=True,
            vw_args=vw_args,
            model_bytes=blob,
            model_counts={},
            metrics={},
            source="cold",
        )


def load_policy(engine: Engine, version: int) -> Policy:
    with engine.connect() as conn:
        row = repo.get_full_policy(conn, version)
    if row is None:
        raise LookupError(f"policy version {version} does not exist")
    return Policy(
        version=row.id,
        model=QualityModel(row.vw_args, row.model_bytes),
        model_counts=dict(row.model_counts or {}),
        regions=regions.from_bytes(row.regions),
        region_counts=dict(row.region_counts or {}),
    )


def tally_of(row: PolicyVersion) -> regions.Tally:
    """The learning counts a stored policy carries, to continue counting from."""
    return regions.Tally.of(regions.from_bytes(row.regions), row.model_counts, row.region_counts)


def tally_fields(tally: regions.Tally) -> dict[str, Any]:
    """The policy-version columns that store a tally."""
    return {
        "model_counts": tally.totals,
        "region_counts": tally.by_region,
        "regions": regions.to_bytes(tally.regions),
    }


class PolicyChangedError(RuntimeError):
    pass


def publish_policy(
    engine: Engine,
    *,
    trained_from_active: int,
    activate: bool,
    also: Callable[[Connection, int], None] | None = None,
    **fields: Any,
) -> int:
    """Store a trained policy (and `also` whatever belongs with it) in one transaction, but only
    if the active policy is still the one the job started from: a job never overrides a
    promotion or rollback that happened while it ran."""
    with engine.begin() as conn:
        if repo.active_policy_id(conn) != trained_from_active:
            raise PolicyChangedError(
                "the active policy changed while the job ran; nothing published"
            )
        version = repo.insert_policy(conn, activate=activate, **fields)
        if also is not None:
            also(conn, version)
    return version
