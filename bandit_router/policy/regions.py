"""Regions of the query space, so the router knows where each model has been tried.

A policy may carry a small k-means codebook over query embeddings (fitted on the prompts it was
warm-started on). Each model's learned examples are counted per region, and `decide` gives a
model that is still new IN THE REGION OF THE QUERY an exploration floor. Counting globally was
not enough: a model added to the pool that is the best for one kind of query used up its global
trial budget mostly on the other kinds, learned it was weak, and was then barely explored where
it was strong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


def fit_regions(X: np.ndarray, n_regions: int, seed: int = 0) -> np.ndarray | None:
    """Unit-norm k-means centroids (n_regions, d); None for fewer than two regions."""
    from sklearn.cluster import KMeans

    n = min(n_regions, len(X))
    if n < 2:
        return None
    km = KMeans(n_clusters=n, n_init=3, random_state=seed).fit(np.asarray(X, dtype=np.float64))
    c = km.cluster_centers_
    return np.asarray(c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12), np.float32)


def region_of(regions: np.ndarray | None, emb: np.ndarray) -> int:
    """The nearest centroid by cosine (embeddings are unit-norm); 0 without a codebook."""
    return 0 if regions is None else int(np.argmax(regions @ emb))


def to_bytes(regions: np.ndarray | None) -> bytes | None:
    return None if regions is None else np.asarray(regions, dtype="<f4").tobytes()


def from_bytes(blob: bytes | None, dim: int = 384) -> np.ndarray | None:
    if not blob:
        return None
    return np.frombuffer(blob, dtype="<f4").reshape(-1, dim).astype(np.float32)


@dataclass
class Tally:
    """How often each model was learned from, in total and per region."""

    regions: np.ndarray | None
    totals: dict[str, int] = field(default_factory=dict)
    by_region: dict[str, list[int]] = field(default_factory=dict)

    @property
    def n_regions(self) -> int:
        return 1 if self.regions is None else len(self.regions)

    @classmethod
    def of(
        cls,
        regions: np.ndarray | None,
        totals: Mapping[str, int] | None,
        by_region: Mapping[str, Sequence[int]] | None,
    ) -> Tally:
        return cls(
            regions,
            dict(totals or {}),
            {m: list(c) for m, c in (by_region or {}).items()},
        )

    def add(self, model: str, emb: np.ndarray, times: int = 1) -> None:
        self.totals[model] = self.totals.get(model, 0) + times
        counts = self.by_region.setdefault(model, [0] * self.n_regions)
        counts[region_of(self.regions, emb)] += times
