"""The proxy's records: which upstream answered each proxied decision, and each proxied
request's identity (for its retries)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from bandit_router.store.models import ProxyAnswer, ProxyRequest
from bandit_router.store.records import ProxyRequestRecord, first, mapped


def record_answer(conn: Connection, row: dict[str, Any]) -> None:
    """Who answered. A retried request answers its decision again: the newest answer wins and
    the attempts accumulate."""
    before = get_answer(conn, row["decision_id"])
    if before is None:
        conn.execute(insert(ProxyAnswer).values(**row))
        return
    attempts = [*before.attempts, *row["attempts"]]
    stmt = update(ProxyAnswer).where(ProxyAnswer.decision_id == row["decision_id"])
    conn.execute(stmt.values(**{**row, "attempts": attempts}))


def record_request(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(insert(ProxyRequest).values(**row))


def request_by_key(conn: Connection, caller: str, key: str) -> ProxyRequestRecord | None:
    stmt = select(ProxyRequest.__table__).where(
        ProxyRequest.caller == caller, ProxyRequest.idempotency_key == key
    )
    return first(ProxyRequestRecord, conn.execute(stmt))


def request_by_body(
    conn: Connection, caller: str, body_hash: str, since: datetime
) -> ProxyRequestRecord | None:
    """The newest request without a key from this caller with this body since `since`."""
    stmt = (
        select(ProxyRequest.__table__)
        .where(
            ProxyRequest.caller == caller,
            ProxyRequest.body_hash == body_hash,
            ProxyRequest.created_at >= since,
            ProxyRequest.idempotency_key.is_(None),
        )
        .order_by(ProxyRequest.created_at.desc())
        .limit(1)
    )
    return first(ProxyRequestRecord, conn.execute(stmt))


def get_answer(conn: Connection, decision_id: str) -> ProxyAnswer | None:
    return mapped(conn, select(ProxyAnswer).where(ProxyAnswer.decision_id == decision_id))


def set_output_tokens(conn: Connection, decision_id: str, tokens: int) -> None:
    """A streamed answer's length, known once the stream has ended."""
    stmt = update(ProxyAnswer).where(ProxyAnswer.decision_id == decision_id)
    conn.execute(stmt.values(output_tokens=tokens))


_CHUNK = 5000  # SQLite caps the bound parameters of one statement


def _answer_column(conn: Connection, column: Any, decision_ids: list[str]) -> dict[str, Any]:
    """decision id -> `column` of its proxy answer, in bounded IN lists (a retraining window can
    hold far more decisions than SQLite takes parameters)."""
    out: dict[str, Any] = {}
    for start in range(0, len(decision_ids), _CHUNK):
        chunk = decision_ids[start : start + _CHUNK]
        stmt = select(ProxyAnswer.decision_id, column).where(ProxyAnswer.decision_id.in_(chunk))
        out.update((d, value) for d, value in conn.execute(stmt).tuples())
    return out


def output_tokens(conn: Connection, decision_ids: list[str]) -> dict[str, int]:
    """The answer length of each proxied decision whose length is known."""
    found = _answer_column(conn, ProxyAnswer.output_tokens, decision_ids)
    return {d: int(t) for d, t in found.items() if t is not None}


def served_by(conn: Connection, decision_ids: list[str]) -> dict[str, str | None]:
    """For the learning jobs: who answered each proxied decision (None: no upstream did).
    Decisions absent from the result were not proxied: their chosen model is what answered."""
    return _answer_column(conn, ProxyAnswer.served_model, decision_ids)
