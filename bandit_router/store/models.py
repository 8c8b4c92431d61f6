"""Typed SQLAlchemy models. Alembic revisions in migrations/ create exactly these tables."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class AuditStatus(StrEnum):
    """An audit's first grade (`status`) and its optional second one (`review_status`)."""

    PENDING = "pending"
    CLAIMED = "claimed"
    GRADED = "graded"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class LLMModel(Base):
    """One model of the pool with its price snapshot."""

    __tablename__ = "models"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    input_price: Mapped[float] = mapped_column(Float)  # USD per 1M input tokens
    output_price: Mapped[float] = mapped_column(Float)  # USD per 1M output tokens
    expected_output_tokens: Mapped[int] = mapped_column(Integer)
    base_url: Mapped[str | None] = mapped_column(String(500), default=None)
    api_key_env: Mapped[str | None] = mapped_column(String(200), default=None)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Decision(Base):
    """A routing decision with everything needed to learn from it and to evaluate it off-policy."""

    __tablename__ = "decisions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    prompt_hash: Mapped[str] = mapped_column(String(64))
    prompt: Mapped[str | None] = mapped_column(Text, default=None)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # float32 vector
    input_tokens: Mapped[int] = mapped_column(Integer)
    lam: Mapped[float] = mapped_column(Float)
    preset: Mapped[str | None] = mapped_column(String(20), default=None)
    # Per candidate, in decision order: model, quality, cost_usd, cost_norm, score, probability.
    candidates: Mapped[list[Any]] = mapped_column(JSON)
    chosen_model: Mapped[str] = mapped_column(String(200))
    probability: Mapped[float] = mapped_column(Float)
    exploration: Mapped[str] = mapped_column(String(20))
    policy_version: Mapped[int] = mapped_column(Integer)
    audit_probability: Mapped[float] = mapped_column(Float, default=0.0)
    audit_selected: Mapped[bool] = mapped_column(Boolean, default=False)
    learned_version: Mapped[int | None] = mapped_column(Integer, default=None)

    __table_args__ = (
        Index("ix_decisions_created_at", "created_at"),
        Index("ix_decisions_learned_version", "learned_version"),
    )


class Feedback(Base):
    """Preference-type feedback on a decision, mapped to a reward in [0, 1]."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    decision_id: Mapped[str] = mapped_column(ForeignKey("decisions.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    type: Mapped[str] = mapped_column(String(20))
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    other_model: Mapped[str | None] = mapped_column(String(200), default=None)
    reward: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(20))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    output_tokens: Mapped[int | None] = mapped_column(Integer, default=None)  # the rated answer's

    __table_args__ = (
        UniqueConstraint("decision_id", "idempotency_key", name="uq_feedback_idempotency"),
        Index("ix_feedback_decision_id", "decision_id"),
    )


class PolicyVersion(Base):
    """A trained Vowpal Wabbit policy; exactly one row is active."""

    __tablename__ = "policy_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    vw_args: Mapped[str] = mapped_column(String(500))
    model_bytes: Mapped[bytes] = mapped_column(LargeBinary)
    # How often each model was learned from: the exploration floor for new models reads this.
    model_counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # A k-means codebook of query regions (float32, n x 384) and each model's learned examples
    # per region: the exploration floor for models new to a region reads them.
    regions: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    region_counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source: Mapped[str] = mapped_column(String(40))
    parent_id: Mapped[int | None] = mapped_column(Integer, default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    __table_args__ = (
        # At most one active policy, enforced by the database itself.
        Index(
            "uq_policy_versions_one_active",
            "active",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
    )


class Job(Base):
    """One run of a background job (update, retrain, ...)."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))  # queued | running | succeeded | failed
    trigger: Mapped[str] = mapped_column(String(20))  # schedule | admin | cli
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class Audit(Base):
    """A decision selected for a gold audit, and its grade once a grader submits it."""

    __tablename__ = "audits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    decision_id: Mapped[str] = mapped_column(
        ForeignKey("decisions.id", ondelete="CASCADE"), unique=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    status: Mapped[str] = mapped_column(String(20), default=AuditStatus.PENDING)
    claimed_by: Mapped[str | None] = mapped_column(String(200), default=None)
    claim_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    score: Mapped[float | None] = mapped_column(Float, default=None)
    grader_id: Mapped[str | None] = mapped_column(String(200), default=None)
    graded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # A second, independent grade by another grader (AUDIT_DOUBLE_GRADE_RATE), to measure how
    # much graders agree: None (not wanted) | pending | claimed | graded. `score` stays the
    # first grade, so the estimators and learning read what they read before.
    review_status: Mapped[str | None] = mapped_column(String(20), default=None)
    review_claimed_by: Mapped[str | None] = mapped_column(String(200), default=None)
    review_claim_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), default=None
    )

    __table_args__ = (
        Index("ix_audits_status", "status", "id"),
        Index("ix_audits_review_status", "review_status", "id"),
    )


