"""Which label an event teaches, one rule for the update and the retraining job: the gold grade
where audited; elsewhere the preference reward moved onto the gold scale by a bias model fitted
on the paired audits (Meta-Router); the raw preference only while too few audits exist.

Why every label goes to the gold scale: λ trades quality against cost in ONE unit. A warm start
trained on gold, or an earlier retraining, predicts on the gold scale; learning a judge's
compressed or shifted scale on top of it moved only the models the policy kept choosing, and the
trade-off drifted (measured: −0.03 to −0.04 in value at λ = 0.2 with an unbiased but noisy judge
on RouterBench, none with the same feedback mapped to the gold scale).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import numpy as np

from bandit_router.audit.judge import JudgeCalibration
from bandit_router.audit.training import MIN_AUDITS, LabelCorrector
from bandit_router.config import Settings
from bandit_router.jobs.events import LoggedEvent, newest, read_events
from bandit_router.store.models import utcnow

log = logging.getLogger(__name__)

# The bias model is fitted on the newest this many audited events of the window: a few thousand
# already pin it down, and the fit must not grow with the traffic.
AUDIT_SAMPLE = 20_000
# Labels for a regression learner must be unbiased, not bounded to the gold range: thumbs from a
# judge that is right 78% of the time correct to about −0.4 and 1.4 (see LabelCorrector).
LABEL_BOUNDS = (-1.0, 2.0)
# The bias model is fitted on labels the judge model already put on the gold scale (so no scale
# map of its own); η̂ from a few hundred audits is noise, so left out.
CORRECTOR_OPTIONS: dict[str, Any] = {"normaliser": "none", "pref_feature": False}


def length_features(tokens: list[float | None]) -> np.ndarray:
    """log answer length and whether it is known (0 stands in when not): a judge favours longer
    answers, so the bias model may use it."""
    known = np.array([t is not None for t in tokens], dtype=float)
    values = np.array([np.log1p(t) if t is not None else 0.0 for t in tokens])
    return np.column_stack([values, known])


@dataclass
class Labeller:
    """Labels for events: built once per job run from the window's audits."""

    models: list[str]
    judge: JudgeCalibration | None = None
    corrector: LabelCorrector | None = None  # the bias model fitted on top of the judge's map
    use_length: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def correct(
        self, X: np.ndarray, k: np.ndarray, y: np.ndarray, z: np.ndarray | None
    ) -> np.ndarray:
        """Preference rewards → gold-scale labels (k indexes `models`)."""
        z = z if self.use_length else None
        if self.judge is not None:
            y = self.judge.to_gold_scale(y, k, z)
        if self.corrector is not None:
            return self.corrector.correct(X, k, y, z)
        return np.clip(y, *LABEL_BOUNDS)

    def _corrected(
        self, events: list[LoggedEvent], models: list[str], rewards: list[float]
    ) -> np.ndarray:
        y = np.asarray(rewards, dtype=float)
        if self.judge is None or not events:
            return y
        col = {m: i for i, m in enumerate(self.models)}
        known = np.array([m in col for m in models])
        out = y.copy()  # a model the bias model has never heard of keeps its raw reward
        if known.any():
            rows = np.flatnonzero(known)
            X = np.stack([events[i].emb for i in rows])
            k = np.array([col[models[i]] for i in rows])
            feats = length_features([events[i].output_tokens for i in rows])
            out[rows] = self.correct(X, k, y[rows], feats)
        return out

    def labels(self, events: list[LoggedEvent]) -> np.ndarray:
        """Per event, the label of the model that answered (NaN: nothing to learn)."""
        out = np.full(len(events), np.nan)
        prefs = [i for i, e in enumerate(events) if e.gold is None and e.pref is not None]
        for i, e in enumerate(events):
            if e.answered is not None and e.gold is not None:
                out[i] = e.gold
        pref_events = [events[i] for i in prefs if events[i].answered is not None]
        idx = [i for i in prefs if events[i].answered is not None]
        if idx:
            out[idx] = self._corrected(
                pref_events,
                [e.answered for e in pref_events],  # type: ignore[misc]
                [e.pref for e in pref_events],  # type: ignore[misc]
            )
        return out

    def side_labels(self, event: LoggedEvent) -> list[tuple[str, float]]:
        """Pairwise feedback's verdict on the other model, on the gold scale (its answer's
        length is unknown here)."""
        if not event.sides:
            return []
        models = [m for m, _ in event.sides]
        bare = replace(event, output_tokens=None)
        values = self._corrected([bare] * len(models), models, [r for _, r in event.sides])
        return list(zip(models, values.tolist(), strict=True))


