"""One routing decision: predicted quality − λ·normalised cost, then the exploration draw."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypedDict

import numpy as np

from bandit_router.policy.exploration import ExplorationConfig, distribution, draw
from bandit_router.policy.learner import LinearReadout, QualityModel
from bandit_router.policy.pool import ModelSpec
from bandit_router.policy.regions import region_of


@dataclass(frozen=True)
class Policy:
    """An immutable serving snapshot: swapping it is how a new version goes live."""

    version: int
    model: QualityModel
    model_counts: Mapping[str, int]
    regions: np.ndarray | None = None
    region_counts: Mapping[str, Sequence[int]] = field(default_factory=dict)
    readout: LinearReadout | None = None  # set by `read_out` when the snapshot is built

    def read_out(self, names: Sequence[str], dim: int) -> Policy:
        """This policy with its scores for `names` read out as linear functions (learner.py):
        ~0.4 ms less per route than VW's own predict, which stays the fallback."""
        return replace(self, readout=self.model.linear_readout(names, dim))

    def quality(self, emb: np.ndarray, names: Sequence[str]) -> np.ndarray:
        if self.readout is not None:
            found = self.readout.predict(emb, names)
            if found is not None:
                return found
        return self.model.predict(emb, names)

    def is_new(self, names: Sequence[str], emb: np.ndarray, examples: int) -> np.ndarray:
        """Per model: learned fewer than `examples` times in the query's region AND fewer times
        than the most-learned model there. The second part matters where a warm start saw few
        queries: every model is under `examples` there, and a rule that floored them all would
        floor none (and never try a newly added model there)."""
        r = region_of(self.regions, emb)
        counts = np.array([self._count(n, r, examples) for n in names])
        return np.asarray(counts < min(examples, int(counts.max())))

    def _count(self, name: str, region: int, examples: int) -> int:
        if name in self.region_counts:
            return int(self.region_counts[name][region])
        # A version stored before regions were counted knows only totals.
        return examples if self.model_counts.get(name, 0) >= examples else 0


class Candidate(TypedDict):
    """One model's line in a decision, as logged and as returned."""

    model: str
    quality: float
    cost_usd: float
    cost_norm: float
    score: float
    probability: float


@dataclass
class Choice:
    models: list[str]
    quality: np.ndarray
    cost_usd: np.ndarray
    cost_norm: np.ndarray
    score: np.ndarray
    pmf: np.ndarray
    chosen: int

    @property
    def model(self) -> str:
        return self.models[self.chosen]

    @property
    def probability(self) -> float:
        return float(self.pmf[self.chosen])

    def candidates(self) -> list[Candidate]:
        return [
            {
                "model": m,
                "quality": round(float(self.quality[i]), 6),
                "cost_usd": float(self.cost_usd[i]),
                "cost_norm": round(float(self.cost_norm[i]), 6),
                "score": round(float(self.score[i]), 6),
                "probability": float(self.pmf[i]),
            }
            for i, m in enumerate(self.models)
        ]


def decide(
    policy: Policy,
    decision_id: str,
    emb: np.ndarray,
    candidates: Sequence[ModelSpec],
    input_tokens: int,
    cost_ref: float,
    lam: float,
    cfg: ExplorationConfig,
) -> Choice:
    """`cost_ref` normalises cost (the priciest enabled model for this query), so λ means the same
    whatever allow-list the request carries."""
    names = [c.name for c in candidates]
    quality = policy.quality(emb, names)
    cost = np.array([c.expected_cost(input_tokens) for c in candidates])
    cost_norm = cost / cost_ref if cost_ref > 0 else np.zeros_like(cost)
    score = quality - lam * cost_norm
    is_new = policy.is_new(names, emb, cfg.new_model_examples)
    pmf = distribution(score, is_new, cfg)
    return Choice(names, quality, cost, cost_norm, score, pmf, draw(pmf, decision_id))
