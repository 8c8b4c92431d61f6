"""Prediction-powered inference (PPI++) for means, and per-model bias intervals.

Setting: n gold labels Y with proxy scores f on the same rows, plus N proxy scores on rows without
gold (judge scores, preference feedback, corrected labels). PPI++ (Angelopoulos, Duchi, Zrnic 2023)
estimates E[Y] by

    θ̂_λ = mean_n(Y) + λ·(mean_N(f) − mean_n(f)),

which is unbiased for every fixed λ because the bracket has mean zero; λ only trades variance:

    Var(θ̂_λ) = Var(Y − λf)/n + λ²·Var(f)/N,   minimised at λ* = Cov(Y, f) / ((1 + n/N)·Var(f)).

λ̂ plugs in sample moments and is clipped to [0, 1] (0 = classical gold-only mean, 1 = plain PPI),
so an uninformative proxy costs (almost) nothing. Intervals are normal approximations with the
variance above evaluated at λ̂.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import norm

Array = NDArray[np.float64]

__all__ = [
    "BiasInterval",
    "Interval",
    "PPIResult",
    "bias_interval",
    "bias_intervals_by_model",
    "bias_moved",
    "classical_mean_ci",
    "normal_interval",
    "ppi_ipw_lambda",
    "ppi_ipw_terms",
    "ppi_lambda",
    "ppi_mean",
]


class Interval(NamedTuple):
    estimate: float
    lo: float
    hi: float


class PPIResult(NamedTuple):
    estimate: float
    lo: float
    hi: float
    lambda_hat: float


class BiasInterval(NamedTuple):
    """Mean bias E[gold − pref] of one model with a (1 − α) interval."""

    estimate: float
    lo: float
    hi: float
    lambda_hat: float
    n_gold: int
    n_pref: int


class _HasBounds(Protocol):
    @property
    def lo(self) -> float: ...

    @property
    def hi(self) -> float: ...


def _vec(values: ArrayLike, name: str) -> Array:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains non-finite values")
    return arr


def _z(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must lie in (0, 1)")
    return float(norm.ppf(1.0 - alpha / 2.0))


def _interval(estimate: float, variance: float, alpha: float) -> tuple[float, float, float]:
    half = _z(alpha) * float(np.sqrt(max(variance, 0.0)))
    return float(estimate), float(estimate - half), float(estimate + half)


def normal_interval(estimate: float, variance: float, alpha: float = 0.05) -> Interval:
    """A (1 − α) normal interval around an estimate whose variance is known (from moments)."""
    return Interval(*_interval(estimate, variance, alpha))


def classical_mean_ci(y: ArrayLike, alpha: float = 0.05) -> Interval:
    """Gold-only mean with a normal-approximation interval (the comparison baseline)."""
    arr = _vec(y, "y")
    if arr.size < 2:
        raise ValueError("need at least two observations")
    return Interval(*_interval(arr.mean(), arr.var(ddof=1) / arr.size, alpha))


def _unlabelled_moments(
    f_gold: Array, f_all: Array, f_all_includes_gold: bool
) -> tuple[float, float, int]:
    """Mean, variance and size of the proxy scores on rows WITHOUT gold.

    When `f_all` also contains the gold rows, their sums are subtracted exactly, so the estimator
    stays the disjoint-sample one for which the λ* formula and the variance above are correct.
    """
    if f_all_includes_gold:
        big_n = int(f_all.size - f_gold.size)
        if big_n < 0:
            raise ValueError("f_all is smaller than f_gold but f_all_includes_gold=True")
        total = f_all.sum() - f_gold.sum()
        total_sq = (f_all**2).sum() - (f_gold**2).sum()
    else:
        big_n, total, total_sq = int(f_all.size), f_all.sum(), (f_all**2).sum()
    if big_n == 0:
        return 0.0, 0.0, 0
    mean = total / big_n
    var = max(total_sq - big_n * mean**2, 0.0) / max(big_n - 1, 1)
    return float(mean), float(var), big_n


def ppi_lambda(y_gold: Array, f_gold: Array, var_f: float, big_n: int) -> float:
    """λ̂ = Cov(Y, f) / ((1 + n/N)·Var(f)) clipped to [0, 1]; 0 without unlabelled rows."""
    n = y_gold.size
    if big_n == 0 or var_f <= 1e-15:
        return 0.0
    cov = float(np.cov(y_gold, f_gold, ddof=1)[0, 1])
    return float(np.clip(cov / ((1.0 + n / big_n) * var_f), 0.0, 1.0))


def ppi_mean(
    y_gold: ArrayLike,
    f_gold: ArrayLike,
    f_all: ArrayLike,
    alpha: float = 0.05,
    *,
    f_all_includes_gold: bool = False,
    lam: float | None = None,
) -> PPIResult:
    """PPI++ estimate of E[Y] with a normal-approximation (1 − α) interval.

    y_gold, f_gold: gold labels and proxy scores on the n audited rows.
    f_all: proxy scores on the N rows without gold (set `f_all_includes_gold=True` if it holds
    every row, audited ones included). `lam` fixes λ instead of tuning it (λ = 1 is plain PPI).
    Returns (estimate, lo, hi, lambda_hat).
    """
    y, fg, fa = _vec(y_gold, "y_gold"), _vec(f_gold, "f_gold"), _vec(f_all, "f_all")
    n = y.size
    if n < 2 or fg.size != n:
        raise ValueError("need >= 2 gold rows and one proxy score per gold row")
    mean_u, var_u, big_n = _unlabelled_moments(fg, fa, f_all_includes_gold)
    # Var(f) from every proxy score: it is the better estimate and both samples share it.
    every_f = fa if f_all_includes_gold else np.concatenate([fg, fa])
    var_f = float(every_f.var(ddof=1))
    lam_hat = ppi_lambda(y, fg, var_f, big_n) if lam is None else float(lam)
    if big_n == 0:
        lam_hat = 0.0
    estimate = y.mean() + lam_hat * (mean_u - fg.mean())
    variance = (y - lam_hat * fg).var(ddof=1) / n
    if big_n > 0:
        variance += lam_hat**2 * var_u / big_n
    return PPIResult(*_interval(estimate, variance, alpha), lambda_hat=lam_hat)


def bias_interval(
    gold: ArrayLike,
    pref: ArrayLike,
    pref_unlabelled: ArrayLike,
    alpha: float = 0.05,
) -> BiasInterval:
    """Mean bias D = E[gold] − E[pref] of one model, with a (1 − α) interval.

    gold, pref: both labels on the n audited events; pref_unlabelled: preference scores on the N
    events without gold (same model, same scale—normalise first). E[gold] is estimated by PPI++
    with the preference score as proxy and E[pref] by the mean over all n + N events:

        D̂ = mean_n(g) + λ(mean_N(y) − mean_n(y)) − (n·mean_n(y) + N·mean_N(y))/(n + N)
           = mean_n(g − a·y) + b·mean_N(y),   a = λ + n/(n+N),  b = λ − N/(n+N),
        Var(D̂) = Var(g − a·y)/n + b²·Var(y)/N,

    whose minimiser in λ is the same λ* as PPI++. Assumes audited events are a uniform random
    sample of the model's traffic (constant audit probability).
    """
    g, y, yu = _vec(gold, "gold"), _vec(pref, "pref"), _vec(pref_unlabelled, "pref_unlabelled")
    n, big_n = g.size, yu.size
    if n < 2 or y.size != n:
        raise ValueError("need >= 2 audited events with both labels")
    var_y = float(np.concatenate([y, yu]).var(ddof=1))
    lam = ppi_lambda(g, y, var_y, big_n)
    a = lam + n / (n + big_n)
    b = lam - big_n / (n + big_n)
    mean_u = float(yu.mean()) if big_n else 0.0
    estimate = float((g - a * y).mean() + b * mean_u)
    variance = (g - a * y).var(ddof=1) / n
    if big_n > 1:
        variance += b**2 * yu.var(ddof=1) / big_n
    est, lo, hi = _interval(estimate, variance, alpha)
    return BiasInterval(est, lo, hi, lam, n, n + big_n)


def bias_intervals_by_model(
    k_gold: ArrayLike,
    gold: ArrayLike,
    pref: ArrayLike,
    k_unlabelled: ArrayLike,
    pref_unlabelled: ArrayLike,
    alpha: float = 0.05,
) -> dict[int, BiasInterval]:
    """`bias_interval` for every model with at least two audited events."""
    kg = np.asarray(k_gold, dtype=np.int64).ravel()
    ku = np.asarray(k_unlabelled, dtype=np.int64).ravel()
    g, y, yu = _vec(gold, "gold"), _vec(pref, "pref"), _vec(pref_unlabelled, "pref_unlabelled")
    out: dict[int, BiasInterval] = {}
    for model in np.unique(kg):
        rows = kg == model
        if rows.sum() >= 2:
            out[int(model)] = bias_interval(g[rows], y[rows], yu[ku == model], alpha)
    return out


def bias_moved(previous_interval: _HasBounds | tuple[float, float], new_estimate: float) -> bool:
    """Alert when a new bias estimate leaves the previous interval.

    `previous_interval` is any result with .lo/.hi (Interval, PPIResult, BiasInterval) or a
    (lo, hi) pair; `new_estimate` is a number (pass `.estimate` of a fresh interval).
    """
    # NamedTuple results are tuples too, so look for the named bounds first.
    lo_attr, hi_attr = (
        getattr(previous_interval, "lo", None),
        getattr(previous_interval, "hi", None),
    )
    if lo_attr is not None and hi_attr is not None:
        lo, hi = float(lo_attr), float(hi_attr)
    else:
        lo, hi = (float(v) for v in cast(tuple[float, float], previous_interval))
    return not lo <= float(new_estimate) <= hi


def ppi_ipw_terms(y: ArrayLike, f: ArrayLike, w: ArrayLike) -> tuple[Array, float]:
    """PPI++ when gold labels were drawn with known, unequal probabilities (audits: π varies
    with the policy's uncertainty): per-row terms whose mean estimates E[Y], and λ̂.

    Each of the N rows has a proxy score f; w = ξ/π is the inverse labelling probability on a
    labelled row (ξ = 1) and 0 elsewhere, where y is ignored. The term

        φ_i = λ·f_i + w_i·(y_i − λ·f_i)

    has mean E[Y] for every fixed λ (E[w | x] = 1), and with π constant it is the PPI++ estimate
    of `ppi_mean`. Var(φ) = Var(wy) + 2λ·Cov(wy, (1−w)f) + λ²·Var((1−w)f) is smallest at
    λ* = −Cov(wy, (1−w)f) / Var((1−w)f), clipped to [0, 1] like `ppi_lambda`. Returning the
    terms lets a caller take ratios of two such means (delta method) on the same rows.
    """
    fv, wv = _vec(f, "f"), _vec(w, "w")
    yv = np.where(wv > 0, np.asarray(y, dtype=np.float64).ravel(), 0.0)
    if not np.isfinite(yv).all():
        raise ValueError("y contains non-finite values on labelled rows")
    wy, rest = wv * yv, (1.0 - wv) * fv
    var_rest = float(rest.var(ddof=1)) if rest.size > 1 else 0.0
    cov = float(np.cov(wy, rest, ddof=1)[0, 1]) if var_rest > 0 else 0.0
    lam = ppi_ipw_lambda(cov, var_rest)
    return wy + lam * rest, lam


def ppi_ipw_lambda(cov_labelled_rest: float, var_rest: float) -> float:
    """λ̂ of `ppi_ipw_terms` from Cov(wy, (1−w)f) and Var((1−w)f), for callers that hold the
    moments rather than the rows (the streamed report)."""
    if var_rest <= 1e-15:
        return 0.0
    return float(np.clip(-cov_labelled_rest / var_rest, 0.0, 1.0))
