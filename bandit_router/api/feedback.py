"""POST /v1/feedback."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response
from sqlalchemy import Connection

from bandit_router import telemetry as metrics
from bandit_router.api.deps import get_runtime
from bandit_router.api.errors import ErrorBody, excerpt
from bandit_router.api.schemas import AnyFeedback, FeedbackRequest, FeedbackResponse
from bandit_router.api.strict_json import StrictJSONRoute
from bandit_router.policy.rewards import to_reward
from bandit_router.runtime import Runtime
from bandit_router.services.feedback import feedback_row
from bandit_router.store import proxy_log
from bandit_router.store import repository as repo

router = APIRouter(tags=["feedback"], route_class=StrictJSONRoute)

# What a client key vouches for: the same key with any of these different is another request.
COMPARED = ("type", "value", "other_model", "source", "output_tokens")


def idempotency_key(req: AnyFeedback) -> str:
    """Without a client key, identical feedback (type, value, other model, source) counts once."""
    if req.idempotency_key:
        return req.idempotency_key
    raw = f"{req.type}|{req.value!r}|{req.other}|{req.source}"
    return "auto:" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def key_conflict(req: AnyFeedback, stored: dict[str, Any], sent: dict[str, Any]) -> str | None:
    """Stripe-style: a client's idempotency key names one request; the same key with another
    body is a mistake worth a 409, not a silent duplicate. (A derived key is the body already.)"""
    if not req.idempotency_key:
        return None
    differs = [f for f in COMPARED if stored.get(f) != sent.get(f)]
    if not differs:
        return None
    return (
        f"idempotency key {excerpt(req.idempotency_key, 60)} was already used for different "
        f"feedback on this decision ({', '.join(differs)} differ); the stored reward is "
        f"{stored['reward']:g}. Use a new key for new feedback"
    )


def other_model_problem(rt: Runtime, decision: dict[str, Any], other: str) -> str | None:
    """A pairwise verdict trains `other` too: it must be a model of the pool that is routable,
    and not the one whose answer it was compared against."""
    if other not in rt.pool:
        return f"'other_model' {excerpt(other, 60)} is not a model of the pool"
    if other not in {m.name for m in rt.enabled_models}:
        return f"'other_model' {other} is disabled"
    if other == decision["own_model"]:
        return f"'other_model' {other} is the model that answered this decision"
    return None


def _decision_and_answerer(conn: Connection, decision_id: str) -> dict[str, Any] | None:
    """The decision's model whose answer was rated: the proxy's fallback when one answered."""
    decision = repo.get_decision(conn, decision_id)
    if decision is None:
        return None
    answer = proxy_log.get_answer(conn, decision_id) or {}
    return {"own_model": answer.get("served_model") or decision["chosen_model"]}


@router.post(
    "/v1/feedback",
    response_model=FeedbackResponse,
    status_code=201,
    responses={
        200: {"model": FeedbackResponse, "description": "the same feedback was already stored"},
        404: {"model": ErrorBody, "description": "no such decision"},
        409: {"model": ErrorBody, "description": "idempotency key reused with another body"},
    },
)
async def feedback(
    req: FeedbackRequest, response: Response, rt: Annotated[Runtime, Depends(get_runtime)]
) -> FeedbackResponse:
    if req.other is not None:
        decision = await asyncio.to_thread(_read_decision, rt, req.decision_id)
        problem = other_model_problem(rt, decision, req.other)
        if problem:
            raise HTTPException(422, problem)
    reward = to_reward(req.type, req.value)
    row = feedback_row(
        req.decision_id,
        req.type,
        req.value,
        reward,
        source=req.source,
        idempotency_key=idempotency_key(req),
        other_model=req.other,
        output_tokens=req.output_tokens,
    )

    def write(conn: Connection) -> tuple[str, dict[str, Any] | None]:
        status = repo.insert_feedback(conn, row)
        if status != "duplicate":
            return status, None
        return status, repo.get_feedback(conn, req.decision_id, row["idempotency_key"])

    status, stored = await rt.writer.write(write)
    conflict = key_conflict(req, stored, row) if stored is not None else None
    metrics.record_feedback(req.type, "conflict" if conflict else status)
    if status == "not_found":
        raise HTTPException(404, f"decision {req.decision_id} does not exist")
    if conflict:
        raise HTTPException(409, conflict)
    if stored is not None:
        response.status_code = 200
        reward = stored["reward"]
    return FeedbackResponse(decision_id=req.decision_id, status=status, reward=reward)


def _read_decision(rt: Runtime, decision_id: str) -> dict[str, Any]:
    with rt.engine.connect() as conn:
        decision = _decision_and_answerer(conn, decision_id)
    if decision is None:
        raise HTTPException(404, f"decision {decision_id} does not exist")
    return decision
