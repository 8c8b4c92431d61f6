"""The judge's measurement model: how a preference score y relates to the gold grade g of the same
answer, fitted on paired audits and inverted to put preference on the gold scale.

    y ≈ c + d·g + βᵀz + γ_k          (z: what the event shows, e.g. the answer's log length;
                                      γ_k: a per-model offset, shrunk towards 0)
    label(y) = (y − c − βᵀz − γ_k) / d,   so that E[label | g, z, k] = g.

Why invert a regression of y on g instead of matching variances or adding a bias estimated from
(g − y): a noisy judge's scores regress towards their mean (thumbs right 78% of the time have
d ≈ 0.55), so adding a per-model shift leaves good models under- and poor ones over-rated, and
matching variances under-expands (the variance of y holds the noise too). A verbosity-biased
judge puts its bias in β, a self-preferring one in γ_k, a compressed rating scale in c and d.
What the model does not capture (a judge whose accuracy varies with the query) is left to the
Meta-Router bias model fitted on top (audit/training.py).
"""

from __future__ import annotations

from typing import Self

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

MIN_SLOPE = 0.05  # a judge this unrelated to gold says nothing about it: labels = the gold mean
MODEL_PENALTY = (
    20.0  # ridge on γ_k, in audits: a model needs ~20 audits to move its offset half-way
)


class JudgeCalibration:
    """Weighted least squares of y on [1, g, z, onehot(k)] with a ridge on the model offsets."""

    def __init__(self, n_models: int, *, model_penalty: float = MODEL_PENALTY) -> None:
        self.n_models = n_models
        self.model_penalty = model_penalty

    def _design(self, k: NDArray[np.int64], z: Array | None, n: int) -> Array:
        cols = [np.ones((n, 1))]
        if z is not None:
            cols.append(np.asarray(z, float).reshape(n, -1))
        cols.append(np.eye(self.n_models)[np.asarray(k, dtype=np.int64)])
        return np.hstack(cols)

    def fit(
        self,
        pref: Array,
        gold: Array,
        k: NDArray[np.int64],
        z: Array | None = None,
        weight: Array | None = None,
    ) -> Self:
        y, g = np.asarray(pref, float), np.asarray(gold, float)
        n = y.size
        base = self._design(k, z, n)
        D = np.column_stack([base[:, :1], g, base[:, 1:]])  # [1, g, z, onehot(k)]
        w = np.ones(n) if weight is None else np.asarray(weight, float)
        w = w / w.mean()
        penalty = np.zeros(D.shape[1])
        penalty[-self.n_models :] = self.model_penalty
        gram = D.T @ (D * w[:, None]) + np.diag(penalty) + 1e-9 * np.eye(D.shape[1])
        coef = np.linalg.solve(gram, D.T @ (w * y))
        self.slope_ = float(coef[1])
        self.gold_mean_ = float(np.average(g, weights=w))
        self.offsets_ = np.delete(coef, 1)  # [c, β, γ]: what the judge adds besides d·g
        self.n_z_ = 0 if z is None else np.asarray(z).reshape(n, -1).shape[1]
        return self

    def to_gold_scale(self, pref: Array, k: NDArray[np.int64], z: Array | None = None) -> Array:
        y = np.asarray(pref, float)
        if self.n_z_ and z is None:
            raise ValueError("the judge model was fitted with event features: pass them")
        if self.slope_ < MIN_SLOPE:
            return np.full(y.size, self.gold_mean_)
        offset = self._design(k, z if self.n_z_ else None, y.size) @ self.offsets_
        return np.asarray((y - offset) / self.slope_)

    def summary(self) -> dict[str, float]:
        return {"slope": self.slope_, "intercept": float(self.offsets_[0])}
