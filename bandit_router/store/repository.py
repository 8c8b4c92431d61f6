"""Repository functions: every SQL statement the service runs, on a Connection the caller owns."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import defer

from bandit_router.store.models import (
    Audit,
    AuditGrade,
    AuditStatus,
    AuditText,
    DailyAggregate,
    Decision,
    Feedback,
    Job,
    JobStatus,
    LLMModel,
    OfflineGold,
    PolicyVersion,
    ProxyAnswer,
    ProxyRequest,
    utcnow,
)
from bandit_router.store.records import (
    AuditRecord,
    AuditTextRecord,
    DailyAggregateRecord,
    EventRecord,
    FeedbackSignal,
    GradeRecord,
    JobRecord,
    ModelRecord,
    OfflineGoldRecord,
    QueuedAudit,
    ReportRecord,
    first,
    mapped,
    mapped_all,
    record,
    records,
)

# --- model pool -------------------------------------------------------------------------------


def list_models(conn: Connection, enabled_only: bool = False) -> list[ModelRecord]:
    stmt = select(LLMModel.__table__).order_by(LLMModel.name)
    if enabled_only:
        stmt = stmt.where(LLMModel.enabled.is_(True))
    return records(ModelRecord, conn.execute(stmt))


def get_model(conn: Connection, name: str) -> ModelRecord | None:
    return first(ModelRecord, conn.execute(select(LLMModel.__table__).where(LLMModel.name == name)))


def add_model(conn: Connection, spec: dict[str, Any]) -> None:
    now = utcnow()
    conn.execute(insert(LLMModel).values(**spec, created_at=now, updated_at=now))


def update_model(conn: Connection, name: str, changes: dict[str, Any]) -> None:
    conn.execute(
        update(LLMModel).where(LLMModel.name == name).values(**changes, updated_at=utcnow())
    )


def seed_models(conn: Connection, specs: Iterable[dict[str, Any]]) -> list[str]:
    """Insert pool-file models that the store does not have yet; returns the names added."""
    known = {r[0] for r in conn.execute(select(LLMModel.name))}
    added = []
    for spec in specs:
        if spec["name"] not in known:
            add_model(conn, spec)
            added.append(spec["name"])
    return added


# --- decisions and feedback -------------------------------------------------------------------


def insert_decisions(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    conn.execute(insert(Decision), list(rows))


def insert_feedback_rows(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk feedback (one executemany), for filling a store: no duplicate check."""
    if rows:
        conn.execute(insert(Feedback), list(rows))


def insert_audit_rows(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(Audit), list(rows))


_INSERT_DECISION = insert(Decision)  # built once: the route path runs it on every request


def insert_decision(
    conn: Connection, row: dict[str, Any], audited: bool, audit_prompt: str | None = None
) -> None:
    """A decision and, when it was drawn for a gold audit, its pending audit and the prompt a
    grader will read — atomically."""
    # Parameters, not .values(): the statement compiles once and is reused from the cache.
    conn.execute(_INSERT_DECISION, row)
    if audited:
        insert_audit(conn, row["id"])
        if audit_prompt is not None:
            conn.execute(insert(AuditText), {"decision_id": row["id"], "prompt": audit_prompt})


def get_decision(conn: Connection, decision_id: str) -> Decision | None:
    return mapped(conn, select(Decision).where(Decision.id == decision_id))


def decision_exists(conn: Connection, decision_id: str) -> bool:
    return (
        conn.execute(select(Decision.learned_version).where(Decision.id == decision_id)).first()
        is not None
    )


def insert_feedback(conn: Connection, row: dict[str, Any]) -> str:
    """Store one feedback item: 'created', 'duplicate' (same idempotency key) or 'not_found'."""
    found = conn.execute(
        select(Decision.learned_version).where(Decision.id == row["decision_id"])
    ).first()
    if found is None:
        return "not_found"
    row = {**row, "late": found[0] is not None}  # arrived after its decision was learned
    # RETURNING, not rowcount: psycopg reports -1 for inserts that return the generated key.
    ins = _insert_ignore(conn, Feedback).values(**row).returning(Feedback.id)
    return "created" if conn.execute(ins).first() is not None else "duplicate"


