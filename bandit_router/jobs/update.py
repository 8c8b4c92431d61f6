"""The policy update job: the closed decisions it has not learned yet → their labels
(jobs/labels.py: gold, or preference moved onto the gold scale) → regression steps on a copy of
the active policy → a new active version.

The job publishes the result in one transaction together with marking the decisions it learned,
so a failed or killed job changes nothing.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from itertools import chain
from typing import Any

import numpy as np
from sqlalchemy import Engine

from bandit_router.config import Settings
from bandit_router.jobs.events import LoggedEvent, read_events
from bandit_router.jobs.labels import Labeller, fit_labeller
from bandit_router.policy.learner import QualityModel
from bandit_router.policy.regions import Tally
from bandit_router.policy.service import anchor_of, publish_policy, tally_fields, tally_of
from bandit_router.store import repository as repo
from bandit_router.store.models import utcnow

log = logging.getLogger(__name__)

BATCH_LIMIT = 200_000  # decisions per run; a backlog larger than this is learned over several runs


def teach(
    model: QualityModel, event: LoggedEvent, label: float, labeller: Labeller, tally: Tally
) -> None:
    """One event's lesson: its label for the model that answered and, from pairwise feedback,
    the other model's (a label the policy did not draw, learned all the same: regression needs
    no propensity)."""
    models = event.models
    if event.answered is not None and np.isfinite(label):
        model.learn(event.emb, models, models.index(event.answered), float(label))
        tally.add(event.answered, event.emb)
    for other, value in labeller.side_labels(event):
        names = models if other in models else [*models, other]
        model.learn(event.emb, names, names.index(other), value)
        tally.add(other, event.emb)


def run_update(engine: Engine, settings: Settings) -> dict[str, Any]:
    with engine.connect() as conn:
        active = repo.active_policy(conn)
        pool = [m["name"] for m in repo.list_models(conn)]
    if active is None:
        raise RuntimeError("no active policy to update")
    closed_before = utcnow() - timedelta(seconds=settings.reward_wait_seconds)
    pending = read_events(
        engine, settings, until=closed_before, unlearned_only=True, max_events=BATCH_LIMIT
    )
    first = next(pending, None)
    if first is None:
        return {"events": 0, "published": None, "parent": active["id"]}
    labeller = fit_labeller(engine, settings, pool)
    model = QualityModel(active["vw_args"], active["model_bytes"])
    tally = tally_of(active)
    seen: list[str] = []
    learned: list[float] = []
    try:
        for chunk in chain([first], pending):
            for event, label in zip(chunk, labeller.labels(chunk), strict=True):
                seen.append(event.decision_id)
                teach(model, event, label, labeller, tally)
                if np.isfinite(label):
                    learned.append(float(label))
        blob = model.to_bytes()
    finally:
        model.close()
    metrics = {
        "events": len(learned),
        "closed_without_label": len(seen) - len(learned),
        "mean_label": float(np.mean(learned)) if learned else None,
        "labels": labeller.info,
    }
    version = publish_policy(
        engine,
        trained_from_active=active["id"],
        activate=True,
        also=lambda conn, v: repo.mark_learned(conn, seen, v),
        vw_args=active["vw_args"],
        model_bytes=blob,
        **tally_fields(tally),
        metrics=metrics,
        source="update",
        parent_id=active["id"],
        anchor_id=anchor_of(active),
    )
    log.info("update job published policy %s from %s events", version, len(learned))
    return {**metrics, "published": version, "parent": active["id"]}
