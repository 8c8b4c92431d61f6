"""The learning log: every logged decision with what followed it, built in ONE place for the update
job, the retraining job and off-policy evaluation.

An event is a decision plus its aggregated preference reward, pairwise side information, gold
grade, the model that really answered (a proxy fallback may differ from the one drawn) and the
answer's length. Events are streamed oldest first in chunks of JOB_CHUNK_EVENTS, so no job
holds the whole window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine

from bandit_router.config import Settings
from bandit_router.policy.rewards import aggregate
from bandit_router.store import repository as repo
from bandit_router.store.records import EventRecord, FeedbackSignal


@dataclass(frozen=True)
class LoggedCandidate:
    """One model's line in a logged decision."""

    model: str
    quality: float  # the serving policy's predicted quality when it decided
    cost_norm: float
    probability: float


@dataclass(frozen=True)
class LoggedEvent:
    decision_id: str
    created_at: datetime
    emb: np.ndarray
    lam: float
    candidates: tuple[LoggedCandidate, ...]
    drawn: str  # the model the policy drew
    probability: float  # the probability it was drawn with
    answered: str | None  # whose answer the feedback rates; None: no upstream answered
    pref: float | None  # aggregated preference reward in [0, 1]
    sides: tuple[tuple[str, float], ...]  # pairwise feedback: the other model and its reward
    gold: float | None  # the audit's grade
    audit_probability: float
    output_tokens: float | None  # the answer's length when known
    policy_version: int

    @property
    def models(self) -> list[str]:
        """The logged candidates, plus the answering model if a fallback outside them answered."""
        names = [c.model for c in self.candidates]
        if self.answered is not None and self.answered not in names:
            names.append(self.answered)
        return names

    @property
    def on_policy(self) -> bool:
        """The drawn model answered: the logged probability is the probability of what was rated
        (off-policy evaluation needs exactly that)."""
        return self.answered == self.drawn

    def logged_greedy(self, lam: float | None = None) -> str:
        """What the serving policy would have picked without exploring, at `lam` (default: the
        request's own λ), from the qualities and costs it logged."""
        lam = self.lam if lam is None else lam
        return max(self.candidates, key=lambda c: c.quality - lam * c.cost_norm).model


def _aggregate_pref(items: list[FeedbackSignal], settings: Settings) -> float | None:
    if items:
        return aggregate([f.reward for f in items], settings.reward_aggregation)
    if settings.no_feedback == "default":
        return settings.default_reward
    return None


def _event(row: EventRecord, items: list[FeedbackSignal], settings: Settings) -> LoggedEvent:
    answered = row.chosen_model if row.proxied is None else row.served_model
    told = [f.output_tokens for f in items if f.output_tokens is not None]
    if row.proxy_output_tokens is not None:  # measured by the proxy beats a client's report
        tokens: float | None = float(row.proxy_output_tokens)
    else:
        tokens = float(told[-1]) if told else None
    return LoggedEvent(
        decision_id=row.id,
        created_at=row.created_at,
        emb=np.frombuffer(row.embedding, dtype=np.float32),
        lam=float(row.lam),
        candidates=tuple(
            LoggedCandidate(c["model"], c["quality"], c["cost_norm"], c["probability"])
            for c in row.candidates
        ),
        drawn=row.chosen_model,
        probability=float(row.probability),
        answered=answered,
        pref=_aggregate_pref(items, settings),
        sides=tuple(
            (f.other_model, 1.0 - f.reward) for f in items if f.type == "pairwise" and f.other_model
        ),
        gold=None if row.gold is None else float(row.gold),
        audit_probability=float(row.audit_probability),
        output_tokens=tokens,
        policy_version=int(row.policy_version),
    )


def read_events(
    engine: Engine,
    settings: Settings,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    unlearned_only: bool = False,
    graded_only: bool = False,
    max_events: int | None = None,
    chunk: int | None = None,
) -> Iterator[list[LoggedEvent]]:
    """The learning log in chunks of `chunk` events (default JOB_CHUNK_EVENTS), oldest first,
    streamed from one cursor. Decisions with no feedback and no grade are events only when
    NO_FEEDBACK=default (they then carry DEFAULT_REWARD)."""
    with engine.connect() as conn:
        for rows in repo.stream_event_rows(
            conn,
            chunk=chunk or settings.job_chunk_events,
            since=since,
            until=until,
            unlearned_only=unlearned_only,
            graded_only=graded_only,
            with_signal_only=settings.no_feedback == "skip",
            max_events=max_events,
        ):
            feedback = repo.feedback_for(conn, [r.id for r in rows])
            yield [_event(r, feedback[r.id], settings) for r in rows]


def newest(events: Iterator[list[LoggedEvent]], keep: int, only: Any = None) -> list[LoggedEvent]:
    """The newest `keep` events of a stream (that pass `only`), in bounded memory."""
    out: deque[LoggedEvent] = deque(maxlen=keep)
    for chunk in events:
        out.extend(e for e in chunk if only is None or only(e))
    return list(out)
