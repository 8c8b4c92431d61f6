"""The policy update job: the closed decisions it has not learned yet → their labels
(jobs/labels.py: gold, or preference moved onto the gold scale) → regression steps on the
LEARNER, a copy of the active policy that keeps learning run after run → a new version, which
goes live only when it is shown to beat the active policy (UPDATE_PROMOTION=gated).

Why gated: online regression steps from a few thousand noisy rewards move near-tied models
back and forth, and near a good policy most such moves lose. Measured with `bench loop` on
RouterBench (warm start, 4,000 rounds, 3 seeds): every update going live lowered the value by
up to 0.02 with the gold grades themselves as feedback and 0.04-0.05 with a judge's, at some λ.
Each event is first shown to the learner, which picks a model, and then learned: with the
choice the serving policy logged, the picks are valued off-policy on events neither had learned
(jobs/evaluation.py). The learner replaces the active policy once the anytime-valid lower bound
of the difference, pooled since the learner forked from the active policy, is above 0.

The job publishes the result in one transaction together with marking the decisions it learned,
so a failed or killed job changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import chain
from typing import Any

import numpy as np
from sqlalchemy import Engine

from bandit_router.audit import ope
from bandit_router.config import Settings
from bandit_router.jobs.evaluation import Evaluation, evaluable, loses
from bandit_router.jobs.events import LoggedEvent, read_events
from bandit_router.jobs.labels import Labeller, fit_labeller
from bandit_router.policy.learner import QualityModel
from bandit_router.policy.regions import Tally
from bandit_router.services.policies import publish_policy, tally_fields, tally_of
from bandit_router.store import repository as repo
from bandit_router.store.models import PolicyVersion, utcnow

log = logging.getLogger(__name__)

BATCH_LIMIT = 200_000  # decisions per run; a backlog larger than this is learned over several runs
GATE_MIN_EVENTS = 100  # evaluated events before the learner may replace the active policy


def teach(
    model: QualityModel,
    event: LoggedEvent,
    label: float,
    labeller: Labeller,
    tally: Tally,
    *,
    value: bool = False,
) -> np.ndarray | None:
    """One event's lesson: its label for the model that answered and, from pairwise feedback,
    the other model's (a label the policy did not draw, learned all the same: regression needs
    no propensity). `value`: also return what the model predicted for the event's logged
    candidates just before this lesson (for off-policy evaluation)."""
    models = event.models
    before = None
    if event.answered is not None and np.isfinite(label):
        chosen = models.index(event.answered)
        if value:  # models begin with the logged candidates, in their order
            before = model.predict_and_learn(event.emb, models, chosen, float(label))
            before = before[: len(event.candidates)]
        else:
            model.learn(event.emb, models, chosen, float(label))
        tally.add(event.answered, event.emb)
    for other, side in labeller.side_labels(event):
        names = models if other in models else [*models, other]
        model.learn(event.emb, names, names.index(other), side)
        tally.add(other, event.emb)
    return before


def learner_of(engine: Engine, active: PolicyVersion) -> PolicyVersion:
    """The newest version the update job has learned since `active` went live (the active
    policy itself when there is none yet)."""
    with engine.connect() as conn:
        row = repo.newest_policy(conn, source="update")
        if row is None or (row.metrics or {}).get("baseline") != active.id:
            return active
        full = repo.get_full_policy(conn, row.id)
    return full if full is not None else active


TRAFFIC = "traffic"  # the requests' own λ; the other gates replay the same events at a preset's


def _gates(
    learner: PolicyVersion, active: PolicyVersion, settings: Settings
) -> dict[str, ope.RunningDifference]:
    """The learner's pooled differences since it forked from the active policy: at the
    traffic's λ (to promote) and at each preset λ (to veto a learner clearly worse there)."""
    keys = [TRAFFIC] + [f"{settings.preset_lambda(p):g}" for p in ("quality", "balanced", "cost")]
    stored = {} if learner is active else (learner.metrics or {}).get("gate", {})
    return {k: ope.RunningDifference(**stored.get(k, {})) for k in dict.fromkeys(keys)}


