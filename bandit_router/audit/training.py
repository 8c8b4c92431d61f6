"""Training labels from logged events that carry preference feedback and/or gold audits.

The periodic retraining job calls `corrected_labels` on its event log: one row per logged event
(query embedding x, model index k), a preference-type reward (NaN if none), a gold audit score
(NaN if not audited) and the logged audit probability π. It returns one label per event (NaN =
not trainable) for the quality model, built by one of these methods:

- "preference_only": the preference reward, whatever the audits say.
- "pooled": gold where audited, the raw preference elsewhere (the naive mix).
- "gold_only": gold where audited, nothing elsewhere.
- "paired": regress gold − pref on the audited events that carry both; gold where audited,
  normalised pref + Δ̂_k(x) elsewhere.
- "r" / "dr": the cross-fitted R- / DR-learner of bias.py on unpaired rows (outcome = gold if
  audited else pref, treatment = audited) with the KNOWN propensity π; labels as for "paired".

The corrected methods put preference on the gold scale first (variance or 2-Wasserstein
matching, the Meta-Router paper's Remark 1), then estimate Δ. With a few hundred audits and 384-d
embeddings the bias model works on a PCA reduction of x (optionally with η̂_k(x), the cross-fitted
preference prediction, and per-event covariates such as the answer's log length), in one ridge
over [z, onehot(k), z ⊗ onehot(k)] whose strength and block penalties are chosen by exact
leave-one-out error on the rows it is fitted on — never on anything held out.

`fit_quality` is the small deterministic quality model the bias benchmark evaluates labels with
(the service itself trains VW on the same labels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeAlias

import numpy as np
from numpy.typing import NDArray
from scipy import sparse as sp
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_limits

from bandit_router.audit.bias import BiasModel, ScaleNormaliser, design, estimate_bias

Array: TypeAlias = NDArray[np.float64]
Method: TypeAlias = Literal["preference_only", "pooled", "gold_only", "paired", "r", "dr"]

NAIVE_METHODS: tuple[str, ...] = ("preference_only", "pooled", "gold_only")
CORRECTED_METHODS: tuple[str, ...] = ("paired", "r", "dr")
METHODS: tuple[str, ...] = NAIVE_METHODS + CORRECTED_METHODS

DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-2, 6, 17))
DEFAULT_COMPONENTS = 32
DEFAULT_MODEL_SCALES: tuple[float, ...] = (1.0, 3.0, 10.0)
MIN_AUDITS = 10  # below this many usable audits a bias model is noise: fall back to pooled

__all__ = [
    "CORRECTED_METHODS",
    "METHODS",
    "LabelCorrector",
    "LooRidge",
    "RidgeQualityModel",
    "corrected_labels",
    "fit_quality",
    "reduce_dimension",
]


# --------------------------------------------------------------------------- shared helpers


def reduce_dimension(X: np.ndarray, n_components: int | None, seed: int = 0) -> tuple[Array, Any]:
    """(PCA-reduced X, the fitted PCA or None). A no-op when X is already narrow enough."""
    x = np.asarray(X, dtype=np.float64)
    if n_components is None or x.shape[1] <= n_components:
        return x, None
    pca = PCA(n_components=min(n_components, x.shape[0]), random_state=seed)
    return pca.fit_transform(x), pca


@dataclass
class _Spectrum:
    """One eigendecomposition of a centred, weighted design: enough for every alpha."""

    evals: Array
    V: Array
    Q: Array  # √w·(X − x̄)·V
    r: Array  # √w·(y − ȳ)
    qy: Array
    lever0: Array  # the intercept's share of each row's leverage

    @classmethod
    def of(cls, X: Any, target: Array, w: Array) -> _Spectrum:
        x_mean = np.asarray(w @ X).ravel() / w.sum()
        y_mean = float(w @ target / w.sum())
        weighted = X.multiply(w[:, None]).tocsr() if sp.issparse(X) else X * w[:, None]
        gram = np.asarray((X.T @ weighted).todense() if sp.issparse(X) else X.T @ weighted)
        gram -= w.sum() * np.outer(x_mean, x_mean)
        evals, V = np.linalg.eigh(gram)
        root = np.sqrt(w)
        Q = (np.asarray(X @ V) - x_mean @ V) * root[:, None]
        r = (target - y_mean) * root
        return cls(np.clip(evals, 0.0, None), V, Q, r, Q.T @ r, w / w.sum())

    def loo(self, alpha: float) -> tuple[float, float, float]:
        """(leave-one-out MSE, its standard error, effective degrees of freedom) at alpha."""
        inv = 1.0 / (self.evals + alpha)
        hat = (self.Q**2) @ inv + self.lever0
        loo = (self.r - self.Q @ (self.qy * inv)) / np.clip(1.0 - hat, 1e-9, None)
        squared = loo**2
        se = float(squared.std() / np.sqrt(squared.size))
        return float(squared.mean()), se, float(np.sum(self.evals * inv))

    def coef(self, alpha: float) -> Array:
        return np.asarray(self.V @ (self.qy / (self.evals + alpha)))


def _scaled(X: Any, scale: Array | None) -> Any:
    if scale is None:
        return X
    return X.multiply(scale[None, :]).tocsr() if sp.issparse(X) else X * scale[None, :]


class _Candidate(NamedTuple):
    scale: int  # index into LooRidge.scales
    alpha: float
    mse: float
    se: float
    df: float


class LooRidge:
    """Weighted ridge with an unpenalised intercept whose penalty is picked by the exact
    leave-one-out error on the fitting rows (so tuning never looks beyond them).

    `scales` are candidate per-column scale vectors (see `block_scales`): a column scaled by s
    is penalised by alpha/s², so one candidate can, e.g., shrink per-model intercepts far less
    than the many interaction columns. With `one_se` the simplest candidate (fewest
    effective degrees of freedom) whose leave-one-out error is within one standard error of the
    best wins: with a few hundred audits spread over 10-30 models the plain minimum often picks
    loose per-model intercepts that fit noise, and a wrong correction of one model's quality can
    send every query to it. One eigendecomposition of the p x p Gram matrix serves every alpha,
    and a sparse design's Gram matrix is formed sparsely. Weights are rescaled to mean 1, so
    alpha means the same for every fit. BLAS runs on one thread: two OpenBLAS threads on a busy
    2-core host made one eigendecomposition ~30x slower.
    """

    def __init__(
        self,
        alphas: Sequence[float] = DEFAULT_ALPHAS,
        scales: Sequence[Array] | None = None,
        *,
        one_se: bool = False,
    ) -> None:
        self.alphas = tuple(float(a) for a in alphas)
        self.scales: list[Array | None] = list(scales) if scales else [None]
        self.one_se = one_se
        self.alpha_: float = float("nan")
        self.scale_: Array | None = None
        self.coef_: Array = np.zeros(0)
        self.intercept_: float = 0.0
        self.loo_mse_: float = float("inf")

    def fit(self, X: Any, y: np.ndarray, sample_weight: np.ndarray | None = None) -> LooRidge:
        target = np.asarray(y, dtype=np.float64)
        w = np.ones(target.shape[0]) if sample_weight is None else np.asarray(sample_weight, float)
        w = w / w.mean()
        with threadpool_limits(limits=1):
            candidates = [
                _Candidate(i, alpha, *spectrum.loo(alpha))
                for i, scale in enumerate(self.scales)
                for spectrum in [_Spectrum.of(_scaled(X, scale), target, w)]
                for alpha in self.alphas
            ]
            chosen = self._choose(candidates)
            scale = self.scales[chosen.scale]
            Xs = _scaled(X, scale)
            coef = _Spectrum.of(Xs, target, w).coef(chosen.alpha)
        x_mean = np.asarray(w @ Xs).ravel() / w.sum()
        self.alpha_, self.scale_, self.loo_mse_ = chosen.alpha, scale, chosen.mse
        self.intercept_ = float(w @ target / w.sum() - x_mean @ coef)
        self.coef_ = coef if scale is None else coef * scale
        return self

    def _choose(self, candidates: list[_Candidate]) -> _Candidate:
        best = min(candidates, key=lambda c: c.mse)
        if not self.one_se:
            return best
        eligible = [c for c in candidates if c.mse <= best.mse + best.se]
        return min(eligible, key=lambda c: (c.df, c.mse))

    def predict(self, X: Any) -> Array:
        return np.asarray(X @ self.coef_).ravel() + self.intercept_


def block_scales(
    d: int,
    n_models: int,
    model_scales: Sequence[float] = DEFAULT_MODEL_SCALES,
    column_scales: Sequence[Array] | None = None,
) -> list[Array]:
    """Candidate column scales for design(x, k) = [x, onehot(k), x ⊗ onehot(k)]: every model-
    intercept scale crossed with every per-feature scale of x. A feature's scale applies in full
    to its shared column and capped at 1 to its per-model copies, so an upweighted feature gets
    one loosely penalised shared slope, not K of them."""
    columns = list(column_scales) if column_scales else [np.ones(d)]
    return [
        np.concatenate([c, np.full(n_models, m), np.tile(np.minimum(c, 1.0), n_models)])
        for m in model_scales
        for c in columns
    ]


def _ridge(alphas: Sequence[float], scales: Sequence[Array] | None, one_se: bool = False) -> Any:
    def make() -> LooRidge:
        return LooRidge(alphas, scales, one_se=one_se)

    return make


def _check_events(
    X: np.ndarray, k: np.ndarray, n_models: int, *columns: np.ndarray
) -> tuple[Array, NDArray[np.int64], list[Array]]:
    x = np.asarray(X, dtype=np.float64)
    idx = np.asarray(k, dtype=np.int64)
    if x.ndim != 2 or idx.shape != (x.shape[0],):
        raise ValueError(f"X must be (n, d) and k (n,), got {x.shape} and {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= n_models):
        raise ValueError(f"model index out of range [0, {n_models})")
    arrays = [np.asarray(c, dtype=np.float64) for c in columns]
    if any(a.shape != idx.shape for a in arrays):
        raise ValueError("pref, gold and propensity need one entry per event")
    return x, idx, arrays


# --------------------------------------------------------------------------- corrected labels


@dataclass(frozen=True)
class LabelOptions:
    """Knobs of the corrected methods (the `**options` of `corrected_labels`)."""

    normaliser: str = "variance"  # "variance" | "wasserstein" | "deconvolve" (paired) | "none"
    per_model_normaliser: bool = False
    n_components: int | None = DEFAULT_COMPONENTS  # PCA width of x for the bias model
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    # Per-model intercepts penalised like the rest: looser candidates let a few hundred audits
    # over 27 models fit noise (MMLU-Pro at 2%) and gained nothing measurable on RouterBench.
    model_scales: tuple[float, ...] = (1.0,)
    pref_feature: bool = True
    feature_scales: tuple[float, ...] = (0.0, 1.0, 3.0, 10.0)  # 0: leave them out
    one_se: bool = False  # 1-SE rule when tuning the bias model (see LooRidge)
    n_folds: int = 5
    clip: tuple[float, float] = (0.01, 0.99)
    overlap_weights: bool = False

    @classmethod
    def parse(cls, options: dict[str, Any]) -> LabelOptions:
        unknown = set(options) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)}")
        tuples = {
            key: tuple(value)
            for key, value in options.items()
            if isinstance(value, list | np.ndarray)
        }
        return cls(**{**options, **tuples})


def _normaliser(
    opts: LabelOptions, pref: Array, gold: Array, k: NDArray[np.int64], propensity: Array
) -> ScaleNormaliser | None:
    """Fit the scale map on every preference vs every audit, audits weighted by 1/π so that
    both marginals describe the same population of events; "deconvolve" uses the events that
    carry both."""
    if opts.normaliser == "none":
        return None
    has_p, has_g = np.isfinite(pref), np.isfinite(gold)
    if opts.normaliser == "deconvolve":
        has_p = has_g = has_p & has_g
    norm = ScaleNormaliser(opts.normaliser, per_model=opts.per_model_normaliser)  # type: ignore[arg-type]
    return norm.fit(
        pref[has_p],
        gold[has_g],
        k_pref=k[has_p],
        k_gold=k[has_g],
        gold_weight=1 / propensity[has_g],
    )


def _cross_fitted_preference(
    Z: Array, k: NDArray[np.int64], n_models: int, y: Array, opts: LabelOptions, seed: int
) -> Array:
    """η̂_k(x): out-of-fold ridge prediction of the (normalised) preference reward."""
    from sklearn.model_selection import KFold

    has_p = np.isfinite(y)
    D = design(Z, k, n_models, sparse=True)
    out = np.empty(k.shape[0])
    ridge = _ridge(opts.alphas, block_scales(Z.shape[1], n_models, opts.model_scales[:1]))
    folds = KFold(n_splits=opts.n_folds, shuffle=True, random_state=seed)
    for train, test in folds.split(Z):
        fit_rows = train[has_p[train]]
        out[test] = ridge().fit(D[fit_rows], y[fit_rows]).predict(D[test])
    return out


class _BiasFeatures:
    """Features of the bias model besides PCA(x), and the candidate per-feature penalty scales.

    Two kinds of columns may join, each standardised to the top PCA feature's spread, with one
    penalty scale for all of them chosen (with the ridge strength) by leave-one-out error, 0
    meaning "leave them out":
    - η̂_k(x) (pref_feature): the bias largely tracks the quality the judge sees (an inaccurate
      judge compresses quality differences, so Δ grows with ψ); one shared coefficient on η̂
      explains what would otherwise need a per-model intercept from a handful of audits each.
      Cross-fitted on the fitting rows; a ridge on all of them for new events.
    - event_features: what the event itself shows before anyone evaluates it, e.g. the log
      length of the answer, which carries the judge's verbosity bias.
    """

    def __init__(self, opts: LabelOptions, n_models: int, seed: int) -> None:
        self.opts = opts
        self.n_models = n_models
        self.seed = seed

    def fit_transform(
        self, Z: Array, k: NDArray[np.int64], y: Array, event_features: Array | None
    ) -> tuple[Array, list[Array]]:
        """(Z with the added columns, candidate column scales) for the fitting rows."""
        opts = self.opts
        extra = [] if event_features is None else [_as_columns(event_features, len(k))]
        self.eta_: Any = None
        if opts.pref_feature and np.isfinite(y).sum() >= opts.n_folds:
            extra.append(_cross_fitted_preference(Z, k, self.n_models, y, opts, self.seed)[:, None])
            has_p = np.isfinite(y)
            ridge = _ridge(
                opts.alphas, block_scales(Z.shape[1], self.n_models, opts.model_scales[:1])
            )
            self.eta_ = ridge().fit(
                design(Z[has_p], k[has_p], self.n_models, sparse=True), y[has_p]
            )
        self.n_event_features_ = 0 if event_features is None else extra[0].shape[1]
        if not extra:
            self.mean_ = self.std_ = np.zeros(0)
            return Z, [np.ones(Z.shape[1])]
        added = np.hstack(extra)
        self.spread_ = float(Z.std(axis=0).max()) if Z.size else 1.0
        self.mean_, self.std_ = added.mean(axis=0), np.maximum(added.std(axis=0), 1e-12)
        m = added.shape[1]
        scales = [np.concatenate([np.ones(Z.shape[1]), np.full(m, f)]) for f in opts.feature_scales]
        return np.hstack([Z, self._standardise(added)]), scales

    def _standardise(self, added: Array) -> Array:
        return np.asarray((added - self.mean_) / self.std_ * self.spread_)

    def transform(self, Z: Array, k: NDArray[np.int64], event_features: Array | None) -> Array:
        """The same columns for new events (η̂ from the ridge fitted on all fitting rows)."""
        if self.mean_.size == 0:
            return Z
        extra = []
        if self.n_event_features_:
            if event_features is None:
                raise ValueError("the bias model was fitted with event features: pass them")
            extra.append(_as_columns(event_features, len(k)))
        if self.eta_ is not None:
            extra.append(self.eta_.predict(design(Z, k, self.n_models, sparse=True))[:, None])
        return np.hstack([Z, self._standardise(np.hstack(extra))])


def _as_columns(values: Array, n: int) -> Array:
    return np.asarray(values, float).reshape(n, -1)


def _fit_bias(
    method: str,
    Z: Array,
    k: NDArray[np.int64],
    n_models: int,
    pref: Array,
    gold: Array,
    propensity: Array,
    normaliser: ScaleNormaliser | None,
    column_scales: list[Array],
    opts: LabelOptions,
    seed: int,
) -> BiasModel:
    has_p, has_g = np.isfinite(pref), np.isfinite(gold)
    d = Z.shape[1]
    final = _ridge(
        opts.alphas, block_scales(d, n_models, opts.model_scales, column_scales), opts.one_se
    )
    if method == "paired":
        both = has_p & has_g
        if both.sum() < 2:
            raise ValueError("paired needs at least two events with both gold and preference")
        return estimate_bias(
            "paired", Z[both], k[both], n_models, gold=gold[both], pref=pref[both],
            normaliser=normaliser, regressor=final, sparse_design=True,
        )  # fmt: skip
    # Nuisances learn from thousands of rows: one penalty layout is enough and keeps them fast.
    nuisance = _ridge(opts.alphas, block_scales(d, n_models, opts.model_scales[:1]))
    rows = has_g | has_p
    extra: dict[str, Any] = {"n_folds": opts.n_folds, "seed": seed, "clip": opts.clip}
    if method == "dr":
        extra["overlap_weights"] = opts.overlap_weights
    return estimate_bias(
        method,  # type: ignore[arg-type]
        Z[rows], k[rows], n_models, outcome=np.where(has_g, gold, pref)[rows],
        treatment=has_g[rows].astype(np.int64), propensity=propensity[rows],
        normaliser=normaliser, regressor=nuisance, final_regressor=final, sparse_design=True,
        **extra,
    )  # fmt: skip


def _naive_labels(method: str, pref: Array, gold: Array) -> Array:
    if method == "preference_only":
        return pref.copy()
    if method == "gold_only":
        return gold.copy()
    return np.where(np.isfinite(gold), gold, pref)  # pooled


def _bias_summary(
    model: BiasModel, Z: Array, k: NDArray[np.int64], rows: NDArray[np.bool_], n_added: int
) -> dict[str, Any]:
    """What the retraining job logs: mean Δ̂ (overall, per model), the chosen penalties and
    where the scale map sends preference 0 and 1."""
    delta = model.predict(Z[rows], k[rows]) if rows.any() else np.zeros(0)
    per_model = [
        float(delta[k[rows] == m].mean()) if (k[rows] == m).any() else None
        for m in range(model.n_models)
    ]
    fitted = getattr(model, "model_", None)
    summary: dict[str, Any] = {
        "estimator": type(model).__name__,
        "mean_delta": float(delta.mean()) if delta.size else None,
        "mean_delta_by_model": per_model,
        "ridge_alpha": getattr(fitted, "alpha_", None),
    }
    scale = getattr(fitted, "scale_", None)
    if scale is not None:
        d = Z.shape[1]  # the model-intercept block starts right after the features
        summary["penalty_scale"] = {
            "model_intercepts": float(scale[d]),
            "added_features": float(scale[d - 1]) if n_added else None,
        }
    norm = model.normaliser
    if norm is not None:
        summary["normaliser"] = {"kind": norm.method, "per_model": norm.per_model}
        if not norm.per_model:
            ends = norm.transform(np.array([0.0, 1.0]))
            summary["normaliser"].update(pref_0_to=float(ends[0]), pref_1_to=float(ends[1]))
    return summary


class LabelCorrector:
    """A fitted correction of preference feedback onto the gold scale (Meta-Router).

    `fit` learns, from logged events, the scale map, the preference model η̂ and the bias model
    Δ̂; `correct` turns any preference-only event, logged before or after, into the label
    normalise(y) + Δ̂_k(x) clipped to `bounds`. Options: the fields of `LabelOptions`.

    `bounds` (0, 1) keeps labels on the gold range, but biases their MEAN whenever the feedback
    is coarser than the grade: with thumbs from a judge right 78% of the time, a model whose
    gold mean is 0.875 got corrected labels averaging 0.74, because the thumbs-up events'
    labels (≈1.17) were cut to 1. A regression learner wants unbiased labels: wider bounds.
    """

    def __init__(
        self,
        method: str = "paired",
        *,
        seed: int = 0,
        bounds: tuple[float, float] = (0.0, 1.0),
        **options: Any,
    ) -> None:
        self.method = method
        self.seed = seed
        self.bounds = bounds
        self.options = options

    def fit(
        self,
        X: np.ndarray,
        k: np.ndarray,
        n_models: int,
        pref: np.ndarray,
        gold: np.ndarray,
        propensity: np.ndarray,
        event_features: np.ndarray | None = None,
    ) -> LabelCorrector:
        if self.method not in CORRECTED_METHODS:
            raise ValueError(f"{self.method!r} is not a corrected method")
        opts = LabelOptions.parse(self.options)
        x, idx, (y, g, pi) = _check_events(X, k, n_models, pref, gold, propensity)
        has_g = np.isfinite(g)
        if np.any(~np.isfinite(pi[has_g])) or np.any((pi[has_g] <= 0) | (pi[has_g] >= 1)):
            raise ValueError("audited events need a logged propensity strictly inside (0, 1)")
        Z, self.pca_ = reduce_dimension(x, opts.n_components, self.seed)
        self.normaliser_ = _normaliser(opts, y, g, idx, pi)
        y_gold_scale = (
            y.copy()
            if self.normaliser_ is None
            else self.normaliser_.transform(np.nan_to_num(y), idx)
        )
        y_gold_scale[~np.isfinite(y)] = np.nan
        self.features_ = _BiasFeatures(opts, n_models, self.seed)
        Zb, columns = self.features_.fit_transform(Z, idx, y_gold_scale, event_features)
        self.model_ = _fit_bias(
            self.method, Zb, idx, n_models, y, g, pi, self.normaliser_, columns, opts, self.seed
        )
        self.fitted_design_ = Zb  # the fitting rows' features (η̂ cross-fitted)
        return self

    def _design(self, X: np.ndarray, k: NDArray[np.int64], event_features: Array | None) -> Array:
        z = np.asarray(X, dtype=np.float64)
        if self.pca_ is not None:
            z = self.pca_.transform(z)
        return self.features_.transform(z, k, event_features)

    def correct(
        self,
        X: np.ndarray,
        k: np.ndarray,
        pref: np.ndarray,
        event_features: np.ndarray | None = None,
    ) -> Array:
        idx = np.asarray(k, dtype=np.int64)
        if idx.size == 0:
            return np.zeros(0)
        return self.model_.correct(self._design(X, idx, event_features), idx, pref, self.bounds)

    def bias(self, X: np.ndarray, k: np.ndarray, event_features: np.ndarray | None = None) -> Array:
        """Δ̂_k(x) on the gold scale."""
        idx = np.asarray(k, dtype=np.int64)
        return self.model_.predict(self._design(X, idx, event_features), idx)

    def summary(self, k: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
        """What a retraining logs about the fit, over the fitting rows `rows` (a mask)."""
        return _bias_summary(
            self.model_, self.fitted_design_, np.asarray(k, np.int64), rows,
            self.features_.mean_.size,
        )  # fmt: skip


def _corrected(
    x: Array,
    k: NDArray[np.int64],
    n_models: int,
    y: Array,
    g: Array,
    pi: Array,
    method: str,
    seed: int,
    options: dict[str, Any],
) -> tuple[Array, dict[str, Any]]:
    options = dict(options)
    event_features = options.pop("event_features", None)
    options.pop("min_audits", None)
    corrector = LabelCorrector(method, seed=seed, **options).fit(
        x, k, n_models, y, g, pi, event_features
    )
    pref_only = np.isfinite(y) & ~np.isfinite(g)
    labels = g.copy()
    if pref_only.any():
        rows = corrector.fitted_design_[pref_only]
        labels[pref_only] = corrector.model_.correct(rows, k[pref_only], y[pref_only])
    return labels, corrector.summary(k, pref_only)


def _cannot_correct(method: str, y: Array, g: Array, options: dict[str, Any]) -> str | None:
    """Why no bias model can be fitted (labels then fall back to pooled), or None.

    The retraining job runs before the first audits arrive and on logs of offline gold alone;
    a job that failed there would block retraining, and a bias model from a handful of audits
    would be noise.
    """
    has_p, has_g = np.isfinite(y), np.isfinite(g)
    if not (has_p & ~has_g).any():
        return "no preference-only events: nothing to correct"
    floor = int(options.get("min_audits", MIN_AUDITS))
    usable = (has_p & has_g).sum() if method == "paired" else has_g.sum()
    if usable < floor:
        kind = "audited events with a preference" if method == "paired" else "audited events"
        return f"{usable} {kind} (< {floor}): too few to estimate the bias; pooled labels"
    return None


def corrected_labels(
    X: np.ndarray,
    k: np.ndarray,
    n_models: int,
    pref: np.ndarray,
    gold: np.ndarray,
    propensity: np.ndarray,
    method: str,
    seed: int = 0,
    **options: Any,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One training label per logged event (NaN = not trainable) and a summary of the fit.

    Options of the corrected methods ("paired", "r", "dr"): `event_features`, an (n, m) array
    of per-event covariates the bias model may use (e.g. log answer length; not the quality
    model), and the fields of `LabelOptions`: normaliser ("variance" | "wasserstein" | "none"),
    per_model_normaliser, n_components (PCA width; None keeps X), pref_feature, the candidate
    grids alphas / model_scales / feature_scales, one_se, n_folds, clip ("r"/"dr")
    and overlap_weights ("dr"). The naive methods ignore options. With fewer than `min_audits`
    (10) usable audits, or no preference-only event to correct, a corrected method returns the
    pooled labels and says why in info["fallback"].
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    x, idx, (y, g, pi) = _check_events(X, k, n_models, pref, gold, propensity)
    has_p, has_g = np.isfinite(y), np.isfinite(g)
    info: dict[str, Any] = {
        "method": method,
        "n_events": int(idx.size),
        "n_gold": int(has_g.sum()),
        "n_pref": int(has_p.sum()),
        "n_paired": int((has_g & has_p).sum()),
    }
    fallback = None if method in NAIVE_METHODS else _cannot_correct(method, y, g, options)
    if method in NAIVE_METHODS or fallback is not None:
        labels = _naive_labels("pooled" if fallback else method, y, g)
        if fallback:
            info["fallback"] = fallback
    else:
        labels, info["bias_model"] = _corrected(x, idx, n_models, y, g, pi, method, seed, options)
    info["n_labels"] = int(np.isfinite(labels).sum())
    return labels, info


# --------------------------------------------------------------------------- quality model


@dataclass
class RidgeQualityModel:
    """q̂_k(x) for every model: one ridge on [z, onehot(k), z ⊗ onehot(k)], z = PCA(x)."""

    n_models: int
    pca: Any
    ridge: Any

    def predict(self, X: np.ndarray) -> Array:
        z = np.asarray(X, dtype=np.float64)
        if self.pca is not None:
            z = self.pca.transform(z)
        n = z.shape[0]
        cols = [
            self.ridge.predict(design(z, np.full(n, m), self.n_models, sparse=True))
            for m in range(self.n_models)
        ]
        return np.clip(np.column_stack(cols), 0.0, 1.0)


def fit_quality(
    X: np.ndarray,
    k: np.ndarray,
    labels: np.ndarray,
    n_models: int,
    *,
    n_components: int | None = DEFAULT_COMPONENTS,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    model_scales: Sequence[float] = DEFAULT_MODEL_SCALES,
    seed: int = 0,
) -> RidgeQualityModel:
    """Fit the evaluation quality model on the events with a finite label.

    One shared ridge rather than one per model: with a few audits per model, per-model fits are
    noise, while the shared query block and the per-model intercepts borrow strength across
    models (the same design as the bias model). The ridge strength is chosen by generalised
    cross-validation on these rows only.
    """
    x, idx, (lab,) = _check_events(X, k, n_models, labels)
    keep = np.isfinite(lab)
    if keep.sum() < 2:
        raise ValueError("need at least two labelled events")
    _, pca = reduce_dimension(x, n_components, seed)
    z = x if pca is None else pca.transform(x)
    Z = design(z[keep], idx[keep], n_models, sparse=True)
    scales = block_scales(z.shape[1], n_models, model_scales)
    ridge = LooRidge(alphas, scales, one_se=False).fit(Z, lab[keep])
    return RidgeQualityModel(n_models=n_models, pca=pca, ridge=ridge)
