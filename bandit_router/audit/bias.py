"""Meta-Router bias correction of preference feedback (method.md section 6).

The bias of preference feedback against gold audits is Δ_k(x) = ψ_k(x) − η_k(x) (gold minus
preference), a conditional average treatment effect of the evaluation mechanism T (1 = gold,
0 = preference). A preference-only event is corrected as

    y  →  normaliser(y)  →  + Δ̂_k(x)  →  clip to [0, 1].

Scale normalisation comes first because Δ is only meaningful once both signals live on one scale
(the paper's Remark 1); every estimator here therefore takes an optional `ScaleNormaliser` and
learns Δ on the normalised scale.

Estimators: `PairedBiasEstimator` (both labels on the same event), `RLearnerBias` and
`DRLearnerBias` (unpaired rows with K-fold cross-fitted nuisances), `MeanShiftBias` (one global
constant: the weak baseline) and `NoBias` (naive pooling). `estimate_bias` dispatches by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Self, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse as sp
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import StratifiedKFold

Array: TypeAlias = NDArray[np.float64]
IntArray: TypeAlias = NDArray[np.int64]
Matrix: TypeAlias = "NDArray[np.float64] | sp.csr_matrix"
Factory: TypeAlias = Callable[[], Any]
BiasMethod: TypeAlias = Literal["paired", "r", "dr", "mean_shift", "none"]

__all__ = [
    "BiasMethod",
    "BiasModel",
    "DRLearnerBias",
    "MeanShiftBias",
    "NoBias",
    "Nuisances",
    "PairedBiasEstimator",
    "RLearnerBias",
    "ScaleNormaliser",
    "correct_labels",
    "cross_fit_nuisances",
    "default_classifier",
    "default_regressor",
    "design",
    "estimate_bias",
]


def default_regressor() -> Ridge:
    return Ridge(alpha=1.0)


def default_classifier() -> LogisticRegression:
    return LogisticRegression(C=1.0, max_iter=1000)


# --------------------------------------------------------------------------- features


def _as_1d(values: ArrayLike, name: str, dtype: type = np.float64) -> NDArray[Any]:
    arr: NDArray[Any] = np.asarray(values, dtype=dtype)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _model_index(k: ArrayLike, n_models: int, n_rows: int) -> IntArray:
    idx = _as_1d(k, "k", np.int64)
    if idx.shape[0] != n_rows:
        raise ValueError(f"k has {idx.shape[0]} rows, X has {n_rows}")
    if idx.size and (idx.min() < 0 or idx.max() >= n_models):
        raise ValueError(f"model index out of range [0, {n_models})")
    return idx


def design(X: ArrayLike, k: ArrayLike, K: int, *, sparse: bool = False) -> Matrix:
    """Regression features [x, onehot(k), x ⊗ onehot(k)] of width d + K + d·K.

    One linear model with a shared x block plus per-model interaction blocks: the bias depends on
    both query and model, and Ridge shrinks the per-model deviations towards the shared query
    effect, so rarely audited models borrow strength (separate per-model fits would not).
    `sparse=True` returns CSR (2d + 1 non-zeros per row); estimators switch to it automatically
    for wide designs (sparse_design=None); pass sparse_design=False for learners that need dense.
    """
    x = np.asarray(X, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"X must be two-dimensional, got shape {x.shape}")
    n, d = x.shape
    idx = _model_index(k, K, n)
    width = d + K + d * K
    rows = np.arange(n)
    inter_cols = d + K + idx[:, None] * d + np.arange(d)[None, :]
    if sparse:
        r = np.concatenate([np.repeat(rows, d), rows, np.repeat(rows, d)])
        c = np.concatenate([np.tile(np.arange(d), n), d + idx, inter_cols.ravel()])
        v = np.concatenate([x.ravel(), np.ones(n), x.ravel()])
        return sp.csr_matrix((v, (r, c)), shape=(n, width))
    out = np.zeros((n, width))
    out[:, :d] = x
    out[rows, d + idx] = 1.0
    out[rows[:, None], inter_cols] = x
    return out


# --------------------------------------------------------------------------- scale normalisation


@dataclass(frozen=True)
class _AffineMap:
    a: float
    b: float

    def __call__(self, y: Array) -> Array:
        return self.a * y + self.b


@dataclass(frozen=True)
class _QuantileMap:
    support: Array  # sorted distinct preference values seen at fit time
    image: Array  # their gold-scale values (non-decreasing)

    def __call__(self, y: Array) -> Array:
        # Between fitted atoms interpolate; outside, clamp (the gold range bounds the map).
        return np.interp(y, self.support, self.image)


def _weights(w: ArrayLike | None, n: int) -> Array:
    if w is None:
        return np.ones(n)
    arr = _as_1d(w, "weight")
    if arr.shape[0] != n or np.any(arr < 0) or not np.isfinite(arr).all():
        raise ValueError("weights must be finite, non-negative and one per row")
    return arr


def _fit_affine(pref: Array, gold: Array, wp: Array, wg: Array) -> _AffineMap:
    mp, mg = np.average(pref, weights=wp), np.average(gold, weights=wg)
    sp_ = np.sqrt(np.average((pref - mp) ** 2, weights=wp))
    sg = np.sqrt(np.average((gold - mg) ** 2, weights=wg))
    # A constant preference signal carries no scale information: only shift it.
    a = sg / sp_ if sp_ > 1e-12 else 1.0
    return _AffineMap(a=float(a), b=float(mg - a * mp))


def _fit_deconvolution(pref: Array, gold: Array, wp: Array, wg: Array) -> _AffineMap:
    """Paired rows: regress preference on gold, y ≈ c + d·g, and invert it, y ↦ (y − c)/d, so
    that E[mapped y | g] = g. Matching variances instead under-expands a noisy judge (its
    variance holds noise too): thumbs right 78% of the time have d ≈ 0.55 but σ_g/σ_y ≈ 0.9.
    A judge with no measurable relation to gold (d ≤ 0.05) cannot be inverted: variance match."""
    if pref.shape != gold.shape:
        raise ValueError("deconvolution needs paired rows: pref and gold of the same events")
    w = wp * wg  # the same events: one of the two carries the 1/π weights
    mg, mp = np.average(gold, weights=w), np.average(pref, weights=w)
    var_g = np.average((gold - mg) ** 2, weights=w)
    d = np.average((gold - mg) * (pref - mp), weights=w) / var_g if var_g > 1e-12 else 0.0
    if d <= 0.05:
        return _fit_affine(pref, gold, wp, wg)
    return _AffineMap(a=float(1.0 / d), b=float(-(mp - d * mg) / d))


def _fit_quantile(pref: Array, gold: Array, wp: Array, wg: Array) -> _QuantileMap:
    """1-D 2-Wasserstein optimal map T = G⁻¹∘F, made exact for ties.

    A preference atom v holding CDF mass (F(v−), F(v)] is sent to the mean of the gold quantile
    function over that interval: the barycentric projection of the optimal coupling, i.e. the best
    deterministic map in L2. For thumbs or 1–5 ratings this keeps the map monotone and the mean of
    the mapped scores equal to the gold mean (a plain G⁻¹(F(v)) would send every thumbs-up to
    the gold maximum).
    """
    keep_g = wg > 0
    order = np.argsort(gold[keep_g], kind="stable")
    g, w = gold[keep_g][order], wg[keep_g][order]
    w = w / w.sum()
    cdf = np.concatenate([[0.0], np.cumsum(w)])
    cdf[-1] = 1.0
    integral = np.concatenate([[0.0], np.cumsum(g * w)])  # ∫₀ᵘ G⁻¹ at the knots

    keep_p = wp > 0
    support, inverse = np.unique(pref[keep_p], return_inverse=True)
    mass = np.bincount(inverse, weights=wp[keep_p]) / wp[keep_p].sum()
    upper = np.clip(np.cumsum(mass), 0.0, 1.0)
    upper[-1] = 1.0
    lower = np.clip(upper - mass, 0.0, 1.0)
    image = (np.interp(upper, cdf, integral) - np.interp(lower, cdf, integral)) / mass
    return _QuantileMap(support=support, image=np.maximum.accumulate(image))


class ScaleNormaliser:
    """Map preference scores onto the gold scale before estimating Δ.

    method="variance": affine map matching mean and standard deviation.
    method="deconvolve": PAIRED rows only (pref[i] and gold[i] from the same event): the affine
    map that undoes the judge's regression on gold, E[map(y) | g] = g.
    method="wasserstein": 1-D 2-Wasserstein optimal map (quantile mapping, tie-aware).
    per_model=True fits one map per model (models with fewer than `min_count` gold or preference
    rows fall back to the pooled map). Only the two marginals are used, so gold and preference may
    come from different events; pass inverse-propensity weights when audit selection depends on x
    so both marginals describe the same query population.
    """

    def __init__(
        self,
        method: Literal["variance", "wasserstein", "deconvolve"] = "variance",
        *,
        per_model: bool = False,
        min_count: int = 20,
    ) -> None:
        if method not in ("variance", "wasserstein", "deconvolve"):
            raise ValueError(f"unknown method {method!r}")
        self.method = method
        self.per_model = per_model
        self.min_count = min_count
        self._pooled: _AffineMap | _QuantileMap | None = None
        self._by_model: dict[int, _AffineMap | _QuantileMap] = {}

    @property
    def is_fitted(self) -> bool:
        return self._pooled is not None

    def _fit_one(self, pref: Array, gold: Array, wp: Array, wg: Array) -> _AffineMap | _QuantileMap:
        if pref.size == 0 or gold.size == 0:
            raise ValueError("need at least one preference and one gold score")
        if self.method == "wasserstein":
            return _fit_quantile(pref, gold, wp, wg)
        fit = _fit_deconvolution if self.method == "deconvolve" else _fit_affine
        return fit(pref, gold, wp, wg)

    def fit(
        self,
        pref_scores: ArrayLike,
        gold_scores: ArrayLike,
        *,
        k_pref: ArrayLike | None = None,
        k_gold: ArrayLike | None = None,
        pref_weight: ArrayLike | None = None,
        gold_weight: ArrayLike | None = None,
    ) -> Self:
        pref = _as_1d(pref_scores, "pref_scores")
        gold = _as_1d(gold_scores, "gold_scores")
        wp, wg = _weights(pref_weight, pref.size), _weights(gold_weight, gold.size)
        self._pooled = self._fit_one(pref, gold, wp, wg)
        self._by_model = {}
        if not self.per_model:
            return self
        if k_pref is None or k_gold is None:
            raise ValueError("per_model=True needs k_pref and k_gold")
        kp, kg = _as_1d(k_pref, "k_pref", np.int64), _as_1d(k_gold, "k_gold", np.int64)
        for model in np.intersect1d(kp, kg):
            ip, ig = kp == model, kg == model
            if min(ip.sum(), ig.sum()) >= self.min_count:
                self._by_model[int(model)] = self._fit_one(pref[ip], gold[ig], wp[ip], wg[ig])
        return self

    def transform(self, pref_scores: ArrayLike, k: ArrayLike | None = None) -> Array:
        if self._pooled is None:
            raise RuntimeError("ScaleNormaliser is not fitted")
        pref = _as_1d(pref_scores, "pref_scores")
        out = self._pooled(pref)
        if not self._by_model:
            return out
        if k is None:
            raise ValueError("a per-model normaliser needs k in transform")
        idx = _as_1d(k, "k", np.int64)
        for model, mapping in self._by_model.items():
            rows = idx == model
            out[rows] = mapping(pref[rows])
        return out


# --------------------------------------------------------------------------- estimators


def correct_labels(
    pref: ArrayLike, delta_hat: ArrayLike, lo: float = 0.0, hi: float = 1.0
) -> Array:
    """Corrected label y + Δ̂ clipped to the reward range ([0, 1] by default).

    `pref` must already be on the gold scale (see ScaleNormaliser).
    """
    return np.clip(_as_1d(pref, "pref") + _as_1d(delta_hat, "delta_hat"), lo, hi)


SPARSE_WIDTH = 1000  # design width from which sparse_design=None switches to CSR


def _bounded(prediction: ArrayLike) -> Array:
    # Gold and preference both live in [0, 1], so |Δ| <= 1: projecting onto that range can only
    # reduce error, and it caps the blow-ups of a high-variance final stage.
    return np.clip(np.asarray(prediction, dtype=np.float64), -1.0, 1.0)


class BiasModel:
    """Shared plumbing: scale normalisation and correction of preference labels.

    A normaliser that is not fitted yet is fitted on the estimator's own training data; a fitted
    one (e.g. fitted on all traffic, or shared between estimators) is used as is.
    """

    sparse_design: bool | None = None  # None: CSR once the design is SPARSE_WIDTH wide

    def __init__(self, n_models: int, *, normaliser: ScaleNormaliser | None = None) -> None:
        if n_models < 1:
            raise ValueError("n_models must be >= 1")
        self.n_models = n_models
        self.normaliser = normaliser

    def _fit_normaliser(
        self,
        pref: Array,
        gold: Array,
        k_pref: IntArray,
        k_gold: IntArray,
        w_pref: Array | None = None,
        w_gold: Array | None = None,
    ) -> None:
        # A normaliser fitted elsewhere (e.g. on all traffic) is used as is.
        if self.normaliser is not None and not self.normaliser.is_fitted:
            self.normaliser.fit(
                pref, gold, k_pref=k_pref, k_gold=k_gold, pref_weight=w_pref, gold_weight=w_gold
            )

    def _design(self, X: ArrayLike, k: ArrayLike) -> Matrix:
        sparse = self.sparse_design
        if sparse is None:
            # With d = 384 the interaction block is ~90% zeros: sparse Ridge fits are ~10x faster.
            d = np.asarray(X).shape[1]
            sparse = d + self.n_models + d * self.n_models >= SPARSE_WIDTH
        return design(X, k, self.n_models, sparse=sparse)

    def to_gold_scale(self, pref: ArrayLike, k: ArrayLike) -> Array:
        y = _as_1d(pref, "pref")
        return y if self.normaliser is None else self.normaliser.transform(y, k)

    def predict(self, X: ArrayLike, k: ArrayLike) -> Array:
        raise NotImplementedError

    def correct(
        self, X: ArrayLike, k: ArrayLike, pref: ArrayLike, bounds: tuple[float, float] = (0.0, 1.0)
    ) -> Array:
        """Gold-scale label for preference-only events: normalise(y) + Δ̂_k(x), clipped to
        `bounds`."""
        return correct_labels(self.to_gold_scale(pref, k), self.predict(X, k), *bounds)


class NoBias(BiasModel):
    """Δ̂ = 0: naive pooling (after normalisation, if a normaliser is given)."""

    def fit(
        self,
        X: ArrayLike,
        k: ArrayLike,
        gold: ArrayLike | None = None,
        pref: ArrayLike | None = None,
        **unpaired: Any,
    ) -> Self:
        has_data = (gold is not None and pref is not None) or (
            unpaired.get("outcome") is not None and unpaired.get("treatment") is not None
        )
        if has_data:  # only to fit the normaliser; Δ̂ stays 0
            _fit_normaliser_any(self, X, k, gold, pref, **unpaired)
        return self

    def predict(self, X: ArrayLike, k: ArrayLike) -> Array:
        return np.zeros(np.asarray(X).shape[0])


class MeanShiftBias(BiasModel):
    """Δ̂ = one global constant, mean(gold) − mean(pref): the baseline the paper finds weak.

    Paired data: mean of gold − pref. Unpaired: difference of the two arm means, Hájek-weighted
    by 1/π and 1/(1 − π) when the audit propensity is known.
    """

    shift_: float = 0.0

    def fit(
        self,
        X: ArrayLike,
        k: ArrayLike,
        gold: ArrayLike | None = None,
        pref: ArrayLike | None = None,
        **unpaired: Any,
    ) -> Self:
        gold_s, pref_s, w_gold, w_pref = _fit_normaliser_any(self, X, k, gold, pref, **unpaired)
        self.shift_ = float(np.average(gold_s, weights=w_gold) - np.average(pref_s, weights=w_pref))
        return self

    def predict(self, X: ArrayLike, k: ArrayLike) -> Array:
        return np.full(np.asarray(X).shape[0], self.shift_)


def _fit_normaliser_any(
    model: BiasModel,
    X: ArrayLike,
    k: ArrayLike,
    gold: ArrayLike | None,
    pref: ArrayLike | None,
    *,
    outcome: ArrayLike | None = None,
    treatment: ArrayLike | None = None,
    propensity: ArrayLike | None = None,
) -> tuple[Array, Array, Array, Array]:
    """Split paired or unpaired inputs into (gold, normalised pref, weights) and fit the scaler."""
    n = np.asarray(X).shape[0]
    idx = _model_index(k, model.n_models, n)
    if gold is not None and pref is not None:
        g, y = _as_1d(gold, "gold"), _as_1d(pref, "pref")
        if not g.shape[0] == y.shape[0] == n:
            raise ValueError("X, k, gold and pref must have the same number of rows")
        model._fit_normaliser(y, g, idx, idx)
        return g, model.to_gold_scale(y, idx), np.ones(n), np.ones(n)
    if outcome is None or treatment is None:
        raise ValueError("pass gold and pref (paired) or outcome and treatment (unpaired)")
    o, t = _as_1d(outcome, "outcome"), _treatment(treatment, n)
    g_rows, p_rows = t == 1, t == 0
    w_gold, w_pref = np.ones(n), np.ones(n)
    if propensity is not None:
        pi = _propensity(propensity, n)
        w_gold, w_pref = 1.0 / pi, 1.0 / (1.0 - pi)
    model._fit_normaliser(
        o[p_rows], o[g_rows], idx[p_rows], idx[g_rows], w_pref[p_rows], w_gold[g_rows]
    )
    return (
        o[g_rows],
        model.to_gold_scale(o[p_rows], idx[p_rows]),
        w_gold[g_rows],
        w_pref[p_rows],
    )


def _treatment(treatment: ArrayLike, n: int) -> IntArray:
    t = _as_1d(treatment, "treatment", np.int64)
    if t.shape[0] != n or not np.isin(t, (0, 1)).all():
        raise ValueError("treatment must be 0/1 with one entry per row")
    return t


def _propensity(propensity: ArrayLike, n: int) -> Array:
    pi = _as_1d(propensity, "propensity")
    if pi.shape[0] != n or np.any(pi <= 0) or np.any(pi >= 1):
        raise ValueError("propensity must lie strictly inside (0, 1), one entry per row")
    return pi


class PairedBiasEstimator(BiasModel):
    """Events with both labels: regress (gold − normalised pref) on design(x, k)."""

    def __init__(
        self,
        n_models: int,
        *,
        regressor: Factory = default_regressor,
        normaliser: ScaleNormaliser | None = None,
        sparse_design: bool | None = None,
    ) -> None:
        super().__init__(n_models, normaliser=normaliser)
        self.regressor = regressor
        self.sparse_design = sparse_design
        self.model_: Any = None

    def fit(
        self,
        X: ArrayLike,
        k: ArrayLike,
        gold: ArrayLike,
        pref: ArrayLike,
        sample_weight: ArrayLike | None = None,
    ) -> Self:
        Z = self._design(X, k)
        g, y = _as_1d(gold, "gold"), _as_1d(pref, "pref")
        if not g.shape[0] == y.shape[0] == Z.shape[0]:
            raise ValueError("X, k, gold and pref must have the same number of rows")
        idx = _model_index(k, self.n_models, Z.shape[0])
        self._fit_normaliser(y, g, idx, idx)
        self.model_ = self.regressor()
        weights = None if sample_weight is None else _weights(sample_weight, Z.shape[0])
        self.model_.fit(Z, g - self.to_gold_scale(y, idx), sample_weight=weights)
        return self

    def predict(self, X: ArrayLike, k: ArrayLike) -> Array:
        if self.model_ is None:
            raise RuntimeError("estimator is not fitted")
        Z = self._design(X, k)
        return _bounded(self.model_.predict(Z))


# --------------------------------------------------------------------------- cross-fitting


@dataclass
class Nuisances:
    """Out-of-fold nuisance predictions, one entry per training row.

    `e_hat` is the (clipped) propensity actually used: the logged π when known, else the
    cross-fitted classifier. `m_hat` (E[o|x,k]) is filled for the R-learner, `mu1`/`mu0`
    (E[o|x,k,t]) for the DR-learner.
    """

    fold: IntArray
    e_hat: Array
    m_hat: Array | None
    mu1: Array | None
    mu0: Array | None
    propensity_known: bool
    n_folds: int


def _fit_predict(
    factory: Factory, Z: Matrix, y: NDArray[Any], train: IntArray, test: IntArray
) -> Array:
    model = factory()
    model.fit(Z[train], y[train])
    return np.asarray(model.predict(Z[test]), dtype=np.float64)


def _fit_proba(factory: Factory, Z: Matrix, t: IntArray, train: IntArray, test: IntArray) -> Array:
    model = factory()
    model.fit(Z[train], t[train])
    column = list(model.classes_).index(1)
    return np.asarray(model.predict_proba(Z[test])[:, column], dtype=np.float64)


def cross_fit_nuisances(
    Z: Matrix,
    outcome: Array,
    treatment: IntArray,
    *,
    propensity: Array | None,
    need_m: bool,
    need_mu: bool,
    regressor: Factory = default_regressor,
    classifier: Factory = default_classifier,
    n_folds: int = 5,
    seed: int = 0,
    clip: tuple[float, float] = (0.01, 0.99),
) -> Nuisances:
    """K-fold cross-fitting: each row's nuisances come from models that never saw that row.

    Folds are stratified on the treatment because gold rows are rare (a few %): an unstratified
    fold could leave a training split with almost no gold rows for μ̂₁ and ê.
    """
    n = Z.shape[0]
    counts = np.bincount(treatment, minlength=2)
    if n_folds < 2 or counts.min() < n_folds:
        raise ValueError(f"need n_folds >= 2 and >= n_folds rows per arm, got {counts.tolist()}")
    fold = np.full(n, -1, dtype=np.int64)
    e_hat = np.empty(n) if propensity is None else propensity.astype(np.float64).copy()
    m_hat = np.empty(n) if need_m else None
    mu1 = np.empty(n) if need_mu else None
    mu0 = np.empty(n) if need_mu else None
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for f, (train, test) in enumerate(splitter.split(np.zeros(n), treatment)):
        fold[test] = f
        if propensity is None:
            e_hat[test] = _fit_proba(classifier, Z, treatment, train, test)
        if m_hat is not None:
            m_hat[test] = _fit_predict(regressor, Z, outcome, train, test)
        if mu1 is not None and mu0 is not None:
            mu1[test] = _fit_predict(regressor, Z, outcome, train[treatment[train] == 1], test)
            mu0[test] = _fit_predict(regressor, Z, outcome, train[treatment[train] == 0], test)
    return Nuisances(
        fold=fold,
        e_hat=np.clip(e_hat, *clip),
        m_hat=m_hat,
        mu1=mu1,
        mu0=mu0,
        propensity_known=propensity is not None,
        n_folds=n_folds,
    )


class _CrossFitBias(BiasModel):
    """Unpaired rows (x, k, o, t): cross-fit nuisances, then regress a pseudo-outcome on x, k."""

    _need_m = False
    _need_mu = False

    def __init__(
        self,
        n_models: int,
        *,
        regressor: Factory = default_regressor,
        classifier: Factory = default_classifier,
        final_regressor: Factory | None = None,
        n_folds: int = 5,
        seed: int = 0,
        clip: tuple[float, float] = (0.01, 0.99),
        normaliser: ScaleNormaliser | None = None,
        sparse_design: bool | None = None,
    ) -> None:
        super().__init__(n_models, normaliser=normaliser)
        if not 0.0 < clip[0] < clip[1] < 1.0:
            raise ValueError("clip must satisfy 0 < lo < hi < 1")
        self.regressor = regressor
        self.classifier = classifier
        self.final_regressor = final_regressor or regressor
        self.n_folds = n_folds
        self.seed = seed
        self.clip = clip
        self.sparse_design = sparse_design
        self.model_: Any = None
        self.nuisances_: Nuisances | None = None

    def _pseudo(self, o: Array, t: IntArray, nu: Nuisances) -> tuple[Array, Array | None]:
        raise NotImplementedError

    def fit(
        self,
        X: ArrayLike,
        k: ArrayLike,
        outcome: ArrayLike,
        treatment: ArrayLike,
        propensity: ArrayLike | None = None,
        *,
        n_folds: int | None = None,
        seed: int | None = None,
    ) -> Self:
        """Fit on pooled rows: outcome o is the gold score where treatment t = 1, else the
        preference score. `propensity` is the logged audit probability π per row (designed audits);
        when given it replaces the estimated ê."""
        Z = self._design(X, k)
        n = Z.shape[0]
        idx = _model_index(k, self.n_models, n)
        o, t = _as_1d(outcome, "outcome"), _treatment(treatment, n)
        if o.shape[0] != n:
            raise ValueError("outcome must have one entry per row")
        pi = None if propensity is None else _propensity(propensity, n)
        o = self._normalise_outcome(o, t, idx, pi)
        self.nuisances_ = cross_fit_nuisances(
            Z,
            o,
            t,
            propensity=pi,
            need_m=self._need_m,
            need_mu=self._need_mu,
            regressor=self.regressor,
            classifier=self.classifier,
            n_folds=self.n_folds if n_folds is None else n_folds,
            seed=self.seed if seed is None else seed,
            clip=self.clip,
        )
        target, weight = self._pseudo(o, t, self.nuisances_)
        self.model_ = self.final_regressor()
        self.model_.fit(Z, target, sample_weight=weight)
        return self

    def _normalise_outcome(self, o: Array, t: IntArray, idx: IntArray, pi: Array | None) -> Array:
        if self.normaliser is None:
            return o
        gold, pref = t == 1, t == 0
        # Inverse-propensity weights make both marginals describe the same query population.
        w_gold = None if pi is None else 1.0 / pi[gold]
        w_pref = None if pi is None else 1.0 / (1.0 - pi[pref])
        self._fit_normaliser(o[pref], o[gold], idx[pref], idx[gold], w_pref, w_gold)
        out = o.copy()
        out[pref] = self.to_gold_scale(o[pref], idx[pref])
        return out

    def predict(self, X: ArrayLike, k: ArrayLike) -> Array:
        if self.model_ is None:
            raise RuntimeError("estimator is not fitted")
        Z = self._design(X, k)
        return _bounded(self.model_.predict(Z))


class RLearnerBias(_CrossFitBias):
    """R-learner: minimise Σ((o − m̂) − (t − ê)·τ(x,k))², i.e. regress (o − m̂)/(t − ê) with
    weights (t − ê)². Stable when audits are rare because the weights, not 1/ê, carry the
    imbalance."""

    _need_m = True

    def _pseudo(self, o: Array, t: IntArray, nu: Nuisances) -> tuple[Array, Array | None]:
        assert nu.m_hat is not None
        residual_t = t - nu.e_hat  # |t − ê| >= clip[0] thanks to clipping
        return (o - nu.m_hat) / residual_t, residual_t**2


class DRLearnerBias(_CrossFitBias):
    """DR-learner: regress φ = μ̂₁ − μ̂₀ + t(o − μ̂₁)/ê − (1 − t)(o − μ̂₀)/(1 − ê).

    ê is clipped to `clip`; `overlap_weights=True` weights rows by ê(1 − ê), which down-weights the
    regions where one arm is nearly absent (method.md: it failed without this at ê ≈ 0.02).
    """

    _need_mu = True

    def __init__(self, n_models: int, *, overlap_weights: bool = False, **options: Any) -> None:
        super().__init__(n_models, **options)
        self.overlap_weights = overlap_weights

    def _pseudo(self, o: Array, t: IntArray, nu: Nuisances) -> tuple[Array, Array | None]:
        assert nu.mu1 is not None and nu.mu0 is not None
        e = nu.e_hat
        phi = nu.mu1 - nu.mu0 + t * (o - nu.mu1) / e - (1 - t) * (o - nu.mu0) / (1 - e)
        return phi, (e * (1 - e) if self.overlap_weights else None)


# --------------------------------------------------------------------------- convenience


def estimate_bias(
    method: BiasMethod,
    X: ArrayLike,
    k: ArrayLike,
    n_models: int,
    *,
    gold: ArrayLike | None = None,
    pref: ArrayLike | None = None,
    outcome: ArrayLike | None = None,
    treatment: ArrayLike | None = None,
    propensity: ArrayLike | None = None,
    normaliser: ScaleNormaliser | None = None,
    **options: Any,
) -> BiasModel:
    """Fit and return a bias estimator by name.

    "paired" needs gold and pref on the same rows; "r"/"dr" need outcome, treatment and
    optionally the logged propensity; "mean_shift"/"none" accept either form. `options` go to the
    estimator's constructor (regressor, classifier, n_folds, seed, clip, overlap_weights, ...).
    """
    if method == "paired":
        if gold is None or pref is None:
            raise ValueError("method 'paired' needs gold and pref")
        paired = PairedBiasEstimator(n_models, normaliser=normaliser, **options)
        return paired.fit(X, k, gold, pref)
    if method in ("r", "dr"):
        if outcome is None or treatment is None:
            raise ValueError(f"method {method!r} needs outcome and treatment")
        cls = RLearnerBias if method == "r" else DRLearnerBias
        learner = cls(n_models, normaliser=normaliser, **options)
        return learner.fit(X, k, outcome, treatment, propensity)
    if method in ("mean_shift", "none"):
        simple = (MeanShiftBias if method == "mean_shift" else NoBias)(
            n_models, normaliser=normaliser
        )
        return simple.fit(
            X, k, gold, pref, outcome=outcome, treatment=treatment, propensity=propensity
        )
    raise ValueError(f"unknown bias method {method!r}")