def _insert_ignore(conn: Connection, model: type) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(model).on_conflict_do_nothing()


def get_feedback(conn: Connection, decision_id: str, idempotency_key: str) -> Feedback | None:
    """The feedback stored under a decision's idempotency key."""
    stmt = select(Feedback).where(
        Feedback.decision_id == decision_id, Feedback.idempotency_key == idempotency_key
    )
    return mapped(conn, stmt)


def list_feedback(conn: Connection, decision_id: str) -> list[Feedback]:
    stmt = select(Feedback).where(Feedback.decision_id == decision_id).order_by(Feedback.id)
    return mapped_all(conn, stmt)


def feedback_for(conn: Connection, decision_ids: Sequence[str]) -> dict[str, list[FeedbackSignal]]:
    """Per decision, its feedback oldest first: the columns a learning event is built from (not
    `value`, whose JSON would be decoded for nothing on every event of a job)."""
    out: dict[str, list[FeedbackSignal]] = {d: [] for d in decision_ids}
    cols = (Feedback.decision_id, Feedback.type, Feedback.reward, Feedback.other_model)
    for start in range(0, len(decision_ids), _CHUNK):
        stmt = (
            select(*cols, Feedback.output_tokens)
            .where(Feedback.decision_id.in_(decision_ids[start : start + _CHUNK]))
            .order_by(Feedback.created_at, Feedback.id)
        )
        for signal in records(FeedbackSignal, conn.execute(stmt)):
            out[signal.decision_id].append(signal)
    return out


def mark_learned(conn: Connection, decision_ids: Sequence[str], version: int) -> None:
    for start in range(0, len(decision_ids), _CHUNK):
        chunk = decision_ids[start : start + _CHUNK]
        conn.execute(update(Decision).where(Decision.id.in_(chunk)).values(learned_version=version))


_CHUNK = 5000  # SQLite caps bound parameters per statement


# --- policy versions --------------------------------------------------------------------------

# Listings and the admin API never read a policy's weights or codebook: left unloaded, and
# reading them off such an object raises instead of querying.
_WITHOUT_WEIGHTS = (
    defer(PolicyVersion.model_bytes, raiseload=True),
    defer(PolicyVersion.regions, raiseload=True),
)


def active_policy(conn: Connection) -> PolicyVersion | None:
    """The active version, weights included."""
    return mapped(conn, select(PolicyVersion).where(PolicyVersion.active.is_(True)))


def active_policy_id(conn: Connection) -> int | None:
    return conn.execute(select(PolicyVersion.id).where(PolicyVersion.active.is_(True))).scalar()


def policy_presence(conn: Connection) -> tuple[int | None, bool]:
    """(the active version, whether any version is stored), read by ONE statement: two reads
    could straddle another process's commit and see versions but none active."""
    stmt = (
        select(PolicyVersion.id, PolicyVersion.active)
        .order_by(PolicyVersion.active.desc())
        .limit(1)
    )
    row = conn.execute(stmt).first()
    if row is None:
        return None, False
    return (int(row.id) if row.active else None), True


def get_policy(conn: Connection, version: int) -> PolicyVersion | None:
    stmt = select(PolicyVersion).options(*_WITHOUT_WEIGHTS).where(PolicyVersion.id == version)
    return mapped(conn, stmt)


def get_full_policy(conn: Connection, version: int) -> PolicyVersion | None:
    """A version with its weights and region codebook."""
    return mapped(conn, select(PolicyVersion).where(PolicyVersion.id == version))


def newest_policy(conn: Connection, source: str) -> PolicyVersion | None:
    stmt = (
        select(PolicyVersion)
        .options(*_WITHOUT_WEIGHTS)
        .where(PolicyVersion.source == source)
        .order_by(PolicyVersion.id.desc())
    )
    return mapped(conn, stmt)