class AuditText(Base):
    """The prompt and the answer of a decision drawn for an audit: what a grader reads. Kept
    even with STORE_PROMPTS=false, deleted once graded or after AUDIT_TEXT_DAYS."""

    __tablename__ = "audit_texts"

    decision_id: Mapped[str] = mapped_column(
        ForeignKey("decisions.id", ondelete="CASCADE"), primary_key=True
    )
    prompt: Mapped[str | None] = mapped_column(Text, default=None)
    answer: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_audit_texts_created_at", "created_at"),)


class AuditGrade(Base):
    """Every grade given to an audit (first and second), with its rubric and comment."""

    __tablename__ = "audit_grades"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    decision_id: Mapped[str] = mapped_column(ForeignKey("decisions.id", ondelete="CASCADE"))
    grader: Mapped[str] = mapped_column(String(200))  # the API key's prefix, else grader_id
    grader_name: Mapped[str] = mapped_column(String(200))  # grader_id as the grader gave it
    round: Mapped[int] = mapped_column(Integer)  # 1: the audit's score; 2: the second opinion
    score: Mapped[float] = mapped_column(Float)
    rubric: Mapped[str | None] = mapped_column(String(64), default=None)
    comment: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        UniqueConstraint("decision_id", "round", name="uq_audit_grades_round"),
        Index("ix_audit_grades_created_at", "created_at"),
    )


class OfflineGold(Base):
    """Gold labels imported from an offline benchmark (not tied to a decision): unpaired audits."""

    __tablename__ = "offline_gold"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    prompt_hash: Mapped[str] = mapped_column(String(64))
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    model: Mapped[str] = mapped_column(String(200))
    score: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(200))

    __table_args__ = (
        UniqueConstraint("prompt_hash", "model", "source", name="uq_offline_gold_item"),
    )


class DailyAggregate(Base):
    """Per day and chosen model, what the retention purge rolled up before deleting the
    decisions: sums and counts (not means), so that a day purged over several batches or runs
    adds up, and the console and metrics keep their history after the rows are gone."""

    __tablename__ = "daily_aggregates"

    day: Mapped[date] = mapped_column(Date, primary_key=True)  # UTC day of the decisions
    model: Mapped[str] = mapped_column(String(200), primary_key=True)  # the chosen model
    decisions: Mapped[int] = mapped_column(Integer, default=0)
    feedback: Mapped[int] = mapped_column(Integer, default=0)  # feedback items
    reward_sum: Mapped[float] = mapped_column(Float, default=0.0)  # mean reward = sum / feedback
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)  # expected cost of the choices
    audits: Mapped[int] = mapped_column(Integer, default=0)  # graded audits
    gold_sum: Mapped[float] = mapped_column(Float, default=0.0)  # mean grade = sum / audits


class ApiKey(Base):
    """A caller's key. The key itself is shown once at creation and never stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prefix: Mapped[str] = mapped_column(String(20))  # "brk_" + 8 hex: safe to show and to log
    key_hash: Mapped[str] = mapped_column(String(64))  # sha256 hex of the whole key
    role: Mapped[str] = mapped_column(String(20))
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    __table_args__ = (
        UniqueConstraint("prefix", name="uq_api_keys_prefix"),
        UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )


class ProxyAnswer(Base):
    """Which model actually answered a proxied decision, and what failed before it.

    A table of its own rather than a decisions column: the decision row is the policy's log (what
    it chose, with which probability) and stays as written; a fallback is a fact of the proxy."""

    __tablename__ = "proxy_answers"

    decision_id: Mapped[str] = mapped_column(
        ForeignKey("decisions.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    served_model: Mapped[str | None] = mapped_column(String(200), default=None)  # None: none did
    status: Mapped[int] = mapped_column(Integer)  # the HTTP status the caller got
    attempts: Mapped[list[Any]] = mapped_column(JSON)  # [{"model", "status"?, "error"?}, ...]
    # The answer's length (usage.completion_tokens, else characters / chars_per_token): what a
    # judge's verbosity bias keys on. A stream's is set when it ends; None if it broke off.
    output_tokens: Mapped[int | None] = mapped_column(Integer, default=None)


class ProxyRequest(Base):
    """A proxied request's identity, so that a retry of it reuses its decision: the caller's
    Idempotency-Key, or (for clients that retry without one, like OpenAI's SDKs) its body."""

    __tablename__ = "proxy_requests"

    decision_id: Mapped[str] = mapped_column(
        ForeignKey("decisions.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    caller: Mapped[str] = mapped_column(String(20))  # the API key's prefix; "" with auth off
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    body_hash: Mapped[str] = mapped_column(String(64))  # SHA-256 of the canonical JSON body

    __table_args__ = (
        UniqueConstraint("caller", "idempotency_key", name="uq_proxy_requests_key"),
        Index("ix_proxy_requests_body", "caller", "body_hash", "created_at"),
    )
