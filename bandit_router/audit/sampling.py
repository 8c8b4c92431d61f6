"""Which decisions get a gold audit: a designed treatment with a known, logged probability π.

π never falls below the floor, so every kind of query can be audited (overlap holds by
construction and inverse-probability weights stay valid), and it rises where the policy is unsure
(the less probability its greedy choice has, the more an audit teaches).
"""

from __future__ import annotations

import hashlib

import numpy as np


def audit_probability(pmf: np.ndarray, floor: float, boost: float, cap: float) -> float:
    uncertainty = 1.0 - float(np.max(pmf))
    return float(min(max(floor + boost * uncertainty, floor), max(cap, floor)))


def selected_for_audit(decision_id: str, probability: float) -> bool:
    """A draw independent of the routing draw (different salt), reproducible from the id."""
    return _uniform("audit", decision_id) < probability


def selected_for_review(decision_id: str, rate: float) -> bool:
    """Whether a graded audit also gets a second grader: independent of the audit draw."""
    return _uniform("review", decision_id) < rate


def _uniform(salt: str, decision_id: str) -> float:
    u = int.from_bytes(hashlib.sha256(f"{salt}:{decision_id}".encode()).digest()[:8], "big")
    return u / 2.0**64