def list_policies(conn: Connection, limit: int = 100) -> list[PolicyVersion]:
    stmt = (
        select(PolicyVersion)
        .options(*_WITHOUT_WEIGHTS)
        .order_by(PolicyVersion.id.desc())
        .limit(limit)
    )
    return mapped_all(conn, stmt)


def insert_policy(conn: Connection, *, activate: bool, **fields: Any) -> int:
    version = conn.execute(
        insert(PolicyVersion).values(**fields, active=False)
    ).inserted_primary_key
    assert version is not None
    if activate:
        activate_policy(conn, int(version[0]))
    return int(version[0])


def activate_policy(conn: Connection, version: int) -> None:
    # Deactivate first: the partial unique index allows one active row at any instant.
    conn.execute(update(PolicyVersion).where(PolicyVersion.active.is_(True)).values(active=False))
    conn.execute(
        update(PolicyVersion)
        .where(PolicyVersion.id == version)
        .values(active=True, activated_at=utcnow())
    )


# --- jobs -------------------------------------------------------------------------------------


def create_job(conn: Connection, kind: str, trigger: str) -> int:
    res = conn.execute(
        insert(Job).values(kind=kind, status=JobStatus.QUEUED, trigger=trigger, result={})
    )
    assert res.inserted_primary_key is not None
    return int(res.inserted_primary_key[0])


def start_job(conn: Connection, job_id: int) -> None:
    conn.execute(
        update(Job).where(Job.id == job_id).values(status=JobStatus.RUNNING, started_at=utcnow())
    )


def finish_job(
    conn: Connection,
    job_id: int,
    status: JobStatus,
    result: dict[str, Any],
    error: str | None = None,
) -> None:
    conn.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(status=status, finished_at=utcnow(), result=result, error=error)
    )


def get_job(conn: Connection, job_id: int) -> JobRecord | None:
    return first(JobRecord, conn.execute(select(Job.__table__).where(Job.id == job_id)))


def list_jobs(conn: Connection, limit: int = 50) -> list[JobRecord]:
    stmt = select(Job.__table__).order_by(Job.id.desc()).limit(limit)
    return records(JobRecord, conn.execute(stmt))


def bias_jobs(conn: Connection, scan: int) -> list[JobRecord]:
    """Successful retraining runs that estimated the feedback bias, newest first, among the
    newest `scan` successful ones (a run that had too few events succeeds without an estimate)."""
    stmt = (
        select(Job.__table__)
        .where(Job.kind == "retrain", Job.status == JobStatus.SUCCEEDED)
        .order_by(Job.id.desc())
        .limit(scan)
    )
    return [record(JobRecord, r) for r in conn.execute(stmt) if "bias" in (r.result or {})]


def latest_bias_job(conn: Connection) -> JobRecord | None:
    """The newest successful retraining run that estimated the feedback bias."""
    return next(iter(bias_jobs(conn, 200)), None)


def latest_bias(conn: Connection) -> dict[str, Any]:
    """Per model, the newest estimated feedback bias (gold − preference, with its interval)."""
    job = latest_bias_job(conn)
    return dict(job.result["bias"]) if job else {}


# --- change detection for other processes -----------------------------------------------------


def state_fingerprint(conn: Connection) -> tuple[int | None, Any]:
    """(active policy id, newest model change): when it moves, a serving process reloads."""
    pid = active_policy_id(conn)
    changed = conn.execute(select(func.max(LLMModel.updated_at))).scalar()
    return pid, changed


# --- audits -----------------------------------------------------------------------------------


def insert_audit(conn: Connection, decision_id: str) -> None:
    conn.execute(insert(Audit), {"decision_id": decision_id, "status": AuditStatus.PENDING})


def _claimable(now: datetime) -> Any:
    return or_(
        Audit.status == AuditStatus.PENDING,
        and_(Audit.status == AuditStatus.CLAIMED, Audit.claim_expires_at < now),
    )


def _reviewable(now: datetime, grader: str | None) -> Any:
    """Graded audits waiting for a second grade; never offered to their first grader."""
    open_review = or_(
        Audit.review_status == AuditStatus.PENDING,
        and_(Audit.review_status == AuditStatus.CLAIMED, Audit.review_claim_expires_at < now),
    )
    return open_review if grader is None else and_(open_review, Audit.grader_id != grader)


