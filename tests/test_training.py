"""Training labels from preference feedback and gold audits (audit/training.py).

A synthetic log with a KNOWN bias: true quality ψ_k(x), preference on a compressed, shifted
scale plus a query- and model-dependent bias, gold revealed with a known probability π(x).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from bandit_router.audit.training import (
    CORRECTED_METHODS,
    LooRidge,
    corrected_labels,
    fit_quality,
)

K = 3


class Log(NamedTuple):
    X: np.ndarray
    k: np.ndarray
    truth: np.ndarray  # ψ_k(x) of each event
    pref: np.ndarray
    gold: np.ndarray  # NaN where not audited
    propensity: np.ndarray


def synthetic_log(n: int = 3000, seed: int = 0, audit: float = 0.08) -> Log:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    k = rng.integers(0, K, size=n)
    quality = 1 / (
        1 + np.exp(-(X[:, 0] * np.array([1.0, -0.5, 0.3])[k] + np.array([0.4, 0, -0.4])[k]))
    )
    # Δ depends on the query (X[:, 1]) and on the model: a global shift cannot remove it.
    bias = 0.15 * X[:, 1] * (k == 0) + np.array([-0.1, 0.12, 0.0])[k]
    pref = np.clip(0.3 + 0.4 * quality - bias + rng.normal(0, 0.05, n), 0, 1)
    # Audits favour queries with X[:, 2] > 0; π is logged and known.
    propensity = np.where(X[:, 2] > 0, 2 * audit, audit / 2)
    audited = rng.random(n) < propensity
    gold = np.where(audited, np.clip(quality + rng.normal(0, 0.05, n), 0, 1), np.nan)
    return Log(X, k, quality, pref, gold, propensity)


def label_mse(labels: np.ndarray, log: Log) -> float:
    rows = np.isnan(log.gold)  # preference-only events: where methods differ
    return float(np.mean((labels[rows] - log.truth[rows]) ** 2))


def labels_for(log: Log, method: str, **options: object) -> tuple[np.ndarray, dict]:
    return corrected_labels(
        log.X, log.k, K, log.pref, log.gold, log.propensity, method, seed=0, **options
    )


@pytest.fixture(scope="module")
def log() -> Log:
    return synthetic_log()


@pytest.fixture(scope="module")
def naive_mse(log: Log) -> dict[str, float]:
    return {m: label_mse(labels_for(log, m)[0], log) for m in ("pooled", "preference_only")}


@pytest.mark.parametrize("method", CORRECTED_METHODS)
@pytest.mark.parametrize("normaliser", ["variance", "wasserstein"])
def test_corrected_labels_beat_naive_ones(
    log: Log, naive_mse: dict[str, float], method: str, normaliser: str
) -> None:
    labels, info = labels_for(log, method, normaliser=normaliser)
    mse = label_mse(labels, log)
    assert mse < 0.5 * naive_mse["pooled"], (mse, naive_mse)
    assert mse < 0.5 * naive_mse["preference_only"], (mse, naive_mse)
    audited = np.isfinite(log.gold)
    np.testing.assert_array_equal(labels[audited], log.gold[audited])  # gold wins where known
    assert np.all((labels >= 0) & (labels <= 1))
    assert info["n_gold"] == audited.sum() and info["n_labels"] == len(labels)
    assert len(info["bias_model"]["mean_delta_by_model"]) == K


def test_naive_methods(log: Log) -> None:
    audited = np.isfinite(log.gold)
    pref_only, _ = labels_for(log, "preference_only")
    pooled, _ = labels_for(log, "pooled")
    gold_only, info = labels_for(log, "gold_only")
    np.testing.assert_array_equal(pref_only, log.pref)
    np.testing.assert_array_equal(pooled[audited], log.gold[audited])
    np.testing.assert_array_equal(pooled[~audited], log.pref[~audited])
    assert np.isnan(gold_only[~audited]).all() and info["n_labels"] == audited.sum()


@pytest.mark.parametrize("method", ["pooled", "paired", "r", "dr"])
def test_missing_labels(log: Log, method: str) -> None:
    pref, gold = log.pref.copy(), log.gold.copy()
    audited = np.flatnonzero(np.isfinite(gold))
    no_pref = audited[:5]  # audited events whose preference never came
    pref[no_pref] = np.nan
    nothing = np.flatnonzero(np.isnan(gold))[:7]  # neither label
    pref[nothing] = np.nan
    labels, info = corrected_labels(log.X, log.k, K, pref, gold, log.propensity, method)
    assert np.isnan(labels[nothing]).all()
    np.testing.assert_array_equal(labels[no_pref], gold[no_pref])
    assert info["n_labels"] == len(labels) - len(nothing)
    assert np.isfinite(np.delete(labels, nothing)).all()


@pytest.mark.parametrize("method", ["r", "dr"])
def test_propensity_is_used(log: Log, method: str) -> None:
    right, _ = labels_for(log, method)
    wrong, _ = corrected_labels(
        log.X, log.k, K, log.pref, log.gold, np.full(len(log.k), 0.5), method
    )
    assert not np.allclose(right, wrong)
    bad = log.propensity.copy()
    bad[np.isfinite(log.gold)] = 0.0
    with pytest.raises(ValueError, match="propensity"):
        corrected_labels(log.X, log.k, K, log.pref, log.gold, bad, method)


def test_paired_uses_the_logged_propensity_for_the_scale() -> None:
    # Audits over-sample one half of the queries; 1/π weights make the gold marginal describe
    # every event, so the scale map (and the labels) change when π is ignored.
    log = synthetic_log(seed=1)
    right, _ = labels_for(log, "paired", pref_feature=False)
    flat, _ = corrected_labels(
        log.X, log.k, K, log.pref, log.gold, np.full(len(log.k), 0.08), "paired",
        pref_feature=False,
    )  # fmt: skip
    assert not np.allclose(right, flat)


def test_per_model_normaliser(log: Log) -> None:
    labels, info = labels_for(log, "paired", per_model_normaliser=True)
    assert info["bias_model"]["normaliser"] == {"kind": "variance", "per_model": True}
    assert label_mse(labels, log) < label_mse(labels_for(log, "pooled")[0], log)


@pytest.mark.parametrize("method", CORRECTED_METHODS)
def test_too_few_audits_fall_back_to_pooled(log: Log, method: str) -> None:
    gold = np.full(len(log.k), np.nan)
    gold[:3] = log.truth[:3]  # three audits: no bias model from that
    labels, info = corrected_labels(log.X, log.k, K, log.pref, gold, log.propensity, method)
    np.testing.assert_array_equal(labels, np.where(np.isfinite(gold), gold, log.pref))
    assert "too few" in info["fallback"] and "bias_model" not in info
    none, info = corrected_labels(
        log.X, log.k, K, log.pref, np.full(len(log.k), np.nan), log.propensity, method
    )
    np.testing.assert_array_equal(none, log.pref)


def test_gold_only_log_needs_no_correction(log: Log) -> None:
    # Offline gold alone (the retraining job gives it propensity 1): nothing to correct.
    nothing = np.full(len(log.k), np.nan)
    labels, info = corrected_labels(log.X, log.k, K, nothing, log.truth, np.ones(len(log.k)), "r")
    np.testing.assert_array_equal(labels, log.truth)
    assert info["fallback"].startswith("no preference-only events")


def test_rejects_unknown_method_and_option(log: Log) -> None:
    with pytest.raises(ValueError, match="unknown method"):
        labels_for(log, "magic")
    with pytest.raises(ValueError, match="unknown option"):
        labels_for(log, "paired", ridge_strength=3)


def test_high_dimensional_embeddings_are_reduced() -> None:
    log = synthetic_log(n=1500, seed=2)
    rng = np.random.default_rng(0)
    wide = np.hstack([log.X, rng.normal(scale=0.01, size=(len(log.k), 120))])
    labels, _ = corrected_labels(wide, log.k, K, log.pref, log.gold, log.propensity, "r")
    assert label_mse(labels, log) < label_mse(labels_for(log, "pooled")[0], log)


def test_fit_quality_learns_from_finite_labels(log: Log) -> None:
    labels = log.truth.copy()
    labels[::3] = np.nan
    model = fit_quality(log.X, log.k, labels, K)
    pred = model.predict(log.X[:500])
    assert pred.shape == (500, K) and np.all((pred >= 0) & (pred <= 1))
    truth = np.stack([synthetic_truth(log.X[:500], m) for m in range(K)], axis=1)
    assert np.corrcoef(pred.ravel(), truth.ravel())[0, 1] > 0.9
    with pytest.raises(ValueError, match="two labelled"):
        fit_quality(log.X, log.k, np.full(len(log.k), np.nan), K)


def synthetic_truth(X: np.ndarray, m: int) -> np.ndarray:
    slope, offset = [1.0, -0.5, 0.3][m], [0.4, 0.0, -0.4][m]
    return 1 / (1 + np.exp(-(X[:, 0] * slope + offset)))


def test_loo_ridge_matches_weighted_ridge_and_shrinks_noise() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 5))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0, 0.0]) + rng.normal(0, 0.5, 400)
    w = rng.uniform(0.2, 2.0, 400)
    fitted = LooRidge().fit(X, y, sample_weight=w)
    reference = Ridge(alpha=fitted.alpha_).fit(X, y, sample_weight=w / w.mean())
    np.testing.assert_allclose(fitted.coef_, reference.coef_, atol=1e-8)
    np.testing.assert_allclose(fitted.predict(X), reference.predict(X), atol=1e-8)
    noise = LooRidge().fit(X, rng.normal(size=400))
    assert noise.alpha_ >= 100  # nothing to learn: the leave-one-out error asks for shrinkage
