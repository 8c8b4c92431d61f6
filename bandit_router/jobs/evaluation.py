"""Progressive evaluation of a candidate policy against the policy that served.

While a job trains a candidate on the log, oldest first, it first asks the candidate for its
choice on an event and only then learns the event. The serving policy's choice is in the log:
what it would have picked without exploring (the argmax of its logged scores). Neither had
learned the event when it chose, so both are valued out of sample, on the same events, by
off-policy estimates with the logged probabilities (audit/ope.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bandit_router.audit import ope
from bandit_router.config import Settings
from bandit_router.jobs.events import LoggedEvent


def evaluable(event: LoggedEvent, label: float, served_by: int) -> bool:
    """The event was decided by version `served_by` (the active policy: its logged greedy pick
    is then exactly the active policy's, and the active policy, frozen since it went live, never
    learned it), and the drawn model answered and was rated (its logged probability is that of
    the reward). Comparing with whatever policies served earlier instead promoted candidates
    that beat those but not a learner promoted since (measured: 3 of 35 truly worse candidates
    promoted on RouterBench)."""
    return (
        event.policy_version == served_by
        and event.on_policy
        and bool(np.isfinite(label))
        and bool(event.candidates)
    )


@dataclass(frozen=True)
class _Shown:
    """One evaluated event: enough to replay both policies' picks at any λ."""

    cols: list[int]  # the candidates' columns
    predicted: np.ndarray  # the candidate policy's quality per candidate
    logged: np.ndarray  # the serving policy's logged quality per candidate
    cost: np.ndarray  # normalised cost per candidate
    lam: float  # the request's λ
    a: int  # column of the drawn (and answering) model
    p: float
    label: float


@dataclass
class Evaluation:
    """The events a candidate was shown, over a growing column set of models. With a
    `capacity`, a uniform sample of at most that many of them (reservoir sampling, seeded: the
    same events in the same order keep the same sample, whatever the chunks they came in)."""

    models: list[str]
    capacity: int | None = None
    shown: list[_Shown] = field(default_factory=list)
    offered: int = 0  # events shown, kept or not
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def col(self, model: str) -> int:
        if model not in self.models:
            self.models.append(model)
        return self.models.index(model)

    def add(self, event: LoggedEvent, label: float, predicted: np.ndarray) -> None:
        """`predicted`: the candidate's quality for the event's logged candidates."""
        self._keep(
            _Shown(
                cols=[self.col(c.model) for c in event.candidates],
                predicted=np.asarray(predicted, dtype=float),
                logged=np.array([c.quality for c in event.candidates]),
                cost=np.array([c.cost_norm for c in event.candidates]),
                lam=event.lam,
                a=self.col(event.drawn),
                p=event.probability,
                label=label,
            )
        )

    def _keep(self, item: _Shown) -> None:
        self.offered += 1
        if self.capacity is None or len(self.shown) < self.capacity:
            self.shown.append(item)
        elif (j := int(self.rng.integers(self.offered))) < self.capacity:
            self.shown[j] = item

    def __len__(self) -> int:
        return len(self.shown)

    def paired_terms(self, lam: float | None = None) -> np.ndarray:
        """Per-event DR terms of candidate − served at `lam` (default: each request's own);
        the update job pools them across runs."""
        if len(self.shown) < 2:
            return np.zeros(0)
        cand, served, q, a, p, r = self.matrices(lam)
        return ope.paired_terms(cand, served, a, p, r, np.clip(q, r.min(), r.max()))

    def matrices(self, lam: float | None = None) -> tuple[np.ndarray, ...]:
        """(candidate π, served π, q̂, a, p, r) with both policies picking and rewards paying
        cost at `lam` (default: each request's own λ)."""
        n, K = len(self.shown), len(self.models)
        cand, served, q = np.zeros((n, K)), np.zeros((n, K)), np.zeros((n, K))
        r = np.zeros(n)
        for i, e in enumerate(self.shown):
            at = e.lam if lam is None else lam
            score = e.predicted - at * e.cost
            cand[i, e.cols[int(np.argmax(score))]] = 1.0
            served[i, e.cols[int(np.argmax(e.logged - at * e.cost))]] = 1.0
            q[i, e.cols] = score
            r[i] = e.label - at * e.cost[e.cols.index(e.a)]
        a = np.array([e.a for e in self.shown])
        p = np.array([e.p for e in self.shown])
        return cand, served, q, a, p, r