def fit_labeller(
    engine: Any, settings: Settings, models: list[str], *, answer_length: bool = True
) -> Labeller:
    """The labeller for this job run: a bias model fitted on the window's newest audits that
    also carry preference feedback, when there are enough of them. `answer_length=False` keeps
    the answers' lengths out of the bias model (an ablation)."""
    method = settings.bias_method
    labeller = Labeller(sorted(set(models)))
    if method in ("pooled", "preference_only"):
        labeller.info = {"method": method}
        return labeller
    since = utcnow() - timedelta(days=settings.retrain_window_days)
    paired = newest(
        read_events(engine, settings, since=since, graded_only=True),
        AUDIT_SAMPLE,
        only=lambda e: e.pref is not None and e.answered is not None,
    )
    labeller.info = {"method": method, "n_paired": len(paired)}
    if len(paired) < MIN_AUDITS:
        labeller.info["fallback"] = f"{len(paired)} paired audits (< {MIN_AUDITS}): raw preference"
        return labeller
    rows = paired
    if method in ("r", "dr"):  # the unpaired learners also need preference-only events
        rows = paired + newest(
            read_events(engine, settings, since=since),
            AUDIT_SAMPLE,
            only=lambda e: e.gold is None and e.pref is not None and e.answered is not None,
        )
    names = sorted(set(models) | {e.answered for e in rows if e.answered is not None})
    col = {m: i for i, m in enumerate(names)}
    tokens = [e.output_tokens for e in rows]
    labeller.use_length = answer_length and any(t is not None for t in tokens)
    X = np.stack([e.emb for e in rows])
    k = np.array([col[e.answered] for e in rows])  # type: ignore[index]
    pref = np.array([e.pref for e in rows], dtype=float)
    gold = np.array([np.nan if e.gold is None else e.gold for e in rows], dtype=float)
    pi = np.array([e.audit_probability for e in rows], dtype=float)
    z = length_features(tokens) if labeller.use_length else None
    both = np.isfinite(gold)
    labeller.models = names
    labeller.judge = JudgeCalibration(len(names)).fit(
        pref[both], gold[both], k[both], None if z is None else z[both], 1 / pi[both]
    )
    labeller.info["judge"] = labeller.judge.summary()
    if method != "judge":
        on_scale = labeller.judge.to_gold_scale(pref, k, z)
        corrector = LabelCorrector(method, seed=0, bounds=LABEL_BOUNDS, **CORRECTOR_OPTIONS)
        try:
            labeller.corrector = corrector.fit(X, k, len(names), on_scale, gold, pi, z)
        except ValueError as exc:  # e.g. no variation at all in the audits yet
            labeller.info["bias_model"] = f"not fitted: {exc}"
    labeller.info["answer_length_feature"] = labeller.use_length
    labeller.info["mean_bias_by_model"] = _mean_bias(labeller, X, k, pref, z, names, both)
    return labeller


def _mean_bias(
    labeller: Labeller,
    X: np.ndarray,
    k: np.ndarray,
    pref: np.ndarray,
    z: np.ndarray | None,
    names: list[str],
    rows: np.ndarray,
) -> dict[str, float]:
    """Per model, the mean correction (label − preference) over the audited events."""
    delta = (
        labeller.correct(X[rows], k[rows], pref[rows], None if z is None else z[rows]) - pref[rows]
    )
    return {names[j]: float(delta[k[rows] == j].mean()) for j in np.unique(k[rows])}
