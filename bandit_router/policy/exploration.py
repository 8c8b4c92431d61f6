"""Exploration distributions over candidate models, computed in our code (not inside VW).

Keeping the PMF here means we log exactly the probability the choice was drawn with, the
exploration strength does not drift with the number of learn calls (as VW's SquareCB gamma does),
and a decision id reproduces its draw.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ExplorationConfig:
    kind: str = "squarecb"  # squarecb | epsilon | greedy
    gamma: float = 40.0
    epsilon: float = 0.05
    new_model_examples: int = 10
    new_model_min_probability: float = 0.1


def greedy_pmf(scores: np.ndarray) -> np.ndarray:
    pmf = np.zeros_like(scores, dtype=np.float64)
    pmf[int(np.argmax(scores))] = 1.0
    return pmf


def epsilon_greedy_pmf(scores: np.ndarray, epsilon: float) -> np.ndarray:
    k = len(scores)
    return np.full(k, epsilon / k) + (1 - epsilon) * greedy_pmf(scores)


def squarecb_pmf(scores: np.ndarray, gamma: float) -> np.ndarray:
    """Inverse-gap weighting (Foster & Rakhlin): p_a = 1/(K + γ_K·gap_a), rest to the best arm.

    γ_K = γ·K: with the textbook γ fixed, near-equal arms each keep ~1/K and the exploration
    share approaches (K−1)/K as the pool grows (54% of rounds with 11 models in the RouterBench
    replay); scaling by K keeps the share set by the gaps, whatever the pool size."""
    k = len(scores)
    best = int(np.argmax(scores))
    pmf = 1.0 / (k + gamma * k * (scores[best] - scores))
    pmf[best] = 0.0
    pmf[best] = 1.0 - pmf.sum()
    return pmf


def with_floor(pmf: np.ndarray, needs_floor: np.ndarray, floor: float) -> np.ndarray:
    """Give flagged arms (new models) at least `floor`, taking the mass from the others."""
    if floor <= 0 or not needs_floor.any() or needs_floor.all():
        return pmf
    floor = min(floor, 1.0 / len(pmf))
    raised = np.where(needs_floor, np.maximum(pmf, floor), pmf)
    rest = ~needs_floor
    room = 1.0 - raised[needs_floor].sum()
    raised[rest] = pmf[rest] * room / pmf[rest].sum()
    return raised


def distribution(scores: np.ndarray, is_new: np.ndarray, cfg: ExplorationConfig) -> np.ndarray:
    if cfg.kind == "squarecb":
        pmf = squarecb_pmf(scores, cfg.gamma)
    elif cfg.kind == "epsilon":
        pmf = epsilon_greedy_pmf(scores, cfg.epsilon)
    else:
        pmf = greedy_pmf(scores)
    if cfg.kind != "greedy":
        pmf = with_floor(pmf, is_new, cfg.new_model_min_probability)
    return pmf


def draw(pmf: np.ndarray, seed: str) -> int:
    """Sample an index from `pmf` with a uniform derived from `seed` (the decision id)."""
    u = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big") / 2.0**64
    idx = int(np.searchsorted(np.cumsum(pmf), u, side="right"))
    return min(idx, len(pmf) - 1)
