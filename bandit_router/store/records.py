"""What the store's readers return, where it is not a mapped class of store/models.py: one frozen
dataclass per row shape, typed as the columns are, statuses as their enums. Field names are the
column names (or the labels a query gives them), so `record` builds any of them from a row by
name; `mapped`/`mapped_all` read the mapped classes themselves."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal, TypeVar, get_args, get_type_hints

from sqlalchemy import Connection, Result, Row, Select, inspect
from sqlalchemy.orm import Session

from bandit_router.store.models import AuditStatus, Base, JobStatus

R = TypeVar("R")
M = TypeVar("M", bound=Base)

# A decision, a feedback item, a proxy answer and a policy version are read as their mapped classes
# (store/models.py: `mapped`, `mapped_all`): those already type every column, and the API's
# response models list the same fields once more for the public schema.

# --- the model pool ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelRecord:
    name: str
    input_price: float  # USD per 1M input tokens
    output_price: float  # USD per 1M output tokens
    expected_output_tokens: int
    base_url: str | None
    api_key_env: str | None
    enabled: bool
    created_at: datetime
    updated_at: datetime


# --- decisions and feedback -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedbackSignal:
    """What a learning event reads of a feedback item (its `value` JSON is not decoded)."""

    decision_id: str
    type: str
    reward: float
    other_model: str | None
    output_tokens: int | None


# --- jobs -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: int
    kind: str
    status: JobStatus
    trigger: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any]
    error: str | None


# --- audits -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    decision_id: str
    created_at: datetime
    status: AuditStatus
    claimed_by: str | None
    claim_expires_at: datetime | None
    score: float | None  # the first grade
    grader_id: str | None
    graded_at: datetime | None
    review_status: AuditStatus | None  # None: no second grade wanted
    review_claimed_by: str | None
    review_claim_expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class QueuedAudit:
    """An audit in a grader's queue, and which grade it waits for."""

    audit: AuditRecord
    round: Literal[1, 2]  # 1: its first grade; 2: a second opinion


@dataclass(frozen=True, slots=True)
class GradeRecord:
    id: int
    decision_id: str
    grader: str  # the API key's prefix, else grader_id
    grader_name: str
    round: int
    score: float
    rubric: str | None
    comment: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AuditTextRecord:
    decision_id: str
    prompt: str | None
    answer: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OfflineGoldRecord:
    id: int
    created_at: datetime
    prompt_hash: str
    embedding: bytes
    model: str
    score: float
    source: str


# --- the learning log and the report ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A decision as a learning event is built from it, with its gold grade and proxy answer."""

    id: str
    created_at: datetime
    embedding: bytes
    lam: float
    candidates: list[dict[str, Any]]
    chosen_model: str
    probability: float
    audit_probability: float
    policy_version: int
    gold: float | None  # the first grade of its graded audit
    served_model: str | None  # who answered, when proxied (None: no upstream did)
    proxied: str | None  # the proxy answer's decision id: None when not proxied
    proxy_output_tokens: int | None


@dataclass(frozen=True, slots=True)
class ReportRecord:
    """A decision as the audited report reads it."""

    id: str
    created_at: datetime
    chosen_model: str
    candidates: list[dict[str, Any]]
    input_tokens: int
    audit_probability: float
    audit_selected: bool
    gold: float | None
    proxied: str | None
    served_model: str | None
    preference: float | None  # the mean reward of its feedback


@dataclass(frozen=True, slots=True)
class DailyAggregateRecord:
    day: date
    model: str
    decisions: int
    feedback: int
    reward_sum: float
    cost_usd: float
    audits: int
    gold_sum: float


# --- the console's time series ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrafficBucket:
    bucket: int  # the bucket's start, epoch seconds
    model: str
    n: int


@dataclass(frozen=True, slots=True)
class MeanBucket:
    bucket: int  # the bucket's start, epoch seconds
    mean: float | None
    n: int


# --- API keys and the proxy -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key as it may be shown: never its hash."""

    id: int
    prefix: str
    role: str
    name: str | None
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class HashedKeyRecord(KeyRecord):
    """A key with the hash it is checked by: for the auth cache only."""

    key_hash: str


@dataclass(frozen=True, slots=True)
class ProxyRequestRecord:
    decision_id: str
    created_at: datetime
    caller: str
    idempotency_key: str | None
    body_hash: str


# --- building them ----------------------------------------------------------------------------


def mapped_all(conn: Connection, stmt: Select[M]) -> list[M]:
    """The mapped objects `stmt` selects, detached so they outlive the session. The session joins
    a transaction `conn` is in and leaves it open."""
    with Session(conn) as session:
        found = list(session.scalars(stmt))
        session.expunge_all()
    return found


def mapped(conn: Connection, stmt: Select[M]) -> M | None:
    found = mapped_all(conn, stmt.limit(1))
    return found[0] if found else None


def columns(obj: Base) -> dict[str, Any]:
    """A mapped object's loaded column values by attribute name (a policy's weights are not)."""
    state = inspect(obj)
    return {
        a.key: getattr(obj, a.key) for a in state.mapper.column_attrs if a.key not in state.unloaded
    }


def record(cls: type[R], row: Row) -> R:
    """`cls` from a row whose column labels are its field names."""
    enums = _enum_fields(cls)
    if not enums:
        return cls(**row._mapping)
    values = dict(row._mapping)
    for name, enum in enums.items():
        if values[name] is not None:
            values[name] = enum(values[name])
    return cls(**values)


def records(cls: type[R], rows: Iterable[Row]) -> list[R]:
    out: list[R] = []
    positional: bool | None = None
    for row in rows:
        if positional is None:  # the columns are the fields, in order: checked once per batch
            positional = not _enum_fields(cls) and row._fields == _field_names(cls)
        # The jobs build one per logged event: positionally 1.3 µs, by name 5.9 µs.
        out.append(cls(*row) if positional else record(cls, row))
    return out


def first(cls: type[R], result: Result) -> R | None:
    row = result.first()
    return None if row is None else record(cls, row)


_ENUM_FIELDS: dict[type, dict[str, type[StrEnum]]] = {}
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    if cls not in _FIELD_NAMES:
        _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return _FIELD_NAMES[cls]


def _enum_fields(cls: type) -> dict[str, type[StrEnum]]:
    """The fields typed with an enum (alone or `| None`): the database holds their plain text.
    Worked out once per class (type hints are slow to resolve)."""
    if cls not in _ENUM_FIELDS:
        _ENUM_FIELDS[cls] = {
            name: t
            for name, hint in get_type_hints(cls).items()
            for t in (hint, *get_args(hint))
            if isinstance(t, type) and issubclass(t, StrEnum)
        }
    return _ENUM_FIELDS[cls]