def _est(e: ope.Estimate) -> dict[str, float]:
    return {"value": e.value, "lo": e.lo, "hi": e.hi, "ess": e.ess}


def judge(ev: Evaluation, settings: Settings) -> dict[str, Any]:
    """Candidate vs the serving policy on the evaluated events, and the promotion decision."""
    n = len(ev)
    if n < 2:
        return {"evaluated_events": n, "promote": False, "why": "fewer than 2 evaluated events"}
    cand, served, q, a, p, r = ev.matrices()
    lo, hi = float(r.min()), float(r.max())
    # The reward model may not extrapolate past what was observed.
    q_hat = np.clip(q, lo, hi)
    rule = settings.promotion_rule
    cmp = ope.compare(
        cand, served, a, p, r, q_hat=q_hat, estimator=settings.promotion_estimator, rule=rule
    )
    report: dict[str, Any] = {
        "evaluated_events": n,
        "offered_events": ev.offered,
        "estimator": cmp.estimator,
        "rule": cmp.rule,
        "candidate": _est(ope.snips(a, p, r, cand)),
        "active": _est(ope.snips(a, p, r, served)),
        "difference": _est(cmp.difference),
        "reward_range": [lo, hi],
        "agreement": float(np.mean(cand.argmax(1) == served.argmax(1))),
        "logging_policy_mean_reward": float(r.mean()),
    }
    # SNIPS values are weighted means of observed rewards, so they lie in [lo, hi], and their
    # paired difference in [lo − hi, hi − lo]. A DR difference can leave that range (its
    # importance-weighted residuals); then the decision falls back on the SNIPS difference.
    span = hi - lo
    if not -span - 1e-9 <= cmp.difference.value <= span + 1e-9:
        report["out_of_range"] = (
            f"the {cmp.estimator} difference {cmp.difference.value:.3f} lies outside "
            f"[{-span:.3f}, {span:.3f}]; decided on the SNIPS difference"
        )
        cmp = ope.compare(cand, served, a, p, r, estimator="snips", rule=rule)
        report["difference"] = _est(cmp.difference)
    report["promote"] = bool(cmp.promote)
    harmed = _harm_at_presets(ev, settings, report)
    if report["promote"] and harmed:
        report["promote"] = False
        report["why"] = f"significantly worse at λ = {', '.join(harmed)}"
    return report


def loses(lo: float, hi: float, margin: float | None) -> bool:
    """Whether a difference (new − active) with this 95% interval vetoes a promotion: a loss
    shown significant, or, with a margin, any loss beyond it that the data cannot rule out."""
    return hi < 0 if margin is None else not lo >= -margin


def _harm_at_presets(ev: Evaluation, settings: Settings, report: dict[str, Any]) -> list[str]:
    """The preset trade-offs at which the candidate loses (`loses`).
    Traffic at one λ says little about the others, yet a candidate that paid off there lost
    0.07 at λ = 0 on RouterBench; what the same events show at each preset is checked."""
    harmed, per_lambda = [], {}
    for name in ("quality", "balanced", "cost"):
        lam = settings.preset_lambda(name)
        cand, served, q, a, p, r = ev.matrices(lam)
        diff = ope.compare(
            cand, served, a, p, r, q_hat=np.clip(q, r.min(), r.max()), estimator="dr"
        ).difference
        per_lambda[f"{lam:g}"] = _est(diff)
        if loses(diff.lo, diff.hi, settings.preset_loss_margin):
            harmed.append(f"{lam:g}")
    report["difference_at_presets"] = per_lambda
    return harmed
