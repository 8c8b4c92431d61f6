"""Gold audits: the rules, for the HTTP handlers, the proxy, the jobs and the web console alike.

- What is kept: the prompt and the answer of a decision drawn for an audit (and of any decision
  when STORE_PROMPTS=true), in `audit_texts`, until it is graded or AUDIT_TEXT_DAYS have passed.
- Who grades: a claim belongs to its grader; with authentication on, a grader is its API key.
- Double grading: AUDIT_DOUBLE_GRADE_RATE of graded audits go to a second, different grader;
  the first grade stays the audit's score (what the bias estimators and learning read).
- The audited report (`audit/report.py`) over any window, cached for REPORT_CACHE_SECONDS.

Errors are raised as `NotFound`, `Conflict` or `Invalid`, each with a one-line message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from bandit_router.audit.report import Report, ReportRow, build_report
from bandit_router.audit.sampling import selected_for_review
from bandit_router.config import Settings
from bandit_router.policy.pool import ModelSpec
from bandit_router.services.errors import Conflict, Invalid, NotFound
from bandit_router.store import repository as repo
from bandit_router.store.models import AuditStatus, utcnow
from bandit_router.store.records import AuditRecord, QueuedAudit, ReportRecord

PAGE = 2000  # decisions read per query while building a report
OPEN_REVIEW = (AuditStatus.PENDING, AuditStatus.CLAIMED)


@dataclass(frozen=True)
class Grader:
    """Who grades. `identity` owns claims and grades: the API key's prefix when the request
    carried a key (a grader cannot pass for another by naming them), else the given name."""

    identity: str
    name: str

    @classmethod
    def of(cls, name: str, key_prefix: str | None) -> Grader:
        return cls(key_prefix or name, name)


@dataclass(frozen=True)
class Grade:
    decision_id: str
    score: float
    rubric: str | None = None
    comment: str | None = None


@dataclass(frozen=True)
class GradeOutcome:
    decision_id: str
    status: Literal["graded", "duplicate"]
    score: float
    round: Literal[1, 2]  # 1: the audit's score; 2: a second grader's


# --- the text a grader reads --------------------------------------------------------------------


def keeps_text(audit_selected: bool, settings: Settings) -> bool:
    """Text is kept for audited decisions only, unless the operator stores prompts anyway."""
    return audit_selected or settings.store_prompts


def bounded(text: str, settings: Settings) -> str:
    """An answer is kept up to MAX_BODY_BYTES characters: what a client could attach."""
    return text[: settings.max_body_bytes]


def store_answer(conn: Connection, decision_id: str, answer: str, settings: Settings) -> None:
    """The proxy's answer to a decision it knows is kept (`keeps_text`), unless already graded:
    graded text is gone and must not come back."""
    audit = repo.get_audit(conn, decision_id)
    if audit is not None and fully_graded(audit):
        return
    prompt = None if audit is not None else _stored_prompt(conn, decision_id)
    repo.put_audit_answer(conn, decision_id, bounded(answer, settings), prompt)


def attach_answer(engine: Engine, settings: Settings, decision_id: str, answer: str) -> str:
    """A /v1/route client's answer to its decision: "created" or "replaced"."""
    with engine.begin() as conn:
        decision = repo.get_decision(conn, decision_id)
        if decision is None:
            raise NotFound(f"decision {decision_id[:64]} does not exist")
        if not keeps_text(decision.audit_selected, settings):
            raise Conflict(
                f"decision {decision_id} was not drawn for an audit and prompts are not stored "
                "(STORE_PROMPTS=false): its answer is not kept"
            )
        audit = repo.get_audit(conn, decision_id)
        if audit is not None and fully_graded(audit):
            raise Conflict(f"decision {decision_id} is graded: its text is no longer kept")
        return repo.put_audit_answer(conn, decision_id, bounded(answer, settings), decision.prompt)


def _stored_prompt(conn: Connection, decision_id: str) -> str | None:
    decision = repo.get_decision(conn, decision_id)
    return decision.prompt if decision else None


