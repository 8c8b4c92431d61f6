"""The retention purge (jobs/retention.py), on SQLite and PostgreSQL: old decisions go in
batches with everything that hangs off them, rolled up per day and model first; young ones stay;
stored prompt text goes sooner."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, timedelta

import pytest

from bandit_router.bench.jobs import fill_store
from bandit_router.config import Settings
from bandit_router.jobs.retention import run_retention
from bandit_router.jobs.runner import JOBS, SCHEDULE
from bandit_router.store import repository as repo
from bandit_router.store.db import make_engine
from bandit_router.store.models import AuditStatus, utcnow

N = 60  # decisions spread evenly over the last 20 days


def _ids() -> list[str]:
    return [f"{i:032x}" for i in range(N)]


def _expected(engine, before) -> dict[tuple[str, str], dict[str, float]]:  # type: ignore[no-untyped-def]
    """The roll-up computed by hand from each decision's own rows."""
    out: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    with engine.connect() as conn:
        for did in _ids():
            d = repo.get_decision(conn, did)
            assert d is not None
            at = d.created_at if d.created_at.tzinfo else d.created_at.replace(tzinfo=UTC)
            if at >= before:
                continue
            row = out[(at.astimezone(UTC).date().isoformat(), d.chosen_model)]
            row["decisions"] += 1
            rewards = [f.reward for f in repo.list_feedback(conn, did)]
            row["feedback"] += len(rewards)
            row["reward_sum"] += sum(rewards)
            row["cost_usd"] += next(
                c["cost_usd"] for c in d.candidates if c["model"] == d.chosen_model
            )
            audit = repo.get_audit(conn, did)
            if audit is not None and audit.status == AuditStatus.GRADED and audit.score is not None:
                row["audits"] += 1
                row["gold_sum"] += audit.score
    return out


def test_the_purge_rolls_up_then_deletes_old_decisions_in_batches(settings: Settings) -> None:
    s = settings.model_copy(
        update={"retention_days": 10, "prompt_retention_days": 5, "retention_batch_rows": 7}
    )
    fill_store(s, N, seed=1, audit_rate=0.3, prompts=True)
    engine = make_engine(s.database_url)
    try:
        cutoff = utcnow() - timedelta(days=10)
        expected = _expected(engine, cutoff)
        n_old = sum(int(v["decisions"]) for v in expected.values())
        assert 20 < n_old < 40

        result = run_retention(engine, s)
        assert result["decisions_deleted"] == n_old
        assert result["batches"] == -(-n_old // 7)  # 7 at a time

        with engine.connect() as conn:
            rows = repo.daily_aggregates(conn)
            kept = [repo.get_decision(conn, did) for did in _ids()]
            gone = [did for did, d in zip(_ids(), kept, strict=True) if d is None]
            assert len(gone) == n_old
            for did in gone:  # no orphans
                assert repo.list_feedback(conn, did) == [] and repo.get_audit(conn, did) is None
            young = [d for d in kept if d is not None]
            assert all(repo.list_feedback(conn, d.id) for d in young)
            # Prompts: cleared between 5 and 10 days, kept on the newest 5 days.
            fresh = utcnow() - timedelta(days=5)
            for d in young:
                at = d.created_at if d.created_at.tzinfo else d.created_at.replace(tzinfo=UTC)
                assert (d.prompt is None) == (at < fresh)
        got = {(r.day.isoformat(), r.model): r for r in rows}
        assert set(got) == set(expected)
        for key, want in expected.items():
            for col, value in want.items():
                assert getattr(got[key], col) == pytest.approx(value), (key, col)

        # A second run finds nothing: the aggregates are not counted twice.
        again = run_retention(engine, s)
        assert again["decisions_deleted"] == 0 and again["prompts_cleared"] == 0
        with engine.connect() as conn:
            assert repo.daily_aggregates(conn) == rows
    finally:
        engine.dispose()


def test_zero_days_keeps_everything(settings: Settings) -> None:
    s = settings.model_copy(update={"retention_days": 0, "prompt_retention_days": 0})
    fill_store(s, 10, seed=2, prompts=True)
    engine = make_engine(s.database_url)
    try:
        assert "decisions_deleted" not in run_retention(engine, s)
        with engine.connect() as conn:
            kept = [repo.get_decision(conn, did) for did in _ids()[:10]]
            assert all(d is not None and d.prompt for d in kept)
            assert repo.daily_aggregates(conn) == []
    finally:
        engine.dispose()


def test_the_purge_is_scheduled_beside_the_learning_jobs() -> None:
    assert JOBS["retention"] is run_retention
    assert SCHEDULE["retention"] == "retention_interval_seconds"


def test_the_rolled_up_history_is_served_to_admins(client, runtime) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/v1/admin/daily").json() == []
    day = {"day": utcnow().date(), "model": "strong", "decisions": 4, "cost_usd": 0.02}
    with runtime.engine.begin() as conn:
        repo.add_daily_aggregates(
            conn, [day | {"feedback": 2, "reward_sum": 1.5, "audits": 0, "gold_sum": 0.0}]
        )
        repo.add_daily_aggregates(
            conn, [day | {"feedback": 2, "reward_sum": 0.5, "audits": 1, "gold_sum": 0.75}]
        )
    (row,) = client.get("/v1/admin/daily").json()
    assert row["day"] == day["day"].isoformat() and row["model"] == "strong"
    assert row["decisions"] == 8 and row["feedback"] == 4 and row["audits"] == 1
    assert row["mean_reward"] == pytest.approx(0.5) and row["mean_grade"] == pytest.approx(0.75)
    assert row["cost_usd"] == pytest.approx(0.04)
