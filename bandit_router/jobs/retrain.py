"""The periodic retraining job: a candidate trained afresh on the window's events with labels on
the gold scale, promoted only when off-policy evaluation says it beats the policy that served.

1. Labels (jobs/labels.py): gold where audited; elsewhere the preference reward corrected by a
   bias model fitted on the window's paired audits (BIAS_METHOD), so that what the feedback got
   wrong, and what earlier updates learned from it, does not carry over.
2. The candidate starts from the policy the service started from (the newest warm-start or cold
   version), learns offline gold imported with `import-gold`, then the window's events oldest
   first. It learns the newest PROMOTION_HOLDOUT_FRACTION of them progressively: each one is
   first evaluated, then learned.
3. Evaluation on those newest events: the candidate's greedy choice against the choice the
   serving policy logged without exploring. Neither had learned the event when it chose, so
   the comparison is out of sample on both sides. At most OPE_MAX_EVENTS of them are kept, a
   uniform sample, so the estimate's memory does not grow with the window. Values are SNIPS
   estimates (inside the observed reward range by construction); the difference is paired
   (PROMOTION_ESTIMATOR) and promotion follows PROMOTION_RULE.
Everything is published in one transaction at the end: a failed or killed job leaves the
active policy untouched.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine, select

from bandit_router.audit.ppi import bias_intervals_by_model, bias_moved
from bandit_router.config import Settings
from bandit_router.jobs.evaluation import Evaluation, evaluable, judge
from bandit_router.jobs.events import LoggedEvent, read_events
from bandit_router.jobs.labels import AUDIT_SAMPLE, Labeller, fit_labeller
from bandit_router.jobs.update import teach
from bandit_router.policy.learner import QualityModel
from bandit_router.policy.regions import Tally
from bandit_router.services.policies import publish_policy, tally_fields, tally_of
from bandit_router.store import repository as repo
from bandit_router.store.models import PolicyVersion, utcnow

log = logging.getLogger(__name__)

RESERVOIR = 100_000  # preference-only events sampled for the bias intervals


def base_policy(engine: Engine) -> PolicyVersion:
    """The newest warm-start or cold version: what the service started from."""
    with engine.connect() as conn:
        version = conn.execute(
            select(PolicyVersion.id)
            .where(PolicyVersion.source.in_(("warm_start", "starter", "cold")))
            .order_by(PolicyVersion.id.desc())
            .limit(1)
        ).scalar()
        row = repo.get_full_policy(conn, int(version)) if version else None
    if row is None:
        raise RuntimeError("no warm-start or cold policy to retrain from")
    return row


@dataclass
class BiasTally:
    """Per model: paired (gold, preference) and a reservoir of preference-only rewards."""

    rng: np.random.Generator
    paired: deque[tuple[str, float, float]] = field(
        default_factory=lambda: deque(maxlen=AUDIT_SAMPLE)
    )
    pref_only: list[tuple[str, float]] = field(default_factory=list)
    seen: int = 0

    def add(self, event: LoggedEvent) -> None:
        if event.answered is None or event.pref is None:
            return
        if event.gold is not None:
            self.paired.append((event.answered, event.gold, event.pref))
            return
        self.seen += 1  # reservoir sampling: every preference-only event equally likely kept
        if len(self.pref_only) < RESERVOIR:
            self.pref_only.append((event.answered, event.pref))
        elif (j := int(self.rng.integers(self.seen))) < RESERVOIR:
            self.pref_only[j] = (event.answered, event.pref)


def bias_report(engine: Engine, tally: BiasTally) -> dict[str, Any]:
    """Per-model mean bias (gold − preference) with PPI++ intervals, and an alert when an
    estimate left the interval of the previous retraining run."""
    names = sorted({m for m, _, _ in tally.paired} | {m for m, _ in tally.pref_only})
    col = {m: i for i, m in enumerate(names)}
    kg = np.array([col[m] for m, _, _ in tally.paired], dtype=np.int64)
    g = np.array([x for _, x, _ in tally.paired], dtype=float)
    y = np.array([x for _, _, x in tally.paired], dtype=float)
    ku = np.array([col[m] for m, _ in tally.pref_only], dtype=np.int64)
    yu = np.array([x for _, x in tally.pref_only], dtype=float)
    intervals = bias_intervals_by_model(kg, g, y, ku, yu)
    with engine.connect() as conn:
        previous = repo.latest_bias(conn)
    out = {}
    for j, iv in intervals.items():
        prev = previous.get(names[j])
        out[names[j]] = {
            "estimate": iv.estimate,
            "lo": iv.lo,
            "hi": iv.hi,
            "n_gold": iv.n_gold,
            "n_pref": iv.n_pref,
            "alert": bool(prev and bias_moved((prev["lo"], prev["hi"]), iv.estimate)),
        }
    return out


def _learn_offline_gold(engine: Engine, model: QualityModel, tally: Tally) -> int:
    """Gold imported from offline benchmarks: full-information labels, learned first."""
    with engine.connect() as conn:
        rows = repo.offline_gold(conn)
        pool = [m.name for m in repo.list_models(conn)]
    for g in rows:
        names = pool if g.model in pool else [*pool, g.model]
        emb = np.frombuffer(g.embedding, dtype=np.float32)
        model.learn(emb, names, names.index(g.model), float(g.score))
        tally.add(g.model, emb)
    return len(rows)


def _train_and_evaluate(
    engine: Engine,
    settings: Settings,
    model: QualityModel,
    labeller: Labeller,
    counts: Tally,
    n_train: int,
    served_by: int,
) -> tuple[Evaluation, BiasTally, int]:
    since = utcnow() - timedelta(days=settings.retrain_window_days)
    ev = Evaluation(models=[], capacity=settings.ope_max_events)
    tally = BiasTally(np.random.default_rng(0))
    i = learned = 0
    for chunk in read_events(engine, settings, since=since):
        for event, label in zip(chunk, labeller.labels(chunk), strict=True):
            tally.add(event)
            valued = i >= n_train and evaluable(event, label, served_by)
            before = teach(model, event, label, labeller, counts, value=valued)
            if before is not None:
                ev.add(event, float(label), before)
            learned += int(np.isfinite(label))
            i += 1
    return ev, tally, learned


def run_retrain(engine: Engine, settings: Settings) -> dict[str, Any]:
    with engine.connect() as conn:
        active = repo.active_policy(conn)
        pool = [m.name for m in repo.list_models(conn)]
        since = utcnow() - timedelta(days=settings.retrain_window_days)
        n = repo.count_events(conn, since)
    if active is None:
        raise RuntimeError("no active policy")
    if n < settings.retrain_min_events:
        return {"events": n, "skipped": f"fewer than {settings.retrain_min_events} events"}
    labeller = fit_labeller(engine, settings, pool)
    base = base_policy(engine)
    model = QualityModel(base.vw_args, base.model_bytes)
    counts = tally_of(base)
    try:
        offline = _learn_offline_gold(engine, model, counts)
        n_train = int(n * (1 - settings.promotion_holdout_fraction))
        ev, tally, learned = _train_and_evaluate(
            engine, settings, model, labeller, counts, n_train, active.id
        )
        blob = model.to_bytes()
    finally:
        model.close()
    evaluation = judge(ev, settings)
    metrics = {
        "events": n,
        "learned_events": learned,
        "offline_gold": offline,
        "bias_method": settings.bias_method,
        "labels": labeller.info,
        "ope": evaluation,
        "bias": bias_report(engine, tally),
    }
    version = publish_policy(
        engine,
        trained_from_active=active.id,
        activate=evaluation["promote"],
        vw_args=base.vw_args,
        model_bytes=blob,
        **tally_fields(counts),
        metrics=metrics,
        source="retrain",
        parent_id=base.id,
    )
    log.info(
        "retrain: candidate %s %s",
        version,
        "promoted" if evaluation["promote"] else "kept inactive",
    )
    return {
        **metrics,
        "candidate": version,
        "promoted": evaluation["promote"],
        "active_before": active.id,
    }
