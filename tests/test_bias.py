"""Bias correction on simulated worlds where the true quality ψ and bias Δ are known."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.linear_model import Ridge

from bandit_router.audit.bias import (
    DRLearnerBias,
    MeanShiftBias,
    NoBias,
    PairedBiasEstimator,
    RLearnerBias,
    ScaleNormaliser,
    correct_labels,
    design,
    estimate_bias,
)

Array = NDArray[np.float64]
K, D, CLUSTERS = 3, 6, 4


@dataclass
class World:
    X: Array
    k: NDArray[np.int64]
    psi: Array  # true quality (gold target)
    delta: Array  # true bias ψ − η on the gold scale
    gold: Array
    pref: Array
    pi: Array  # audit probability
    t: NDArray[np.int64]  # 1 = audited (gold), 0 = preference only

    @property
    def outcome(self) -> Array:
        return np.where(self.t == 1, self.gold, self.pref)


def make_world(
    n: int,
    seed: int,
    *,
    scale: tuple[float, float] = (1.0, 0.0),
    audit: float = 0.05,
    varying_pi: bool = False,
) -> World:
    """Queries in 4 clusters; Δ is a cluster × model table that is NOT additive in (cluster,
    model) and averages near zero, so a global mean shift cannot capture it."""
    fixed = np.random.default_rng(1234)
    centers = fixed.normal(size=(CLUSTERS, D))
    quality = fixed.uniform(0.3, 0.8, size=(CLUSTERS, K))
    bias = fixed.uniform(-0.25, 0.25, size=(CLUSTERS, K))
    slope = fixed.normal(size=(K, D)) * 0.05
    rng = np.random.default_rng(seed)
    c = rng.integers(CLUSTERS, size=n)
    k = rng.integers(K, size=n)
    X = centers[c] + 0.1 * rng.normal(size=(n, D))
    # the last term is per-query quality invisible in x: only the labels themselves carry it
    psi = quality[c, k] + ((X - centers[c]) * slope[k]).sum(axis=1) + 0.10 * rng.normal(size=n)
    delta = bias[c, k]
    gold = psi + 0.03 * rng.normal(size=n)
    pref = scale[0] * (psi - delta + 0.04 * rng.normal(size=n)) + scale[1]
    pi = np.where(c % 2 == 0, 0.02, 0.10) if varying_pi else np.full(n, audit)
    t = (rng.random(n) < pi).astype(np.int64)
    return World(X.astype(np.float32), k, psi, delta, gold, pref, pi, t)


def rmse(a: Array, b: Array) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def label_mse(w: World, estimator: object) -> float:
    """MSE of corrected labels vs true quality on the preference-only rows."""
    rows = w.t == 0
    corrected = estimator.correct(w.X[rows], w.k[rows], w.pref[rows])  # type: ignore[attr-defined]
    return float(np.mean((corrected - w.psi[rows]) ** 2))


@pytest.fixture(scope="module")
def world() -> World:
    return make_world(20_000, seed=0)


@pytest.fixture(scope="module")
def rescaled() -> World:
    return make_world(20_000, seed=1, scale=(0.5, 0.2))


# --------------------------------------------------------------------------- design


def test_design_layout_dense_and_sparse_agree() -> None:
    X = np.arange(6, dtype=np.float32).reshape(3, 2) + 1
    k = np.array([0, 2, 1])
    Z = design(X, k, 3)
    assert Z.shape == (3, 2 + 3 + 6)
    np.testing.assert_array_equal(Z[1, :2], X[1])
    np.testing.assert_array_equal(Z[1, 2:5], [0, 0, 1])
    # the interaction block holds x only in model 2's slot
    np.testing.assert_array_equal(Z[1, 5:], [0, 0, 0, 0, 3, 4])
    np.testing.assert_allclose(design(X, k, 3, sparse=True).toarray(), Z)
    with pytest.raises(ValueError):
        design(X, np.array([0, 3, 1]), 3)


# --------------------------------------------------------------------------- scale normaliser


@pytest.mark.parametrize("method", ["variance", "wasserstein"])
def test_normaliser_undoes_linear_rescaling(method: str) -> None:
    rng = np.random.default_rng(0)
    truth = rng.beta(2, 3, size=5000)
    gold = rng.beta(2, 3, size=4000)  # different events, same distribution
    pref = 0.4 * truth + 0.3
    norm = ScaleNormaliser(method).fit(pref, gold)  # type: ignore[arg-type]
    restored = norm.transform(pref)
    assert rmse(restored, truth) < 0.02
    assert rmse(pref, truth) > 0.1  # the test is not trivial


def test_wasserstein_map_for_thumbs_and_ratings_is_monotone_and_mean_preserving() -> None:
    rng = np.random.default_rng(1)
    gold = rng.beta(3, 2, size=3000)
    thumbs = (rng.random(5000) < 0.7).astype(float)
    norm = ScaleNormaliser("wasserstein").fit(thumbs, gold)
    down, up = norm.transform(np.array([0.0, 1.0]))
    # thumbs-down = mean of the lowest 30% of gold, thumbs-up = mean of the top 70%
    q30 = np.quantile(gold, 0.3)
    assert down == pytest.approx(gold[gold <= q30].mean(), abs=0.01)
    assert up == pytest.approx(gold[gold > q30].mean(), abs=0.01)
    assert norm.transform(thumbs).mean() == pytest.approx(gold.mean(), abs=0.01)

    ratings = rng.integers(1, 6, size=5000).astype(float)
    mapped = ScaleNormaliser("wasserstein").fit(ratings, gold).transform(np.arange(1.0, 6.0))
    assert np.all(np.diff(mapped) > 0)
    assert gold.min() <= mapped[0] and mapped[-1] <= gold.max()


def test_per_model_normaliser_fits_each_model_scale() -> None:
    rng = np.random.default_rng(2)
    n = 6000
    k = rng.integers(2, size=n)
    truth = rng.uniform(0.2, 0.9, size=n)
    gold = truth + 0.01 * rng.normal(size=n)
    # model 0's judge is compressed, model 1's shifted
    pref = np.where(k == 0, 0.5 * truth + 0.1, truth - 0.2)
    per_model = ScaleNormaliser("variance", per_model=True).fit(pref, gold, k_pref=k, k_gold=k)
    pooled = ScaleNormaliser("variance").fit(pref, gold)
    assert rmse(per_model.transform(pref, k), truth) < 0.02
    assert rmse(pooled.transform(pref), truth) > 0.05
    with pytest.raises(ValueError):
        per_model.transform(pref)


# --------------------------------------------------------------------------- estimators


def test_paired_recovers_bias_and_beats_baselines(world: World) -> None:
    a = world.t == 1
    paired = PairedBiasEstimator(K).fit(world.X[a], world.k[a], world.gold[a], world.pref[a])
    assert rmse(paired.predict(world.X, world.k), world.delta) < 0.03  # sd(Δ) ≈ 0.15
    naive = NoBias(K).fit(world.X[a], world.k[a])
    shift = MeanShiftBias(K).fit(world.X[a], world.k[a], world.gold[a], world.pref[a])
    mse = {name: label_mse(world, e) for name, e in [("p", paired), ("n", naive), ("m", shift)]}
    assert mse["p"] < 0.25 * mse["n"]
    assert mse["p"] < 0.25 * mse["m"]
    # a global shift is no better than pooling here: Δ averages out across clusters and models
    assert mse["m"] > 0.8 * mse["n"]


@pytest.mark.parametrize("learner", [RLearnerBias, DRLearnerBias])
@pytest.mark.parametrize("known_propensity", [True, False])
def test_unpaired_learners_recover_bias(
    world: World, learner: type[RLearnerBias], known_propensity: bool
) -> None:
    pi = world.pi if known_propensity else None
    est = learner(K).fit(world.X, world.k, world.outcome, world.t, pi)
    assert rmse(est.predict(world.X, world.k), world.delta) < 0.03
    naive_mse = label_mse(world, NoBias(K))
    shift = MeanShiftBias(K).fit(
        world.X, world.k, outcome=world.outcome, treatment=world.t, propensity=pi
    )
    assert label_mse(world, est) < 0.25 * naive_mse
    assert label_mse(world, est) < 0.25 * label_mse(world, shift)


@pytest.mark.parametrize("learner", [RLearnerBias, DRLearnerBias])
def test_learners_survive_misspecified_outcome_models(
    world: World, learner: type[RLearnerBias]
) -> None:
    """With the logged π right, a useless outcome model must not bias Δ̂ (Neyman orthogonality
    of the R-loss, double robustness of φ); the plug-in μ̂₁ − μ̂₀ it would give is far off."""
    useless = lambda: Ridge(alpha=1e5)  # noqa: E731 - predicts ~the global mean
    est = learner(K, regressor=useless, final_regressor=Ridge)
    est.fit(world.X, world.k, world.outcome, world.t, world.pi)
    assert rmse(est.predict(world.X, world.k), world.delta) < 0.045
    plug_in = DRLearnerBias(K, regressor=useless).fit(world.X, world.k, world.outcome, world.t)
    nu = plug_in.nuisances_
    assert nu is not None and nu.mu1 is not None and nu.mu0 is not None
    assert rmse(nu.mu1 - nu.mu0, world.delta) > 0.1


def test_dr_learner_with_rare_varying_audits_and_overlap_weights() -> None:
    w = make_world(20_000, seed=3, varying_pi=True)  # π ∈ {0.02, 0.10} by cluster
    for overlap in (False, True):
        est = DRLearnerBias(K, overlap_weights=overlap).fit(w.X, w.k, w.outcome, w.t, w.pi)
        assert rmse(est.predict(w.X, w.k), w.delta) < 0.04


def test_rescaled_preferences_need_normalisation_first(rescaled: World) -> None:
    """Preference on a compressed scale (0.5·η + 0.2). Δ̂(x) can only fix what x predicts; the
    per-query part of quality reaches a corrected label through y alone, at half strength unless
    y is first put back on the gold scale (the paper's Remark 1)."""
    w, a = rescaled, rescaled.t == 1
    data = {"gold": w.gold[a], "pref": w.pref[a]}
    raw = estimate_bias("none", w.X[a], w.k[a], K)
    shift = estimate_bias("mean_shift", w.X[a], w.k[a], K, **data)
    scaled_only = estimate_bias("none", w.X[a], w.k[a], K, normaliser=ScaleNormaliser(), **data)
    baseline = min(label_mse(w, e) for e in (raw, shift, scaled_only))
    unscaled = label_mse(w, estimate_bias("paired", w.X[a], w.k[a], K, **data))
    for method, gain in (("variance", 0.7), ("wasserstein", 0.9)):
        norm = ScaleNormaliser(method)  # type: ignore[arg-type]
        paired = label_mse(w, estimate_bias("paired", w.X[a], w.k[a], K, normaliser=norm, **data))
        assert paired < 0.25 * baseline
        assert paired < gain * unscaled
    unpaired = {"outcome": w.outcome, "treatment": w.t, "propensity": w.pi}
    for name in ("r", "dr"):
        plain = label_mse(w, estimate_bias(name, w.X, w.k, K, **unpaired))  # type: ignore[arg-type]
        est = estimate_bias(name, w.X, w.k, K, normaliser=ScaleNormaliser(), **unpaired)  # type: ignore[arg-type]
        assert label_mse(w, est) < 0.25 * baseline
        assert label_mse(w, est) < 0.7 * plain


class _CountingRidge(Ridge):
    fits: list[int] = []

    def fit(self, X, y, sample_weight=None):  # type: ignore[no-untyped-def]
        _CountingRidge.fits.append(X.shape[0])
        return super().fit(X, y, sample_weight=sample_weight)


def test_cross_fitting_uses_every_fold_out_of_fold(world: World) -> None:
    n_folds = 4
    _CountingRidge.fits = []
    est = DRLearnerBias(K, regressor=_CountingRidge, final_regressor=Ridge, n_folds=n_folds)
    est.fit(world.X, world.k, world.outcome, world.t)
    nu = est.nuisances_
    assert nu is not None and not nu.propensity_known
    n = world.X.shape[0]
    for arr in (nu.fold, nu.e_hat, nu.mu1, nu.mu0):
        assert arr is not None and arr.shape == (n,)
    assert nu.m_hat is None  # the DR-learner does not need m̂
    assert set(np.unique(nu.fold)) == set(range(n_folds))
    sizes = np.bincount(nu.fold)
    assert sizes.min() > 0.9 * n / n_folds
    # every fold is gold-stratified
    gold_share = np.bincount(nu.fold, weights=world.t) / sizes
    assert np.ptp(gold_share) < 0.005
    # μ̂₁ and μ̂₀ per fold, each trained on the other folds' rows of one arm only
    assert len(_CountingRidge.fits) == 2 * n_folds
    n_gold = int(world.t.sum())
    mu1_sizes = _CountingRidge.fits[0::2]
    assert all(abs(s - n_gold * (n_folds - 1) / n_folds) <= n_folds for s in mu1_sizes)
    assert np.all((nu.e_hat >= 0.01) & (nu.e_hat <= 0.99))

    r = RLearnerBias(K, n_folds=n_folds).fit(world.X, world.k, world.outcome, world.t, world.pi)
    assert r.nuisances_ is not None and r.nuisances_.m_hat is not None
    np.testing.assert_allclose(r.nuisances_.e_hat, world.pi)  # logged π replaces ê


def test_sparse_design_gives_the_same_fit(world: World) -> None:
    a = world.t == 1
    args = (world.X[a], world.k[a], world.gold[a], world.pref[a])
    dense = PairedBiasEstimator(K, sparse_design=False).fit(*args)
    sparse = PairedBiasEstimator(K, sparse_design=True).fit(*args)
    np.testing.assert_allclose(
        sparse.predict(world.X[:500], world.k[:500]),
        dense.predict(world.X[:500], world.k[:500]),
        atol=1e-3,  # sparse Ridge solves iteratively (sparse_cg)
    )


def test_estimate_bias_dispatch_and_validation(world: World) -> None:
    a = world.t == 1
    X, k = world.X[a], world.k[a]
    assert isinstance(
        estimate_bias("paired", X, k, K, gold=world.gold[a], pref=world.pref[a]),
        PairedBiasEstimator,
    )
    shift = estimate_bias("mean_shift", X, k, K, gold=world.gold[a], pref=world.pref[a])
    assert isinstance(shift, MeanShiftBias)
    expected = float(np.mean(world.gold[a] - world.pref[a]))
    assert shift.predict(X[:3], k[:3]) == pytest.approx([expected] * 3)
    assert np.all(estimate_bias("none", X, k, K).predict(X, k) == 0)
    with pytest.raises(ValueError):
        estimate_bias("paired", X, k, K)
    with pytest.raises(ValueError):
        estimate_bias("r", X, k, K, gold=world.gold[a], pref=world.pref[a])
    with pytest.raises(ValueError):
        estimate_bias("bogus", X, k, K)  # type: ignore[arg-type]


def test_correct_labels_clips_to_unit_interval() -> None:
    out = correct_labels(np.array([0.1, 0.5, 0.95]), np.array([-0.3, 0.2, 0.2]))
    np.testing.assert_allclose(out, [0.0, 0.7, 1.0])
