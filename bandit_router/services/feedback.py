"""Feedback on a decision: what it is worth as a reward, which pieces are the same feedback sent
twice (idempotency), and what a pairwise verdict may name. The API and the benchmarks share the
row it is stored as."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, Engine

from bandit_router import telemetry
from bandit_router.policy.rewards import to_reward
from bandit_router.services.errors import Conflict, Invalid, NotFound, excerpt
from bandit_router.services.routing import Snapshot
from bandit_router.store import proxy_log
from bandit_router.store import repository as repo
from bandit_router.store.models import Feedback, utcnow
from bandit_router.store.writer import GroupCommitWriter

# What a client key vouches for: the same key with any of these different is another request.
COMPARED = ("type", "value", "other_model", "source", "output_tokens")


@dataclass(frozen=True)
class FeedbackIn:
    decision_id: str
    type: str
    value: Any
    source: str
    idempotency_key: str | None = None  # the client's own; None: derived from the body
    other_model: str | None = None
    output_tokens: int | None = None

    def key(self) -> str:
        """Without a client key, identical feedback (type, value, other model, source) counts
        once."""
        if self.idempotency_key:
            return self.idempotency_key
        raw = f"{self.type}|{self.value!r}|{self.other_model}|{self.source}"
        return "auto:" + hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Recorded:
    status: Literal["created", "duplicate"]  # duplicate: the same feedback was stored before
    reward: float  # the stored reward (a duplicate's is the first one's)


class FeedbackService:
    def __init__(
        self, engine: Engine, writer: GroupCommitWriter, snapshot: Callable[[], Snapshot]
    ) -> None:
        self.engine = engine
        self.writer = writer
        self.snapshot = snapshot

    async def record(self, fb: FeedbackIn) -> Recorded:
        if fb.other_model is not None:
            own = await asyncio.to_thread(self._answerer, fb.decision_id)
            self._check_other_model(own, fb.other_model)
        reward = to_reward(fb.type, fb.value)
        row = feedback_row(
            fb.decision_id,
            fb.type,
            fb.value,
            reward,
            source=fb.source,
            idempotency_key=fb.key(),
            other_model=fb.other_model,
            output_tokens=fb.output_tokens,
        )

        def write(conn: Connection) -> tuple[str, Feedback | None]:
            status = repo.insert_feedback(conn, row)
            if status != "duplicate":
                return status, None
            return status, repo.get_feedback(conn, fb.decision_id, row["idempotency_key"])

        status, stored = await self.writer.write(write)
        conflict = key_conflict(fb, stored, row) if stored is not None else None
        telemetry.record_feedback(fb.type, "conflict" if conflict else status)
        if status == "not_found":
            raise NotFound(f"decision {fb.decision_id} does not exist")
        if conflict:
            raise Conflict(conflict)
        if stored is not None:
            return Recorded("duplicate", stored.reward)
        return Recorded("created", reward)

    def _answerer(self, decision_id: str) -> str:
        """The decision's model whose answer was rated: the proxy's fallback when one answered."""
        with self.engine.connect() as conn:
            decision = repo.get_decision(conn, decision_id)
            if decision is None:
                raise NotFound(f"decision {decision_id} does not exist")
            answer = proxy_log.get_answer(conn, decision_id)
        served = answer.served_model if answer is not None else None
        return served or decision.chosen_model

    def _check_other_model(self, own_model: str, other: str) -> None:
        """A pairwise verdict trains `other` too: it must be a model of the pool that is
        routable, and not the one whose answer it was compared against."""
        snapshot = self.snapshot()
        if other not in snapshot.pool:
            raise Invalid(f"'other_model' {excerpt(other, 60)} is not a model of the pool")
        if other not in {m.name for m in snapshot.enabled}:
            raise Invalid(f"'other_model' {other} is disabled")
        if other == own_model:
            raise Invalid(f"'other_model' {other} is the model that answered this decision")


def key_conflict(fb: FeedbackIn, stored: Feedback, sent: dict[str, Any]) -> str | None:
    """Stripe-style: a client's idempotency key names one request; the same key with another
    body is a mistake worth a 409, not a silent duplicate. (A derived key is the body already.)"""
    if not fb.idempotency_key:
        return None
    differs = [f for f in COMPARED if getattr(stored, f) != sent.get(f)]
    if not differs:
        return None
    return (
        f"idempotency key {excerpt(fb.idempotency_key, 60)} was already used for different "
        f"feedback on this decision ({', '.join(differs)} differ); the stored reward is "
        f"{stored.reward:g}. Use a new key for new feedback"
    )


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