def list_pending_audits(conn: Connection, limit: int) -> list[QueuedAudit]:
    """Audits waiting for a first grade, then those waiting for a second one."""
    now = utcnow()
    firsts = select(Audit.__table__).where(_claimable(now)).order_by(Audit.id).limit(limit)
    out = [QueuedAudit(a, 1) for a in records(AuditRecord, conn.execute(firsts))]
    if len(out) < limit:
        seconds = (
            select(Audit.__table__)
            .where(_reviewable(now, None))
            .order_by(Audit.id)
            .limit(limit - len(out))
        )
        out += [QueuedAudit(a, 2) for a in records(AuditRecord, conn.execute(seconds))]
    return out


def claim_audits(conn: Connection, grader_id: str, limit: int, lease: timedelta) -> list[int]:
    """Claim up to `limit` audits for one grader; concurrent graders never get the same row.

    PostgreSQL: SELECT … FOR UPDATE SKIP LOCKED, so graders claim in parallel without waiting.
    SQLite: one UPDATE … WHERE id IN (SELECT …) statement, which SQLite runs atomically (a
    separate SELECT then UPDATE would let two graders read the same rows first).
    """
    now = utcnow()
    pick = select(Audit.id).where(_claimable(now)).order_by(Audit.id).limit(limit)
    claim = update(Audit).values(
        status=AuditStatus.CLAIMED, claimed_by=grader_id, claim_expires_at=now + lease
    )
    return _claim(conn, pick, claim)


def claim_reviews(conn: Connection, grader: str, limit: int, lease: timedelta) -> list[int]:
    """Claim up to `limit` audits for their second grade, as `claim_audits` does the first."""
    now = utcnow()
    pick = select(Audit.id).where(_reviewable(now, grader)).order_by(Audit.id).limit(limit)
    claim = update(Audit).values(
        review_status=AuditStatus.CLAIMED,
        review_claimed_by=grader,
        review_claim_expires_at=now + lease,
    )
    return _claim(conn, pick, claim)


def _claim(conn: Connection, pick: Any, claim: Any) -> list[int]:
    if conn.dialect.name == "postgresql":
        ids = [r[0] for r in conn.execute(pick.with_for_update(skip_locked=True))]
        if ids:
            conn.execute(claim.where(Audit.id.in_(ids)))
        return ids
    res = conn.execute(claim.where(Audit.id.in_(pick.scalar_subquery())).returning(Audit.id))
    return sorted(r[0] for r in res)


def get_audit(conn: Connection, decision_id: str) -> AuditRecord | None:
    stmt = select(Audit.__table__).where(Audit.decision_id == decision_id)
    return first(AuditRecord, conn.execute(stmt))


def audits_by_id(conn: Connection, ids: Sequence[int]) -> list[AuditRecord]:
    stmt = select(Audit.__table__).where(Audit.id.in_(ids)).order_by(Audit.id)
    return records(AuditRecord, conn.execute(stmt))


def grade_audit(
    conn: Connection,
    decision_id: str,
    score: float,
    grader_id: str,
    review: AuditStatus | None = None,
) -> bool:
    """The first grade: the audit's score. `review` is "pending" when a second grade is wanted.
    False when another grader's grade got there first."""
    res = conn.execute(
        update(Audit)
        .where(Audit.decision_id == decision_id, Audit.status != AuditStatus.GRADED)
        .values(
            status=AuditStatus.GRADED,
            score=score,
            grader_id=grader_id,
            graded_at=utcnow(),
            review_status=review,
        )
    )
    return bool(res.rowcount)


def finish_review(conn: Connection, decision_id: str) -> bool:
    """The second grade is in. False when another grader's got there first."""
    res = conn.execute(
        update(Audit)
        .where(
            Audit.decision_id == decision_id,
            Audit.review_status.in_((AuditStatus.PENDING, AuditStatus.CLAIMED)),
        )
        .values(review_status=AuditStatus.GRADED)
    )
    return bool(res.rowcount)


