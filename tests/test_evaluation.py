"""Progressive evaluation (jobs/evaluation.py): a candidate's picks against the serving
policy's logged picks, at the requests' λ and at every preset."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from bandit_router.config import load_settings
from bandit_router.jobs.evaluation import Evaluation, evaluable, judge
from bandit_router.jobs.events import LoggedCandidate, LoggedEvent

# Three models: cheap and fair, mid, and dear but the best.
COST = {"cheap": 0.05, "mid": 0.3, "dear": 1.0}
TRUTH = {"cheap": 0.55, "mid": 0.75, "dear": 0.95}


def event(i: int, rng: np.random.Generator, served: dict[str, float]) -> tuple[LoggedEvent, float]:
    """A decision at λ = 0.2 by a serving policy that logged `served` as its qualities and
    explored uniformly a third of the time; the label is the drawn model's 0/1 grade."""
    lam = 0.2
    names = list(COST)
    greedy = max(names, key=lambda m: served[m] - lam * COST[m])
    pmf = {m: 0.1 + (0.7 if m == greedy else 0.0) for m in names}
    drawn = str(rng.choice(names, p=[pmf[m] for m in names]))
    ev = LoggedEvent(
        decision_id=f"d{i}",
        created_at=datetime.now(UTC),
        emb=np.zeros(4, dtype=np.float32),
        lam=lam,
        candidates=tuple(LoggedCandidate(m, served[m], COST[m], pmf[m]) for m in names),
        drawn=drawn,
        probability=pmf[drawn],
        answered=drawn,
        pref=None,
        sides=(),
        gold=None,
        audit_probability=0.02,
        output_tokens=None,
        policy_version=7,
    )
    return ev, float(rng.random() < TRUTH[drawn])


def evaluation(
    candidate: dict[str, float],
    served: dict[str, float],
    capacity: int | None = None,
    n: int = 3000,
) -> Evaluation:
    rng = np.random.default_rng(0)
    ev = Evaluation(models=[], capacity=capacity)
    for i in range(n):
        e, label = event(i, rng, served)
        assert evaluable(e, label, served_by=7) and not evaluable(e, label, served_by=8)
        ev.add(e, label, np.array([candidate[m] for m in COST]))
    return ev


def test_a_candidate_better_at_the_traffic_lambda_is_promoted() -> None:
    served = {"cheap": 0.55, "mid": 0.45, "dear": 0.70}  # picks cheap at 0.2 (value 0.54)
    candidate = {"cheap": 0.55, "mid": 0.75, "dear": 0.95}  # picks mid at 0.2 (value 0.69)
    report = judge(evaluation(candidate, served), load_settings())
    assert report["promote"], report
    lo, hi = report["reward_range"]
    assert lo <= report["candidate"]["value"] <= hi and lo <= report["active"]["value"] <= hi
    assert report["difference"]["lo"] > 0


def test_a_candidate_clearly_worse_at_a_preset_is_vetoed() -> None:
    # At λ = 0.2 the candidate picks mid (true value 0.69) over the served policy's cheap
    # (0.54); at λ = 0 it still picks mid (0.75) where the served policy picks dear (0.95).
    served = {"cheap": 0.55, "mid": 0.45, "dear": 0.70}
    candidate = {"cheap": 0.55, "mid": 0.75, "dear": 0.30}
    report = judge(evaluation(candidate, served), load_settings())
    at = report["difference_at_presets"]
    assert report["difference"]["lo"] > 0 and at["0.2"]["lo"] > 0  # better where traffic is
    assert at["0"]["hi"] < 0  # clearly worse for quality-first requests
    assert not report["promote"] and "λ = 0" in report["why"]


def test_a_bounded_evaluation_keeps_a_uniform_sample_of_what_it_was_shown() -> None:
    """OPE_MAX_EVENTS: memory stops growing at the capacity; below it nothing changes."""
    served = {"cheap": 0.55, "mid": 0.45, "dear": 0.70}
    candidate = {"cheap": 0.55, "mid": 0.75, "dear": 0.95}
    full = evaluation(candidate, served)
    roomy = evaluation(candidate, served, capacity=3000)
    assert judge(roomy, load_settings()) == judge(full, load_settings())
    sample = evaluation(candidate, served, capacity=500, n=6000)
    assert len(sample) == 500 and sample.offered == 6000
    report = judge(sample, load_settings())
    assert report["evaluated_events"] == 500 and report["offered_events"] == 6000
    assert report["promote"], report