def fully_graded(audit: AuditRecord) -> bool:
    return audit.status == AuditStatus.GRADED and audit.review_status not in OPEN_REVIEW


def purge_texts(engine: Engine, settings: Settings, now: datetime | None = None) -> int:
    """Delete text kept longer than AUDIT_TEXT_DAYS, graded or not."""
    before = (now or utcnow()) - timedelta(days=settings.audit_text_days)
    with engine.begin() as conn:
        return repo.purge_audit_texts(conn, before)


# --- the queue ----------------------------------------------------------------------------------


def pending(engine: Engine, limit: int) -> list[dict[str, Any]]:
    """Audits waiting for a first grade, then for a second (each item says its `round`)."""
    with engine.connect() as conn:
        return [item(conn, a) for a in repo.list_pending_audits(conn, limit)]


def claim(engine: Engine, settings: Settings, grader: Grader, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` items for this grader, first grades first; concurrent graders never get
    the same item, and a second grade never goes to the first grader. Claims expire after
    AUDIT_CLAIM_SECONDS, so abandoned work returns to the queue."""
    lease = timedelta(seconds=settings.audit_claim_seconds)
    with engine.begin() as conn:
        firsts = repo.claim_audits(conn, grader.identity, limit, lease)
        seconds = repo.claim_reviews(conn, grader.identity, limit - len(firsts), lease)
        rows = repo.audits_by_id(conn, [*firsts, *seconds]) if firsts or seconds else []
        return [item(conn, QueuedAudit(a, 2 if a.id in seconds else 1)) for a in rows]


def item(conn: Connection, queued: QueuedAudit) -> dict[str, Any]:
    """What a grader needs: the model, the prompt and the answer when kept. A second grader
    does not see the first grade."""
    audit = queued.audit
    decision = repo.get_decision(conn, audit.decision_id)
    text = repo.get_audit_text(conn, audit.decision_id)
    out = {
        **asdict(audit),
        "round": queued.round,
        "model": decision.chosen_model if decision else None,
        "prompt": (text.prompt if text else None) or (decision.prompt if decision else None),
        "answer": text.answer if text else None,
        "prompt_hash": decision.prompt_hash if decision else None,
        "decision_created_at": decision.created_at if decision else None,
    }
    if queued.round == 2:
        out.update(score=None, grader_id=None, graded_at=None)
        out.update(claimed_by=audit.review_claimed_by)
        out.update(claim_expires_at=audit.review_claim_expires_at)
    return out


# --- grading ------------------------------------------------------------------------------------


def grade(engine: Engine, settings: Settings, grader: Grader, given: Grade) -> GradeOutcome:
    """Store a grade: the first one is the audit's score, a second one (when wanted) is kept
    beside it. A repeat of the same grade is a "duplicate"; anything else that clashes is a
    Conflict. Two graders racing for one item: the loser gets the Conflict."""
    for _ in range(2):
        try:
            with engine.begin() as conn:
                return _grade(conn, settings, grader, given)
        except IntegrityError:
            continue  # another grade of the same round committed first: look again
    raise Conflict(f"decision {given.decision_id} was graded by another grader meanwhile")


def _grade(conn: Connection, settings: Settings, grader: Grader, given: Grade) -> GradeOutcome:
    audit = repo.get_audit(conn, given.decision_id)
    if audit is None:
        if not repo.decision_exists(conn, given.decision_id):
            raise NotFound(f"decision {given.decision_id} does not exist")
        raise Conflict(
            f"decision {given.decision_id} was not selected for a gold audit; its audit "
            "probability must be known for unbiased estimates (import offline gold instead)"
        )
    if audit.status != AuditStatus.GRADED:
        return _first_grade(conn, settings, grader, given, audit)
    if audit.grader_id == grader.identity:
        return _repeat(given, audit.score, 1)
    return _second_grade(conn, grader, given, audit)


def _first_grade(
    conn: Connection, settings: Settings, grader: Grader, given: Grade, audit: AuditRecord
) -> GradeOutcome:
    _check_claim(audit.claimed_by, audit.claim_expires_at, grader, given.decision_id)
    wanted = selected_for_review(given.decision_id, settings.audit_double_grade_rate)
    review = AuditStatus.PENDING if wanted else None
    if not repo.grade_audit(conn, given.decision_id, given.score, grader.identity, review):
        raise Conflict(f"decision {given.decision_id} was graded by another grader meanwhile")
    repo.insert_grade(conn, _grade_row(grader, given, 1))
    if review is None:
        repo.delete_audit_text(conn, given.decision_id)  # graded: the text is not needed
    return GradeOutcome(given.decision_id, "graded", given.score, 1)


def _second_grade(
    conn: Connection, grader: Grader, given: Grade, audit: AuditRecord
) -> GradeOutcome:
    if audit.review_status == AuditStatus.GRADED:
        second = repo.get_grade(conn, given.decision_id, 2)
        if second is not None and second.grader == grader.identity:
            return _repeat(given, second.score, 2)
    if audit.review_status not in OPEN_REVIEW:
        raise Conflict(f"decision {given.decision_id} is already graded by another grader")
    _check_claim(audit.review_claimed_by, audit.review_claim_expires_at, grader, given.decision_id)
    if not repo.finish_review(conn, given.decision_id):
        raise Conflict(f"decision {given.decision_id} was graded by another grader meanwhile")
    repo.insert_grade(conn, _grade_row(grader, given, 2))
    repo.delete_audit_text(conn, given.decision_id)
    return GradeOutcome(given.decision_id, "graded", given.score, 2)


def _check_claim(
    claimed_by: str | None, expires: datetime | None, grader: Grader, decision_id: str
) -> None:
    """A live claim belongs to its grader; an expired one is back in the queue."""
    if claimed_by is None or claimed_by == grader.identity or expires is None:
        return
    if _aware(expires) > utcnow():
        raise Conflict(f"decision {decision_id} is claimed by another grader until {expires}")


def _repeat(given: Grade, stored: float | None, round_: Literal[1, 2]) -> GradeOutcome:
    if stored == given.score:
        return GradeOutcome(given.decision_id, "duplicate", given.score, round_)
    raise Conflict(f"decision {given.decision_id} is already graded")


def _grade_row(grader: Grader, given: Grade, round_: int) -> dict[str, Any]:
    return {
        "decision_id": given.decision_id,
        "grader": grader.identity,
        "grader_name": grader.name,
        "round": round_,
        "score": given.score,
        "rubric": given.rubric,
        "comment": given.comment,
        "created_at": utcnow(),
    }


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# --- the audited report -------------------------------------------------------------------------


@dataclass
class _Cached:
    at: float
    report: Report


CACHED_REPORTS = 32  # distinct windows kept at once: any window may be asked for
_cache: dict[tuple[Any, ...], _Cached] = {}
_latest: dict[str, Report] = {}  # database URL -> the newest default-window report (gauges)
_cache_lock = threading.Lock()


def report(
    engine: Engine,
    settings: Settings,
    since: datetime | None = None,
    until: datetime | None = None,
    reference: str | None = None,
) -> Report:
    """The audited report over [since, until) (default: the last REPORT_WINDOW_DAYS), against
    `reference` (default: the priciest enabled model on the window's queries). Reused for
    REPORT_CACHE_SECONDS; never computed on the routing path."""
    key = (settings.database_url, since, until, reference)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and time.monotonic() - hit.at < settings.report_cache_seconds:
            return hit.report
    built = compute_report(engine, settings, since, until, reference)
    with _cache_lock:
        _remember(key, built)
        if since is None and until is None and reference is None:
            _latest[settings.database_url] = built
    return built


def _remember(key: tuple[Any, ...], built: Report) -> None:
    """Cache a report, dropping the oldest beyond CACHED_REPORTS (the caller holds the lock)."""
    _cache[key] = _Cached(time.monotonic(), built)
    for stale in sorted(_cache, key=lambda k: _cache[k].at)[: max(0, len(_cache) - CACHED_REPORTS)]:
        del _cache[stale]


def latest_report(settings: Settings) -> Report | None:
    """The newest default-window report this process computed (for /metrics; no query)."""
    with _cache_lock:
        return _latest.get(settings.database_url)


def compute_report(
    engine: Engine,
    settings: Settings,
    since: datetime | None,
    until: datetime | None,
    reference: str | None,
) -> Report:
    now = utcnow()
    until = _aware(until) if until is not None else now
    # An empty or reversed window is an empty report, not an error.
    since = _aware(since) if since is not None else _days_before(until, settings.report_window_days)
    with engine.connect() as conn:
        pool = {r.name: ModelSpec.from_row(r) for r in repo.list_models(conn)}
        if reference is not None and reference not in pool:
            raise Invalid(f"reference model {reference[:200]} is not in the pool")
        ref = reference or priciest(conn, pool, since, until)
        pairs = repo.grade_pairs(conn, since, until)
        # The rows are streamed page by page into the report, so it is built while `conn` is open.
        rows = _report_rows(conn, pool, ref, since, until)
        return build_report(
            rows, reference=ref, since=since, until=until, pairs=pairs, computed_at=now
        )


def _days_before(moment: datetime, days: float) -> datetime:
    try:
        return moment - timedelta(days=days)
    except OverflowError:  # `until` in the first days of year 1
        return datetime.min.replace(tzinfo=UTC)


def priciest(
    conn: Connection, pool: dict[str, ModelSpec], since: datetime, until: datetime
) -> str | None:
    """The enabled model whose expected cost over the window's queries is highest."""
    count, tokens = repo.window_input_tokens(conn, since, until)
    enabled = [m for m in pool.values() if m.enabled]
    if not enabled:
        return None
    return max(
        enabled,
        key=lambda m: tokens * m.input_price + count * m.expected_output_tokens * m.output_price,
    ).name


def _report_rows(
    conn: Connection, pool: dict[str, ModelSpec], reference: str | None, since: datetime,
    until: datetime,
) -> Iterator[ReportRow]:  # fmt: skip
    """The window's rows, one page in memory at a time (a month of decisions does not fit)."""
    after: tuple[datetime, str] | None = None
    while True:
        page = repo.report_rows(conn, since=since, until=until, limit=PAGE, after=after)
        yield from (r for raw in page if (r := report_row(raw, pool, reference)) is not None)
        if len(page) < PAGE:
            return
        after = (page[-1].created_at, page[-1].id)


def report_row(
    raw: ReportRecord, pool: dict[str, ModelSpec], reference: str | None
) -> ReportRow | None:
    """One decision as the report reads it; None when the proxy got no answer for it."""
    if raw.proxied is not None and raw.served_model is None:
        return None
    model = raw.served_model or raw.chosen_model
    cands = {c["model"]: c for c in raw.candidates}
    ref = cands.get(reference) if reference else None
    return ReportRow(
        model=model,
        cost=_cost(cands.get(model), pool.get(model), raw.input_tokens),
        reference_cost=_cost(ref, pool.get(reference or ""), raw.input_tokens),
        reference_quality=float(ref["quality"]) if ref and "quality" in ref else None,
        reference_probability=float(ref["probability"]) if ref else 0.0,
        audit_probability=float(raw.audit_probability),
        selected=bool(raw.audit_selected),
        gold=raw.gold,
        preference=raw.preference,
    )


def _cost(candidate: dict[str, Any] | None, spec: ModelSpec | None, input_tokens: int) -> float:
    """The logged expected cost (the price snapshot the decision saw), else today's price."""
    if candidate is not None and "cost_usd" in candidate:
        return float(candidate["cost_usd"])
    return spec.expected_cost(input_tokens) if spec is not None else 0.0


# --- upkeep -------------------------------------------------------------------------------------


def run_upkeep(engine: Engine, settings: Settings) -> dict[str, Any]:
    """The `audits` job: delete expired text, and refresh the default report (its Prometheus
    gauges read it at the next scrape)."""
    purged = purge_texts(engine, settings)
    built = report(engine, settings)
    return {
        "texts_purged": purged,
        "report_decisions": built.decisions,
        "report_reference": built.reference,
    }
