"""Policy versions in the store: create the first one, load the active one."""

from __future__ import annotations

from sqlalchemy import Engine

from bandit_router.policy.decide import Policy
from bandit_router.policy.learner import QualityModel
from bandit_router.store import repository as repo


def ensure_active_policy(engine: Engine, vw_args: str) -> int:
    """A fresh store gets a cold (untrained) policy so the service can route from request one."""
    with engine.begin() as conn:
        active = repo.active_policy_id(conn)
        if active is not None:
            return active
        if repo.list_policies(conn, limit=1):
            raise RuntimeError("no policy version is active; activate one through the admin API")
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
        row = repo.get_policy(conn, version, with_bytes=True)
    if row is None:
        raise LookupError(f"policy version {version} does not exist")
    return Policy(
        version=row["id"],
        model=QualityModel(row["vw_args"], row["model_bytes"]),
        model_counts=dict(row["model_counts"] or {}),
    )
