"""PPI++ intervals: coverage over repeated simulations, width, and λ̂ behaviour."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from numpy.typing import NDArray

from bandit_router.audit.ppi import (
    BiasInterval,
    Interval,
    bias_interval,
    bias_intervals_by_model,
    bias_moved,
    classical_mean_ci,
    ppi_mean,
)

Array = NDArray[np.float64]
REPS, N_GOLD, N_PROXY = 300, 100, 2000
TRUE_MEAN = 0.6  # E[Y] for Y = 0.6 + 0.15·Z

Proxy = Callable[[Array, np.random.Generator], Array]


def informative(y: Array, rng: np.random.Generator) -> Array:
    # a biased, rescaled judge: PPI++ must stay unbiased through the rectifier
    return 0.8 * y + 0.1 + 0.05 * rng.normal(size=y.size)


def pure_noise(y: Array, rng: np.random.Generator) -> Array:
    return rng.normal(size=y.size)


def simulate(proxy: Proxy, seed: int) -> dict[str, Array]:
    """REPS independent audits; returns coverage indicators, widths and λ̂ per rep."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {k: [] for k in ("ppi_cover", "cl_cover", "ppi_w", "cl_w", "lam")}
    for _ in range(REPS):
        y = TRUE_MEAN + 0.15 * rng.normal(size=N_GOLD + N_PROXY)
        f = proxy(y, rng)
        est, lo, hi, lam = ppi_mean(y[:N_GOLD], f[:N_GOLD], f[N_GOLD:])
        cl = classical_mean_ci(y[:N_GOLD])
        out["ppi_cover"].append(float(lo <= TRUE_MEAN <= hi))
        out["cl_cover"].append(float(cl.lo <= TRUE_MEAN <= cl.hi))
        out["ppi_w"].append(hi - lo)
        out["cl_w"].append(cl.hi - cl.lo)
        out["lam"].append(lam)
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def informative_runs() -> dict[str, Array]:
    return simulate(informative, seed=0)


@pytest.fixture(scope="module")
def noise_runs() -> dict[str, Array]:
    return simulate(pure_noise, seed=1)


def test_ppi_coverage_near_nominal(informative_runs: dict[str, Array]) -> None:
    # binomial sd of a 300-rep coverage estimate is ≈ 0.013
    assert 0.92 <= informative_runs["ppi_cover"].mean() <= 0.98
    assert 0.91 <= informative_runs["cl_cover"].mean() <= 0.985


def test_ppi_narrower_with_informative_proxy(informative_runs: dict[str, Array]) -> None:
    ratio = informative_runs["ppi_w"].mean() / informative_runs["cl_w"].mean()
    # theory at λ = 1: sqrt((Var(Y − f)/n + Var(f)/N) / (Var(Y)/n)) ≈ 0.43
    assert ratio < 0.5
    assert informative_runs["lam"].mean() > 0.9


def test_lambda_near_zero_when_proxy_is_noise(noise_runs: dict[str, Array]) -> None:
    assert noise_runs["lam"].mean() < 0.05
    assert 0.92 <= noise_runs["ppi_cover"].mean() <= 0.98
    # an uninformative proxy costs almost nothing
    assert noise_runs["ppi_w"].mean() / noise_runs["cl_w"].mean() < 1.03


def test_ppi_point_estimate_and_variance_formula() -> None:
    rng = np.random.default_rng(5)
    y = rng.uniform(size=50)
    f = y + 0.1 * rng.normal(size=50)
    f_unl = rng.uniform(size=400)
    res = ppi_mean(y, f, f_unl, lam=0.5)
    assert res.estimate == pytest.approx(y.mean() + 0.5 * (f_unl.mean() - f.mean()))
    se = np.sqrt((y - 0.5 * f).var(ddof=1) / 50 + 0.25 * f_unl.var(ddof=1) / 400)
    assert res.hi - res.lo == pytest.approx(2 * 1.959964 * se, rel=1e-5)
    tuned = ppi_mean(y, f, f_unl)
    var_f = np.concatenate([f, f_unl]).var(ddof=1)
    expected = np.cov(y, f)[0, 1] / ((1 + 50 / 400) * var_f)
    assert 0.0 < expected < 1.0
    assert tuned.lambda_hat == pytest.approx(expected)
    # a compressed but perfect proxy asks for λ = Cov/Var = 2: clipped to 1
    assert ppi_mean(y, 0.5 * y, 0.5 * f_unl).lambda_hat == 1.0
    # λ = 0 is the classical interval
    zero = ppi_mean(y, f, f_unl, lam=0.0)
    assert zero[:3] == pytest.approx(tuple(classical_mean_ci(y)))