@dataclass
class _Run:
    """What one update run has gone through, in memory that grows only with BATCH_LIMIT."""

    shown: Evaluation  # a bounded sample (OPE_MAX_EVENTS) of the events valued for the gate
    seen: list[str] = field(default_factory=list)  # marked learned when the run publishes
    learned: int = 0
    label_sum: float = 0.0


def _learn_chunk(
    run: _Run,
    model: QualityModel,
    chunk: list[LoggedEvent],
    labeller: Labeller,
    tally: Tally,
    active_id: int,
) -> None:
    """Each event is first valued (the learner's pick before it learns the event), then taught."""
    for event, label in zip(chunk, labeller.labels(chunk), strict=True):
        run.seen.append(event.decision_id)
        valued = evaluable(event, label, active_id)
        before = teach(model, event, label, labeller, tally, value=valued)
        if before is not None:
            run.shown.add(event, float(label), before)
        if np.isfinite(label):
            run.learned += 1
            run.label_sum += float(label)


def run_update(engine: Engine, settings: Settings) -> dict[str, Any]:
    with engine.connect() as conn:
        active = repo.active_policy(conn)
        pool = [m.name for m in repo.list_models(conn)]
    if active is None:
        raise RuntimeError("no active policy to update")
    closed_before = utcnow() - timedelta(seconds=settings.reward_wait_seconds)
    pending = read_events(
        engine, settings, until=closed_before, unlearned_only=True, max_events=BATCH_LIMIT
    )
    first = next(pending, None)
    if first is None:
        return {"events": 0, "published": None, "parent": active.id}
    labeller = fit_labeller(engine, settings, pool)
    learner = learner_of(engine, active)
    gates = _gates(learner, active, settings)
    tally = tally_of(learner)
    run = _Run(Evaluation(models=[], capacity=settings.ope_max_events))
    model = QualityModel(learner.vw_args, learner.model_bytes)
    try:
        for chunk in chain([first], pending):
            _learn_chunk(run, model, chunk, labeller, tally, active.id)
        blob = model.to_bytes()
    finally:
        model.close()
    shown = run.shown
    for lam, gate in gates.items():
        gate.add(shown.paired_terms(None if lam == TRAFFIC else float(lam)))
    traffic = gates[TRAFFIC]
    lower = traffic.lower_bound()
    margin = settings.preset_loss_margin
    harmed = [
        lam
        for lam, g in gates.items()
        if lam != TRAFFIC and loses(g.lower_bound(), g.upper_bound(), margin)
    ]
    promote = settings.update_promotion == "always" or (
        traffic.n >= GATE_MIN_EVENTS and lower > 0.0 and not harmed
    )
    metrics = {
        "events": run.learned,
        "closed_without_label": len(run.seen) - run.learned,
        "mean_label": run.label_sum / run.learned if run.learned else None,
        "labels": labeller.info,
        "baseline": active.id,
        "gate": {lam: g.as_dict() for lam, g in gates.items()},
        "gate_mean_difference": traffic.mean,
        "gate_lower_bound": lower if np.isfinite(lower) else None,
        "significantly_worse_at": harmed,
        "promoted": bool(promote),
    }
    version = publish_policy(
        engine,
        trained_from_active=active.id,
        activate=promote,
        also=lambda conn, v: repo.mark_learned(conn, run.seen, v),
        vw_args=learner.vw_args,
        model_bytes=blob,
        **tally_fields(tally),
        metrics=metrics,
        source="update",
        parent_id=learner.id,
    )
    log.info(
        "update job: learner %s from %s events, %s",
        version, run.learned, "promoted" if promote else "not (yet) better than the active",
    )  # fmt: skip
    return {**metrics, "published": version, "parent": learner.id}