def insert_grade(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(insert(AuditGrade), row)


def get_grade(conn: Connection, decision_id: str, round_: int) -> GradeRecord | None:
    where = and_(AuditGrade.decision_id == decision_id, AuditGrade.round == round_)
    return first(GradeRecord, conn.execute(select(AuditGrade.__table__).where(where)))


def grade_pairs(
    conn: Connection, since: datetime | None, until: datetime | None
) -> list[tuple[float, float]]:
    """(first, second) scores of the audits graded twice whose decision is in the window."""
    second = AuditGrade.__table__.alias("second")
    stmt = (
        select(AuditGrade.score, second.c.score)
        .join(second, and_(second.c.decision_id == AuditGrade.decision_id, second.c.round == 2))
        .join(Decision, Decision.id == AuditGrade.decision_id)
        .where(AuditGrade.round == 1)
    )
    stmt = _window(stmt, since, until)
    return [(float(a), float(b)) for a, b in conn.execute(stmt)]


def _window(stmt: Any, since: datetime | None, until: datetime | None) -> Any:
    if since is not None:
        stmt = stmt.where(Decision.created_at >= since)
    if until is not None:
        stmt = stmt.where(Decision.created_at < until)
    return stmt


# --- the text of audited decisions ------------------------------------------------------------


def put_audit_answer(conn: Connection, decision_id: str, answer: str, prompt: str | None) -> str:
    """Keep an answer for grading: "created", or "replaced" when one was kept already. `prompt`
    fills a missing prompt (a decision whose prompt is stored with it)."""
    found = get_audit_text(conn, decision_id)
    if found is None:
        values = {"decision_id": decision_id, "prompt": prompt, "answer": answer}
        conn.execute(insert(AuditText), values)
        return "created"
    stmt = update(AuditText).where(AuditText.decision_id == decision_id)
    conn.execute(stmt.values(answer=answer, prompt=found.prompt or prompt))
    return "created" if found.answer is None else "replaced"


def get_audit_text(conn: Connection, decision_id: str) -> AuditTextRecord | None:
    stmt = select(AuditText.__table__).where(AuditText.decision_id == decision_id)
    return first(AuditTextRecord, conn.execute(stmt))


def delete_audit_text(conn: Connection, decision_id: str) -> None:
    conn.execute(delete(AuditText).where(AuditText.decision_id == decision_id))


def purge_audit_texts(conn: Connection, before: datetime) -> int:
    """Delete texts kept since before `before`, graded or not."""
    res = conn.execute(delete(AuditText).where(AuditText.created_at < before))
    return int(res.rowcount or 0)


def audit_counts(conn: Connection) -> dict[str, int]:
    stmt = select(Audit.status, func.count()).group_by(Audit.status)
    return {status: int(n) for status, n in conn.execute(stmt)}


def insert_offline_gold(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    if not rows:
        return 0
    res = conn.execute(_insert_ignore(conn, OfflineGold).returning(OfflineGold.id), list(rows))
    return len(res.fetchall())


def offline_gold(conn: Connection) -> list[OfflineGoldRecord]:
    return records(OfflineGoldRecord, conn.execute(select(OfflineGold.__table__)))


# --- the learning log ------------------------------------------------------------------------


# What a learning event is built from: not the prompt, its hash or the exploration name.
_EVENT_COLUMNS = [
    Decision.id,
    Decision.created_at,
    Decision.embedding,
    Decision.lam,
    Decision.candidates,
    Decision.chosen_model,
    Decision.probability,
    Decision.audit_probability,
    Decision.policy_version,
]


def stream_event_rows(
    conn: Connection,
    *,
    chunk: int,
    since: datetime | None = None,
    until: datetime | None = None,
    unlearned_only: bool = False,
    with_signal_only: bool = True,
    graded_only: bool = False,
    max_events: int | None = None,
) -> Iterator[list[EventRecord]]:
    """The learning log in chunks of `chunk` rows, oldest first: decisions with their gold grade
    and, when proxied, who answered and the answer's length. ONE query read through a cursor
    (server-side on PostgreSQL, stepped on SQLite), so a job holds one chunk whatever the
    window's size and the database walks the index once (keyset pages re-seeked it per page).
    `with_signal_only`: only decisions that carry feedback or a gold grade."""
    has_feedback = select(Feedback.id).where(Feedback.decision_id == Decision.id).exists()
    stmt = _decision_log(
        (
            *_EVENT_COLUMNS,
            Audit.score.label("gold"),
            ProxyAnswer.served_model.label("served_model"),
            ProxyAnswer.decision_id.label("proxied"),
            ProxyAnswer.output_tokens.label("proxy_output_tokens"),
        ),
        graded_only=graded_only,
        limit=max_events,
    )
    if since is not None:
        stmt = stmt.where(Decision.created_at >= since)
    if until is not None:
        stmt = stmt.where(Decision.created_at <= until)
    if unlearned_only:
        stmt = stmt.where(Decision.learned_version.is_(None))
    if with_signal_only:
        stmt = stmt.where(or_(has_feedback, Audit.score.is_not(None)))
    if graded_only:
        stmt = stmt.where(Audit.score.is_not(None))
    result = conn.execution_options(yield_per=chunk).execute(stmt)
    try:
        for part in result.partitions():
            yield records(EventRecord, part)
    finally:
        result.close()  # a consumer that stops early must not leave the cursor open


def _decision_log(
    columns: Sequence[Any],
    *,
    graded_only: bool = False,
    limit: int | None = None,
    after: tuple[datetime, str] | None = None,
) -> Any:
    """Decisions with their first gold grade and proxy answer joined, oldest first; `after`
    keyset-pages on (created_at, id). `graded_only`: an inner join lets the database start from
    the few audits instead of scanning every decision of the window (2 % at the default rate)."""
    stmt = (
        select(*columns)
        .join(
            Audit,
            and_(Audit.decision_id == Decision.id, Audit.status == AuditStatus.GRADED),
            isouter=not graded_only,
        )
        .outerjoin(ProxyAnswer, ProxyAnswer.decision_id == Decision.id)
        .order_by(Decision.created_at, Decision.id)
        .limit(limit)
    )
    if after is not None:
        at, last = after
        stmt = stmt.where(
            or_(Decision.created_at > at, and_(Decision.created_at == at, Decision.id > last))
        )
    return stmt


def count_events(conn: Connection, since: datetime | None = None) -> int:
    """Decisions since `since` that carry feedback or a gold grade."""
    has_feedback = select(Feedback.id).where(Feedback.decision_id == Decision.id).exists()
    graded = (
        select(Audit.id)
        .where(Audit.decision_id == Decision.id, Audit.status == AuditStatus.GRADED)
        .exists()
    )
    stmt = select(func.count()).select_from(Decision).where(or_(has_feedback, graded))
    if since is not None:
        stmt = stmt.where(Decision.created_at >= since)
    return int(conn.execute(stmt).scalar() or 0)


# --- retention --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpiredDecision:
    """What the retention purge rolls up about a decision before deleting it."""

    id: str
    created_at: datetime
    model: str  # the chosen model
    cost_usd: float  # its expected cost when chosen
    rewards: tuple[float, ...]  # its feedback items' rewards
    gold: float | None  # its graded audit's score


def expired_decisions(conn: Connection, before: datetime, limit: int) -> list[ExpiredDecision]:
    """Up to `limit` of the oldest decisions made before `before`, with their feedback and grade."""
    stmt = (
        select(
            Decision.id,
            Decision.created_at,
            Decision.chosen_model,
            Decision.candidates,
            Audit.score,
        )
        .outerjoin(
            Audit, and_(Audit.decision_id == Decision.id, Audit.status == AuditStatus.GRADED)
        )
        .where(Decision.created_at < before)
        .order_by(Decision.created_at, Decision.id)
        .limit(limit)
    )
    rows = conn.execute(stmt).all()
    feedback = feedback_for(conn, [r.id for r in rows])
    return [
        ExpiredDecision(
            id=r.id,
            created_at=r.created_at,
            model=r.chosen_model,
            cost_usd=next(
                (float(c["cost_usd"]) for c in r.candidates if c["model"] == r.chosen_model), 0.0
            ),
            rewards=tuple(float(f.reward) for f in feedback[r.id]),
            gold=r.score,
        )
        for r in rows
    ]


def delete_decisions(conn: Connection, decision_ids: Sequence[str]) -> int:
    """Delete decisions and everything that hangs off them. Children are deleted explicitly,
    not left to ON DELETE CASCADE: SQLite enforces it only on connections with foreign keys on."""
    for start in range(0, len(decision_ids), _CHUNK):
        chunk = decision_ids[start : start + _CHUNK]
        for child in (Feedback, AuditGrade, AuditText, Audit, ProxyAnswer, ProxyRequest):
            conn.execute(delete(child).where(child.decision_id.in_(chunk)))
        conn.execute(delete(Decision).where(Decision.id.in_(chunk)))
    return len(decision_ids)


def add_daily_aggregates(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Add counts and sums to the (day, model) rows, creating those that do not exist yet."""
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(DailyAggregate)
    added = ("decisions", "feedback", "reward_sum", "cost_usd", "audits", "gold_sum")
    upsert = stmt.on_conflict_do_update(
        index_elements=[DailyAggregate.day, DailyAggregate.model],
        set_={c: getattr(DailyAggregate, c) + getattr(stmt.excluded, c) for c in added},
    )
    conn.execute(upsert, list(rows))


def daily_aggregates(conn: Connection, since: date | None = None) -> list[DailyAggregateRecord]:
    """The rolled-up history, oldest day first (for the console and metrics)."""
    stmt = select(DailyAggregate.__table__).order_by(DailyAggregate.day, DailyAggregate.model)
    if since is not None:
        stmt = stmt.where(DailyAggregate.day >= since)
    return records(DailyAggregateRecord, conn.execute(stmt))


def expired_prompt_ids(conn: Connection, before: datetime, limit: int) -> list[str]:
    stmt = (
        select(Decision.id)
        .where(Decision.created_at < before, Decision.prompt.is_not(None))
        .limit(limit)
    )
    return [r[0] for r in conn.execute(stmt)]


def forget_prompts(conn: Connection, decision_ids: Sequence[str]) -> int:
    """Drop the stored prompt text; the hash stays (repeat detection, audits by hash)."""
    conn.execute(update(Decision).where(Decision.id.in_(decision_ids)).values(prompt=None))
    return len(decision_ids)


def report_rows(
    conn: Connection,
    *,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    after: tuple[datetime, str] | None = None,
) -> list[ReportRecord]:
    """One page of the decisions in [since, until) for the audited report, oldest first: what
    was chosen and who answered, the logged candidates (cost, predicted quality, probability),
    the audit draw, the first gold grade and the mean preference reward (None without)."""
    preference = (
        select(func.avg(Feedback.reward))
        .where(Feedback.decision_id == Decision.id)
        .scalar_subquery()
    )
    columns = (
        Decision.id,
        Decision.created_at,
        Decision.chosen_model,
        Decision.candidates,
        Decision.input_tokens,
        Decision.audit_probability,
        Decision.audit_selected,
        Audit.score.label("gold"),
        ProxyAnswer.decision_id.label("proxied"),
        ProxyAnswer.served_model.label("served_model"),
        preference.label("preference"),
    )
    stmt = _decision_log(columns, limit=limit, after=after)
    return records(ReportRecord, conn.execute(_window(stmt, since, until)))


def window_input_tokens(conn: Connection, since: datetime, until: datetime) -> tuple[int, int]:
    """(decisions, their input tokens) in [since, until)."""
    stmt = _window(
        select(func.count(), func.coalesce(func.sum(Decision.input_tokens), 0)).select_from(
            Decision
        ),
        since,
        until,
    )
    count, tokens = conn.execute(stmt).one()
    return int(count), int(tokens)