def test_f_all_including_gold_rows_matches_disjoint_form() -> None:
    rng = np.random.default_rng(6)
    y = rng.uniform(size=80)
    f = y + 0.2 * rng.normal(size=80)
    f_unl = rng.uniform(size=900) + 0.1
    disjoint = ppi_mean(y, f, f_unl)
    combined = ppi_mean(y, f, np.concatenate([f, f_unl]), f_all_includes_gold=True)
    assert combined == pytest.approx(disjoint)


def test_bias_interval_covers_true_mean_bias() -> None:
    rng = np.random.default_rng(7)
    true_bias, n, big_n = 0.08, 150, 3000
    covered, widths, classical_widths = [], [], []
    for _ in range(REPS):
        gold = np.clip(0.55 + 0.2 * rng.normal(size=n + big_n), 0, 1)
        pref = gold - true_bias + 0.1 * rng.normal(size=n + big_n)
        res = bias_interval(gold[:n], pref[:n], pref[n:])
        covered.append(res.lo <= true_bias <= res.hi)
        widths.append(res.hi - res.lo)
        cl = classical_mean_ci(gold[:n] - pref[:n])
        classical_widths.append(cl.hi - cl.lo)
    assert 0.92 <= np.mean(covered) <= 0.98
    assert np.mean(widths) <= 1.02 * np.mean(classical_widths)
    assert isinstance(res, BiasInterval) and res.n_gold == n and res.n_pref == n + big_n


def test_bias_intervals_by_model_and_alert() -> None:
    rng = np.random.default_rng(8)
    k_gold = np.repeat([0, 1], 200)
    gold = rng.uniform(size=400)
    pref = gold - np.where(k_gold == 0, 0.0, 0.2) + 0.05 * rng.normal(size=400)
    k_unl = np.repeat([0, 1], 2000)
    pref_unl = rng.uniform(size=4000) - np.where(k_unl == 0, 0.0, 0.2)
    by_model = bias_intervals_by_model(k_gold, gold, pref, k_unl, pref_unl)
    assert set(by_model) == {0, 1}
    assert by_model[0].lo < 0.0 < by_model[0].hi
    assert by_model[1].lo < 0.2 < by_model[1].hi and by_model[1].lo > 0.1

    previous = by_model[1]
    assert not bias_moved(previous, previous.estimate)
    assert bias_moved(previous, previous.hi + 0.01)
    assert bias_moved(previous, previous.lo - 0.01)
    assert bias_moved((0.1, 0.2), 0.25) and not bias_moved(Interval(0.15, 0.1, 0.2), 0.12)


def test_ppi_ipw_terms_cover_with_unequal_labelling_probabilities() -> None:
    """Gold drawn with known, unequal π (as audits are): the terms' interval covers E[Y], and an
    informative prediction narrows it against the gold-only (λ = 0) weighting."""
    from bandit_router.audit.ppi import classical_mean_ci, ppi_ipw_terms

    rng = np.random.default_rng(7)
    hits, narrower, runs = 0, 0, 400
    for _ in range(runs):
        x = rng.uniform(0, 1, 2000)
        y = rng.binomial(1, 0.2 + 0.6 * x).astype(float)  # E[Y] = 0.5
        f = np.clip(0.2 + 0.6 * x + rng.normal(0, 0.1, x.size), 0, 1)
        pi = 0.03 + 0.2 * x  # labelled more often where y is higher: a plain mean is biased
        w = np.where(rng.random(x.size) < pi, 1 / pi, 0.0)
        terms, lam = ppi_ipw_terms(y, f, w)
        ci = classical_mean_ci(terms)
        hits += ci.lo <= 0.5 <= ci.hi
        gold_only = classical_mean_ci(w * y)
        narrower += (ci.hi - ci.lo) < (gold_only.hi - gold_only.lo) and lam > 0
    assert hits / runs >= 0.92
    assert narrower / runs >= 0.95
