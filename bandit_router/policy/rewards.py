"""Feedback → reward in [0, 1], and how several feedback items on one decision combine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PAIRWISE = {"win": 1.0, "tie": 0.5, "loss": 0.0}


def to_reward(kind: str, value: Any) -> float:
    """Thumbs → {0,1}; rating 1..5 → (r−1)/4; reward as is; pairwise win/tie/loss → 1/0.5/0."""
    if kind == "thumbs":
        return 1.0 if value == "up" else 0.0
    if kind == "rating":
        return (float(value) - 1.0) / 4.0
    if kind == "pairwise":
        return PAIRWISE[value]
    return float(value)


def aggregate(rewards: Sequence[float], how: str) -> float:
    """`rewards` in arrival order."""
    if how == "earliest":
        return rewards[0]
    if how == "latest":
        return rewards[-1]
    return sum(rewards) / len(rewards)
