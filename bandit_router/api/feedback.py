"""POST /v1/feedback."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Response

from bandit_router.api import metrics
from bandit_router.api.deps import get_runtime
from bandit_router.api.schemas import FeedbackRequest, FeedbackResponse
from bandit_router.jobs.rewards import to_reward
from bandit_router.runtime import Runtime
from bandit_router.store import repository as repo
from bandit_router.store.rows import feedback_row

router = APIRouter(tags=["feedback"])


def idempotency_key(req: FeedbackRequest) -> str:
    """Without a client key, identical feedback (type, value, other model, source) counts once."""
    if req.idempotency_key:
        return req.idempotency_key
    raw = f"{req.type}|{req.value!r}|{req.other_model}|{req.source}"
    return "auto:" + hashlib.sha256(raw.encode()).hexdigest()[:32]


@router.post("/v1/feedback", response_model=FeedbackResponse, status_code=201)
async def feedback(
    req: FeedbackRequest, response: Response, rt: Annotated[Runtime, Depends(get_runtime)]
) -> FeedbackResponse:
    reward = to_reward(req.type, req.value)
    row = feedback_row(
        req.decision_id,
        req.type,
        req.value,
        reward,
        source=req.source,
        idempotency_key=idempotency_key(req),
        other_model=req.other_model,
        output_tokens=req.output_tokens,
    )
    status = await rt.writer.write(lambda conn: repo.insert_feedback(conn, row))
    metrics.record_feedback(req.type, status)
    if status == "not_found":
        raise HTTPException(404, f"decision {req.decision_id} does not exist")
    if status == "duplicate":
        response.status_code = 200
    return FeedbackResponse(decision_id=req.decision_id, status=status, reward=reward)
