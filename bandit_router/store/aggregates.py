"""Aggregates over a time window for the console: traffic, reward, cost, exploration, bias runs.

Time buckets are computed by the database (epoch seconds // bucket size), so a long window costs
one grouped query, not a scan in Python. The expression differs per dialect."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Integer, and_, cast, func, or_, select, update

from bandit_router.store.models import (
    Audit,
    AuditGrade,
    AuditStatus,
    Decision,
    Feedback,
    LLMModel,
)
from bandit_router.store.records import (
    AuditRecord,
    GradeRecord,
    JobRecord,
    MeanBucket,
    QueuedAudit,
    TrafficBucket,
    records,
)
from bandit_router.store.repository import bias_jobs

# Exploration is read from each decision's candidates (JSON); this many newest decisions bound it.
EXPLORATION_SAMPLE = 5000


def _bucket(conn: Connection, column: Any, seconds: int) -> Any:
    """Start of the bucket holding `column`, in epoch seconds."""
    if conn.dialect.name == "postgresql":
        epoch = cast(func.extract("epoch", column), Integer)
    else:
        epoch = cast(func.strftime("%s", column), Integer)
    return (epoch // seconds) * seconds


def traffic_by_bucket(conn: Connection, since: datetime, seconds: int) -> list[TrafficBucket]:
    """Decisions per (bucket, chosen model)."""
    bucket = _bucket(conn, Decision.created_at, seconds).label("bucket")
    stmt = (
        select(bucket, Decision.chosen_model.label("model"), func.count().label("n"))
        .where(Decision.created_at >= since)
        .group_by(bucket, Decision.chosen_model)
        .order_by(bucket)
    )
    return records(TrafficBucket, conn.execute(stmt))


def reward_by_bucket(conn: Connection, since: datetime, seconds: int) -> list[MeanBucket]:
    """Mean preference reward per bucket of the decisions' time."""
    bucket = _bucket(conn, Decision.created_at, seconds).label("bucket")
    stmt = (
        select(bucket, func.avg(Feedback.reward).label("mean"), func.count().label("n"))
        .join(Decision, Decision.id == Feedback.decision_id)
        .where(Decision.created_at >= since)
        .group_by(bucket)
        .order_by(bucket)
    )
    return records(MeanBucket, conn.execute(stmt))


def cost_by_bucket(conn: Connection, since: datetime, seconds: int) -> list[MeanBucket]:
    """Expected cost per query (USD) per bucket, priced at the pool's current prices: the logged
    per-candidate cost lives in JSON, which cannot be summed portably in SQL."""
    bucket = _bucket(conn, Decision.created_at, seconds).label("bucket")
    cost = (
        Decision.input_tokens * LLMModel.input_price
        + LLMModel.expected_output_tokens * LLMModel.output_price
    ) / 1e6
    stmt = (
        select(bucket, func.avg(cost).label("mean"), func.count().label("n"))
        .join(LLMModel, LLMModel.name == Decision.chosen_model)
        .where(Decision.created_at >= since)
        .group_by(bucket)
        .order_by(bucket)
    )
    return records(MeanBucket, conn.execute(stmt))


def exploration_share(conn: Connection, since: datetime) -> tuple[float | None, int]:
    """Share of the newest decisions in the window whose model was not the top-scoring one."""
    stmt = (
        select(Decision.chosen_model, Decision.candidates)
        .where(Decision.created_at >= since)
        .order_by(Decision.created_at.desc())
        .limit(EXPLORATION_SAMPLE)
    )
    rows = conn.execute(stmt).all()
    if not rows:
        return None, 0
    explored = sum(1 for model, cands in rows if _top(cands) != model)
    return explored / len(rows), len(rows)


def _top(candidates: list[dict[str, Any]]) -> str | None:
    return max(candidates, key=lambda c: c["score"])["model"] if candidates else None


def model_traffic(conn: Connection, since: datetime) -> dict[str, int]:
    """Decisions per chosen model over the window."""
    stmt = (
        select(Decision.chosen_model, func.count())
        .where(Decision.created_at >= since)
        .group_by(Decision.chosen_model)
    )
    return {model: int(n) for model, n in conn.execute(stmt)}


def bias_runs(conn: Connection, limit: int = 50) -> list[JobRecord]:
    """Successful retraining runs that estimated the feedback bias, oldest first."""
    runs = bias_jobs(conn, scan=limit * 4)  # runs with too few events carry no estimate
    return list(reversed(runs[:limit]))


def grader_throughput(conn: Connection, grader: str, since: datetime) -> int:
    """Grades (first and second) this grader gave since `since`."""
    stmt = select(func.count()).where(AuditGrade.grader == grader, AuditGrade.created_at >= since)
    return int(conn.execute(stmt).scalar() or 0)


def claimed_by(conn: Connection, grader: str, now: datetime) -> list[QueuedAudit]:
    """This grader's live claims, oldest first, each with its round: the batch the workbench
    walks through."""
    first = and_(
        Audit.status == AuditStatus.CLAIMED,
        Audit.claimed_by == grader,
        Audit.claim_expires_at >= now,
    )
    second = and_(
        Audit.review_status == AuditStatus.CLAIMED,
        Audit.review_claimed_by == grader,
        Audit.review_claim_expires_at >= now,
    )
    stmt = select(Audit.__table__).where(or_(first, second)).order_by(Audit.id)
    return [
        QueuedAudit(a, 1 if a.status == AuditStatus.CLAIMED else 2)
        for a in records(AuditRecord, conn.execute(stmt))
    ]


def grades_of(conn: Connection, decision_id: str) -> list[GradeRecord]:
    """Every grade of a decision's audit (rubric and comment included), first round first."""
    stmt = (
        select(AuditGrade.__table__)
        .where(AuditGrade.decision_id == decision_id)
        .order_by(AuditGrade.round)
    )
    return records(GradeRecord, conn.execute(stmt))


def move_decision(conn: Connection, decision_id: str, at: datetime) -> None:
    """Give a decision, its feedback and its audit another time (`demo fill` spreads them)."""
    conn.execute(update(Decision).where(Decision.id == decision_id).values(created_at=at))
    conn.execute(update(Feedback).where(Feedback.decision_id == decision_id).values(created_at=at))
    conn.execute(update(Audit).where(Audit.decision_id == decision_id).values(created_at=at))
