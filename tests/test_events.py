"""The learning log (jobs/events.py): one event per decision with what followed it, read in
chunks from one cursor, on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest

from bandit_router.config import Settings
from bandit_router.jobs.events import read_events
from bandit_router.policy.decide import Policy
from bandit_router.policy.learner import QualityModel
from bandit_router.policy.pool import ModelSpec
from bandit_router.runtime import prepare_database
from bandit_router.services.feedback import feedback_row
from bandit_router.services.routing import exploration_config, plan_decision
from bandit_router.store import proxy_log
from bandit_router.store import repository as repo
from bandit_router.store.db import make_engine

POOL = [ModelSpec("strong", 5.0, 15.0, 300), ModelSpec("mid", 1.0, 2.0, 300)]


@pytest.fixture
def engine(settings: Settings):  # type: ignore[no-untyped-def]
    eng = make_engine(settings.database_url)
    prepare_database(eng, settings)
    yield eng
    eng.dispose()


def log_decision(engine, settings: Settings, did: str) -> str:  # type: ignore[no-untyped-def]
    policy = Policy(1, QualityModel(settings.vw_args), {})
    emb = np.full(384, 1 / np.sqrt(384), dtype=np.float32)
    planned = plan_decision(
        policy, did, emb, POOL, POOL, 40, 0.2, settings, exploration_config(settings),
        prompt_hash=did,
    )  # fmt: skip
    with engine.begin() as conn:
        repo.insert_decision(conn, planned.row, False)
    return str(planned.choice.model)


def feedback(engine, did: str, kind: str, value: object, reward: float, key: str, **extra):  # type: ignore[no-untyped-def]
    row = feedback_row(did, kind, value, reward, source="user", idempotency_key=key, **extra)
    with engine.begin() as conn:
        repo.insert_feedback(conn, row)


def test_an_event_carries_what_followed_its_decision(engine, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    drawn = log_decision(engine, settings, "d1")
    other = next(m.name for m in POOL if m.name != drawn)
    feedback(engine, "d1", "thumbs", "up", 1.0, "a", output_tokens=40)
    feedback(engine, "d1", "pairwise", "win", 1.0, "b", other_model=other, output_tokens=90)
    with engine.begin() as conn:
        repo.insert_audit(conn, "d1")
        repo.grade_audit(conn, "d1", 0.25, "g")
    (event,) = [e for page in read_events(engine, settings) for e in page]
    assert event.drawn == event.answered == drawn and event.on_policy
    assert event.pref == pytest.approx(1.0)  # the mean of both
    assert event.sides == ((other, 0.0),)  # the pairwise loser
    assert event.gold == 0.25
    assert event.output_tokens == 90  # the newest reported length
    assert event.emb.shape == (384,) and event.lam == 0.2
    assert event.logged_greedy() in {"strong", "mid"}


def test_a_fallback_is_the_model_the_feedback_rates(engine, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    drawn = log_decision(engine, settings, "d2")
    log_decision(engine, settings, "d3")
    with engine.begin() as conn:
        answer = {"decision_id": "d2", "served_model": "backup", "status": 200}
        proxy_log.record_answer(conn, answer | {"attempts": [], "output_tokens": 12})
        none = {"decision_id": "d3", "served_model": None, "status": 502, "attempts": []}
        proxy_log.record_answer(conn, none)
    feedback(engine, "d2", "rating", 5, 1.0, "a", output_tokens=500)
    feedback(engine, "d3", "thumbs", "down", 0.0, "a")
    events = {e.decision_id: e for page in read_events(engine, settings) for e in page}
    fallback = events["d2"]
    assert fallback.drawn == drawn and fallback.answered == "backup" and not fallback.on_policy
    assert fallback.models[-1] == "backup"  # learned as one more candidate
    assert fallback.output_tokens == 12  # the proxy's measurement beats a client's report
    assert events["d3"].answered is None  # nobody answered: nothing to learn


def test_chunks_stream_the_log_oldest_first(engine, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    ids = [f"e{i}" for i in range(7)]
    for did in ids:
        log_decision(engine, settings, did)
        feedback(engine, did, "reward", 0.5, 0.5, "k")
    log_decision(engine, settings, "silent")  # no feedback, no grade: not an event
    pages = list(read_events(engine, settings, chunk=3))
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [e.decision_id for p in pages for e in p] == ids
    with engine.begin() as conn:
        repo.mark_learned(conn, ids[:5], 1)
    left = [e.decision_id for p in read_events(engine, settings, unlearned_only=True) for e in p]
    assert left == ids[5:]
    assert list(read_events(engine, settings, graded_only=True)) == []
    capped = [e for p in read_events(engine, settings, chunk=3, max_events=4) for e in p]
    assert len(capped) == 4
