"""POST /v1/feedback (the rules: services/feedback.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from bandit_router.api.deps import get_runtime
from bandit_router.api.errors import ErrorBody
from bandit_router.api.schemas import FeedbackRequest, FeedbackResponse
from bandit_router.api.strict_json import StrictJSONRoute
from bandit_router.runtime import Runtime
from bandit_router.services.feedback import FeedbackIn

router = APIRouter(tags=["feedback"], route_class=StrictJSONRoute)


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
    fb = FeedbackIn(
        req.decision_id,
        req.type,
        req.value,
        req.source,
        idempotency_key=req.idempotency_key,
        other_model=req.other,
        output_tokens=req.output_tokens,
    )
    recorded = await rt.feedback.record(fb)
    if recorded.status == "duplicate":
        response.status_code = 200
    return FeedbackResponse(
        decision_id=req.decision_id, status=recorded.status, reward=recorded.reward
    )
