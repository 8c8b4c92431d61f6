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


@dataclass
class Evaluation:
    """Per evaluated event: the logged action, its probability, reward, and both policies'
    choices and the candidate's predicted reward, over a fixed column set of models."""

    models: list[str]
    a: list[int] = field(default_factory=list)
    p: list[float] = field(default_factory=list)
    r: list[float] = field(default_factory=list)
    candidate: list[int] = field(default_factory=list)
    served: list[int] = field(default_factory=list)
    q_hat: list[tuple[list[int], np.ndarray]] = field(default_factory=list)

    def col(self, model: str) -> int:
        if model not in self.models:
            self.models.append(model)
        return self.models.index(model)

    def add(self, event: LoggedEvent, label: float, predicted: np.ndarray) -> None:
        """`predicted`: the candidate's quality for the event's logged candidates."""
        names = [c.model for c in event.candidates]
        cost = np.array([c.cost_norm for c in event.candidates])
        score = predicted - event.lam * cost
        cols = [self.col(m) for m in names]
        self.a.append(self.col(event.drawn))
        self.p.append(event.probability)
        self.r.append(label - event.lam * event.cost_of(event.drawn))
        self.candidate.append(cols[int(np.argmax(score))])
        self.served.append(self.col(event.logged_greedy()))
        self.q_hat.append((cols, score))

    def trim(self, keep: int) -> None:
        for name in ("a", "p", "r", "candidate", "served", "q_hat"):
            setattr(self, name, getattr(self, name)[-keep:])

    def __len__(self) -> int:
        return len(self.a)

    def paired_terms(self) -> np.ndarray:
        """Per-event DR terms of candidate − served (pooled across runs by the update job)."""
        if not self.a:
            return np.zeros(0)
        cand, served, q, a, p, r = self.matrices()
        if len(a) < 2:
            return np.zeros(0)
        return ope.paired_terms(cand, served, a, p, r, np.clip(q, r.min(), r.max()))

    def matrices(self) -> tuple[np.ndarray, ...]:
        n, K = len(self.a), len(self.models)
        rows = np.arange(n)
        cand, served, q = np.zeros((n, K)), np.zeros((n, K)), np.zeros((n, K))
        cand[rows, self.candidate] = 1.0
        served[rows, self.served] = 1.0
        for i, (cols, scores) in enumerate(self.q_hat):
            q[i, cols] = scores
        return cand, served, q, np.array(self.a), np.array(self.p), np.array(self.r)


def _est(e: ope.Estimate) -> dict[str, float]:
    return {"value": e.value, "lo": e.lo, "hi": e.hi, "ess": e.ess}


def judge(ev: Evaluation, settings: Settings) -> dict[str, Any]:
    """Candidate vs the serving policy on the evaluated events, and the promotion decision."""
    n = len(ev.a)
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
    return report
