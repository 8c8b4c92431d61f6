"""The policy update job: logged decisions + their feedback → VW examples → a new policy version.

The job trains a copy of the active policy and publishes the result in one transaction together
with marking the decisions it learned, so a failed or killed job changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine

from bandit_router.config import Settings
from bandit_router.jobs.rewards import aggregate
from bandit_router.policy.learner import QualityModel
from bandit_router.policy.service import publish_policy
from bandit_router.store import repository as repo
from bandit_router.store.keys import served_by
from bandit_router.store.models import utcnow

log = logging.getLogger(__name__)

BATCH_LIMIT = 200_000  # decisions per run; a backlog larger than this is learned over several runs


@dataclass
class Event:
    """One learnable decision: what was offered, what was chosen with which probability, rewards."""

    decision_id: str
    emb: np.ndarray
    models: list[str]
    chosen: int
    probability: float
    reward: float
    # Pairwise feedback also tells how the other model did on this query (full information).
    side_rewards: list[tuple[str, float]]


def reward_shifts(engine: Engine, settings: Settings) -> dict[str, float]:
    """Per model, what its preference feedback misses by the latest retraining's estimate (gold −
    preference); only estimates whose interval excludes 0, a shift inside the noise is none."""
    if not settings.update_bias_correction:
        return {}
    with engine.connect() as conn:
        bias = repo.latest_bias(conn)
    return {m: float(b["estimate"]) for m, b in bias.items() if b["lo"] > 0 or b["hi"] < 0}


def collect_events(
    engine: Engine, settings: Settings, shifts: dict[str, float] | None = None
) -> tuple[list[Event], list[str]]:
    """Learnable events, and the ids of decisions closed without anything to learn; each
    reward is moved by its model's entry in `shifts` (see `reward_shifts`)."""
    shifts = shifts or {}

    def corrected(model: str, reward: float) -> float:
        return float(np.clip(reward + shifts.get(model, 0.0), 0.0, 1.0))

    closed_before = utcnow() - timedelta(seconds=settings.reward_wait_seconds)
    with engine.connect() as conn:
        rows = repo.learnable_decisions(
            conn, closed_before, settings.no_feedback == "skip", BATCH_LIMIT
        )
        fb = repo.feedback_for(conn, [r["id"] for r in rows])
        served = served_by(conn, [r["id"] for r in rows])
    events, skipped = [], []
    for row in rows:
        items = fb[row["id"]]
        if items:
            reward = aggregate([f["reward"] for f in items], settings.reward_aggregation)
        else:
            reward = settings.default_reward
        models = [c["model"] for c in row["candidates"]]
        chosen, probability = row["chosen_model"], row["probability"]
        answered = served.get(row["id"], chosen)
        if answered is None:  # the proxy found no upstream that answered: no quality to learn
            skipped.append(row["id"])
            continue
        if answered != chosen:
            # A fallback answered: the feedback rates it, a model the policy did not draw, so it
            # is learned as a full-information label (p = 1) for that model.
            models = models if answered in models else [*models, answered]
            chosen, probability = answered, 1.0
        side = [
            (f["other_model"], corrected(f["other_model"], 1.0 - f["reward"]))
            for f in items
            if f["type"] == "pairwise" and f["other_model"]
        ]
        events.append(
            Event(
                decision_id=row["id"],
                emb=np.frombuffer(row["embedding"], dtype=np.float32),
                models=models,
                chosen=models.index(chosen),
                probability=probability,
                reward=corrected(chosen, reward),
                side_rewards=side,
            )
        )
    return events, skipped


def learn_events(model: QualityModel, events: list[Event], counts: dict[str, int]) -> None:
    for ev in events:
        model.learn(ev.emb, ev.models, ev.chosen, ev.reward, ev.probability)
        counts[ev.models[ev.chosen]] = counts.get(ev.models[ev.chosen], 0) + 1
        for other, reward in ev.side_rewards:
            models = ev.models if other in ev.models else [*ev.models, other]
            # The other answer was not drawn by the policy: a full-information label (p = 1).
            model.learn(ev.emb, models, models.index(other), reward, 1.0)
            counts[other] = counts.get(other, 0) + 1


def run_update(engine: Engine, settings: Settings) -> dict[str, Any]:
    with engine.connect() as conn:
        active = repo.active_policy(conn)
    if active is None:
        raise RuntimeError("no active policy to update")
    shifts = reward_shifts(engine, settings)
    events, skipped = collect_events(engine, settings, shifts)
    if not events and not skipped:
        return {"events": 0, "published": None, "parent": active["id"]}
    model = QualityModel(active["vw_args"], active["model_bytes"])
    counts = dict(active["model_counts"] or {})
    try:
        learn_events(model, events, counts)
        blob = model.to_bytes()
    finally:
        model.close()
    metrics = {
        "events": len(events),
        "mean_reward": float(np.mean([e.reward for e in events])),
        "reward_shifts": shifts,
    }
    learned = [e.decision_id for e in events] + skipped
    version = publish_policy(
        engine,
        trained_from_active=active["id"],
        activate=True,
        also=lambda conn, v: repo.mark_learned(conn, learned, v),
        vw_args=active["vw_args"],
        model_bytes=blob,
        model_counts=counts,
        metrics=metrics,
        source="update",
        parent_id=active["id"],
    )
    log.info("update job published policy %s from %s events", version, len(events))
    return {**metrics, "published": version, "parent": active["id"]}
