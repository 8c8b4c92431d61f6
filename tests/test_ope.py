"""Off-policy evaluation against policies whose value is known in closed form."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from numpy.typing import NDArray

from bandit_router.audit.ope import Estimate, compare, dr, ips, snips

Array = NDArray[np.float64]
CONTEXTS, K = 20, 4
fixed = np.random.default_rng(99)
MU = fixed.uniform(0.1, 0.9, size=(CONTEXTS, K))  # Bernoulli reward mean per (context, action)
LOGGING = np.exp(fixed.normal(size=(CONTEXTS, K)))
LOGGING /= LOGGING.sum(axis=1, keepdims=True)  # softmax logging policy
UNIFORM = np.full((CONTEXTS, K), 1.0 / K)


def one_hot(actions: NDArray[np.int64]) -> Array:
    return np.eye(K)[actions]


def value(policy: Array, mu: Array = MU) -> float:
    """Closed-form value: contexts are uniform, so V = mean_x Σ_a π(a|x)·μ(x, a)."""
    return float((policy * mu).sum(axis=1).mean())


OPTIMAL = one_hot(MU.argmax(axis=1))
SOFT = np.exp(4 * MU) / np.exp(4 * MU).sum(axis=1, keepdims=True)


@dataclass
class Log:
    x: NDArray[np.int64]
    a: NDArray[np.int64]
    p: Array
    r: Array

    def rows(self, policy: Array) -> Array:
        return policy[self.x]


def draw_log(n: int, rng: np.random.Generator, logging: Array = LOGGING, mu: Array = MU) -> Log:
    x = rng.integers(CONTEXTS, size=n)
    cdf = logging[x].cumsum(axis=1)
    a = np.minimum((rng.random(n)[:, None] > cdf).sum(axis=1), K - 1)
    r = (rng.random(n) < mu[x, a]).astype(float)
    return Log(x, a, logging[x, a], r)


@pytest.fixture(scope="module")
def runs() -> dict[str, list[Estimate]]:
    rng = np.random.default_rng(0)
    out: dict[str, list[Estimate]] = {"ips": [], "snips": [], "dr": [], "soft_dr": [], "bad_dr": []}
    for _ in range(300):
        log = draw_log(2000, rng)
        q_hat = log.rows(MU) + 0.02 * rng.normal(size=(2000, K))  # a good reward model
        pi = log.rows(OPTIMAL)
        out["ips"].append(ips(log.a, log.p, log.r, pi))
        out["snips"].append(snips(log.a, log.p, log.r, pi))
        out["dr"].append(dr(log.a, log.p, log.r, pi, q_hat))
        out["soft_dr"].append(dr(log.a, log.p, log.r, log.rows(SOFT), q_hat))
        # a badly wrong reward model: the importance-weighted residual must still remove its bias
        out["bad_dr"].append(dr(log.a, log.p, log.r, pi, 1.0 - log.rows(MU)))
    return out


@pytest.mark.parametrize("name", ["ips", "snips", "dr", "soft_dr", "bad_dr"])
def test_estimators_unbiased_with_nominal_coverage(
    runs: dict[str, list[Estimate]], name: str
) -> None:
    truth = value(SOFT) if name == "soft_dr" else value(OPTIMAL)
    values = np.array([e.value for e in runs[name]])
    # unbiased: the mean over 300 reps is within 3 Monte Carlo standard errors of the truth
    assert abs(values.mean() - truth) < 3 * values.std() / np.sqrt(values.size)
    coverage = np.mean([e.lo <= truth <= e.hi for e in runs[name]])
    assert 0.92 <= coverage <= 0.98
    # the reported standard error matches the spread across reps
    assert np.mean([e.se for e in runs[name]]) == pytest.approx(values.std(), rel=0.15)


def test_dr_has_lower_variance_with_a_good_reward_model(runs: dict[str, list[Estimate]]) -> None:
    sd = {k: np.std([e.value for e in runs[k]]) for k in ("ips", "snips", "dr")}
    assert sd["dr"] < 0.6 * sd["ips"]
    assert sd["snips"] < sd["ips"]
    width = {k: np.mean([e.hi - e.lo for e in runs[k]]) for k in ("ips", "dr")}
    assert width["dr"] < 0.6 * width["ips"]


def test_effective_sample_size_under_uniform_logging() -> None:
    log = draw_log(4000, np.random.default_rng(1), logging=UNIFORM)
    est = ips(log.a, log.p, log.r, log.rows(OPTIMAL))
    # weights are K on the ~n/K matching rows and 0 elsewhere: ESS = number of matches
    assert est.ess == pytest.approx(float((log.a == OPTIMAL.argmax(axis=1)[log.x]).sum()))
    assert est.n == 4000
    on_policy = ips(log.a, log.p, log.r, log.rows(UNIFORM))
    assert on_policy.ess == pytest.approx(4000)
    assert on_policy.value == pytest.approx(log.r.mean())


def test_snips_delta_method_standard_error() -> None:
    log = draw_log(500, np.random.default_rng(2))
    pi = log.rows(SOFT)
    est = snips(log.a, log.p, log.r, pi)
    w = pi[np.arange(500), log.a] / log.p
    assert est.value == pytest.approx((w * log.r).sum() / w.sum())
    psi = w * (log.r - est.value) / w.mean()
    assert est.se == pytest.approx(np.sqrt(psi.var(ddof=1) / 500))


def test_promotion_of_a_clearly_better_policy() -> None:
    rng = np.random.default_rng(3)
    log = draw_log(3000, rng)
    q_hat = log.rows(MU)
    worst = one_hot(MU.argmin(axis=1))
    assert value(OPTIMAL) - value(worst) > 0.3
    for rule in ("point", "upper", "paired"):
        assert compare(log.rows(OPTIMAL), log.rows(worst), log.a, log.p, log.r, rule=rule).promote
        assert not compare(
            log.rows(worst), log.rows(OPTIMAL), log.a, log.p, log.r, rule=rule
        ).promote
    # against the logging policy itself (on-policy mean reward), with DR
    result = compare(log.rows(OPTIMAL), None, log.a, log.p, log.r, q_hat=q_hat)
    assert result.estimator == "dr" and result.promote
    assert result.baseline.value == pytest.approx(log.r.mean())


def test_paired_difference_uses_the_shared_rows() -> None:
    log = draw_log(3000, np.random.default_rng(7))
    result = compare(log.rows(SOFT), log.rows(OPTIMAL), log.a, log.p, log.r, rule="paired")
    cand, base, diff = result.candidate, result.baseline, result.difference
    assert diff.value == pytest.approx(cand.value - base.value)
    # both policies up-weight the same rows, so the paired error is far below the unpaired one
    assert diff.se < 0.8 * np.hypot(cand.se, base.se)


def test_an_equal_policy_is_not_promoted() -> None:
    rng = np.random.default_rng(4)
    log = draw_log(3000, rng)
    same = log.rows(SOFT)
    for rule in ("point", "upper", "paired"):
        assert not compare(same, same, log.a, log.p, log.r, rule=rule).promote


def test_false_promotion_rate_between_distinct_equal_value_policies() -> None:
    """Actions 0 and 1 pay the same everywhere; 'always 0' vs 'always 1' must rarely promote."""
    mu = MU.copy()
    mu[:, 1] = mu[:, 0]
    always0, always1 = (
        one_hot(np.zeros(CONTEXTS, dtype=np.int64)),
        one_hot(np.ones(CONTEXTS, dtype=np.int64)),
    )
    assert value(always0, mu) == value(always1, mu)
    rng = np.random.default_rng(5)
    promoted = {"point": 0, "upper": 0, "paired": 0}
    reps = 200
    for _ in range(reps):
        log = draw_log(2000, rng, logging=UNIFORM, mu=mu)
        for rule in promoted:
            promoted[rule] += compare(
                log.rows(always0), log.rows(always1), log.a, log.p, log.r, rule=rule
            ).promote
    rate = {rule: count / reps for rule, count in promoted.items()}
    assert rate["paired"] <= 0.06  # one-sided 2.5% by construction
    assert rate["upper"] <= 0.02
    assert rate["point"] <= 0.15  # ignores the baseline's own noise: P(Z > 1.96/√2) ≈ 8%
    assert rate["upper"] <= rate["paired"] <= rate["point"]


def test_input_validation() -> None:
    log = draw_log(50, np.random.default_rng(6))
    pi = log.rows(SOFT)
    with pytest.raises(ValueError):
        ips(log.a, np.zeros(50), log.r, pi)
    with pytest.raises(ValueError):
        ips(log.a, log.p, log.r, pi[:, :2])
    with pytest.raises(ValueError):
        ips(log.a, log.p, log.r, pi * 2)
    with pytest.raises(ValueError):
        compare(pi, pi, log.a, log.p, log.r, estimator="dr")
