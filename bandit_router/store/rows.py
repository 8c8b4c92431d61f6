"""Row builders for decisions and feedback: the one definition the API and the benchmarks share."""

from __future__ import annotations

from typing import Any

import numpy as np

from bandit_router.policy.decide import Choice
from bandit_router.store.models import utcnow


def decision_row(
    decision_id: str,
    choice: Choice,
    emb: np.ndarray,
    *,
    lam: float,
    input_tokens: int,
    policy_version: int,
    exploration: str,
    prompt_hash: str,
    prompt: str | None = None,
    preset: str | None = None,
    audit_probability: float = 0.0,
    audit_selected: bool = False,
) -> dict[str, Any]:
    return {
        "id": decision_id,
        "created_at": utcnow(),
        "prompt_hash": prompt_hash,
        "prompt": prompt,
        "embedding": np.asarray(emb, dtype=np.float32).tobytes(),
        "input_tokens": input_tokens,
        "lam": lam,
        "preset": preset,
        "candidates": choice.candidates(),
        "chosen_model": choice.model,
        "probability": choice.probability,
        "exploration": exploration,
        "policy_version": policy_version,
        "audit_probability": audit_probability,
        "audit_selected": audit_selected,
    }


def feedback_row(
    decision_id: str,
    kind: str,
    value: Any,
    reward: float,
    *,
    source: str,
    idempotency_key: str,
    other_model: str | None = None,
    output_tokens: int | None = None,
) -> dict[str, Any]:
    return {
        "decision_id": decision_id,
        "created_at": utcnow(),
        "type": kind,
        "value": {"value": value},
        "other_model": other_model,
        "reward": reward,
        "source": source,
        "idempotency_key": idempotency_key,
        "output_tokens": output_tokens,
    }
