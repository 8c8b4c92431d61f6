"""Feedback: the row one piece of feedback is stored as (the API and the benchmarks share it)."""

from __future__ import annotations

from typing import Any

from bandit_router.store.models import utcnow


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
