"""Warm start: turn an offline router's predictions into the service's first policy version.

VW is pretrained on full-information examples — one per (prompt, model), labelled with the offline
router's predicted quality, probability 1 — under the exact production arguments, so the saved
model loads in the service. Exploration is computed by the service from a fixed γ, so pretraining
does not make it greedy (VW's own SquareCB would: its γ grows with the number of learn calls).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import Engine

from bandit_router.policy.learner import QualityModel
from bandit_router.policy.regions import Tally, fit_regions
from bandit_router.services.policies import tally_fields
from bandit_router.store import repository as repo


def pretrain(
    model: QualityModel,
    X: np.ndarray,
    models: Sequence[str],
    quality: np.ndarray,
    tally: Tally,
    passes: int = 1,
    seed: int = 0,
) -> None:
    """Learn quality[i, k] for every prompt i and model k (in shuffled order), counted."""
    rng = np.random.default_rng(seed)
    n, k = quality.shape
    names = list(models)
    for _ in range(passes):
        for flat in rng.permutation(n * k):
            i, j = divmod(int(flat), k)
            model.learn(X[i], names, j, float(quality[i, j]))
            tally.add(names[j], X[i])


def publish_warm_start(
    engine: Engine,
    vw_args: str,
    X: np.ndarray,
    models: Sequence[str],
    quality: np.ndarray,
    *,
    passes: int = 1,
    seed: int = 0,
    n_regions: int = 16,
    activate: bool = True,
    source: str = "warm_start",
    metrics: dict[str, object] | None = None,
) -> int:
    """Pretrain a fresh policy and store it as a new (by default active) version; its query
    regions are fitted on `X` (see policy/regions.py)."""
    model = QualityModel(vw_args)
    tally = Tally(fit_regions(X, n_regions, seed))
    try:
        pretrain(model, X, models, quality, tally, passes=passes, seed=seed)
        blob = model.to_bytes()
    finally:
        model.close()
    with engine.begin() as conn:
        parent = repo.active_policy_id(conn)
        return repo.insert_policy(
            conn,
            activate=activate,
            vw_args=vw_args,
            model_bytes=blob,
            **tally_fields(tally),
            metrics={"prompts": int(X.shape[0]), "passes": passes, **(metrics or {})},
            source=source,
            parent_id=parent,
        )
