"""POST /v1/route, GET /v1/decisions/{id} and POST /v1/decisions/{id}/answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from bandit_router.api.deps import get_runtime
from bandit_router.api.errors import ErrorBody, storing
from bandit_router.api.schemas import (
    AnswerIn,
    AnswerOut,
    CandidateOut,
    DecisionOut,
    RouteRequest,
    RouteResponse,
)
from bandit_router.api.strict_json import StrictJSONRoute
from bandit_router.runtime import Runtime
from bandit_router.services import audits as audit_service
from bandit_router.services.routing import Routed, select_candidates

router = APIRouter(tags=["routing"], route_class=StrictJSONRoute)
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def route_response(routed: Routed) -> RouteResponse:
    return RouteResponse(
        decision_id=routed.decision_id,
        model=routed.choice.model,
        probability=routed.choice.probability,
        policy_version=routed.policy_version,
        lam=routed.lam,
        candidates=[
            CandidateOut(
                model=c["model"],
                # The log keeps the regression's value; a client sees it on the 0-1 scale.
                predicted_quality=min(max(c["quality"], 0.0), 1.0),
                expected_cost_usd=c["cost_usd"],
                score=c["score"],
                probability=c["probability"],
            )
            for c in routed.choice.candidates()
        ],
    )


@router.post("/v1/route", response_model=RouteResponse, response_model_by_alias=True)
async def route(req: RouteRequest, request: Request) -> Response:
    # The hot path: the runtime read off the app, not a dependency, and the answer serialised
    # once by pydantic, not validated again against `response_model` (which still documents it).
    rt: Runtime = request.app.state.runtime
    snapshot = rt.snapshot
    candidates = select_candidates(snapshot, req.models, req.exclude)
    routed = route_response(await rt.routing.route(req, candidates, snapshot))
    return Response(routed.model_dump_json(by_alias=True), media_type="application/json")


@router.get(
    "/v1/decisions/{decision_id}",
    response_model=DecisionOut,
    response_model_by_alias=True,
    responses={404: {"model": ErrorBody, "description": "no such decision"}},
)
def get_decision(decision_id: str, rt: RuntimeDep) -> dict[str, Any]:
    return rt.routing.decision_record(decision_id)


@router.post(
    "/v1/decisions/{decision_id}/answer",
    **storing(
        AnswerOut,
        "an earlier answer was replaced",
        {
            404: "no such decision",
            409: "the decision was not drawn for an audit and prompts are not stored, or it is "
            "graded already: its answer is not kept",
        },
    ),
)
def attach_answer(
    decision_id: str, body: AnswerIn, response: Response, rt: RuntimeDep
) -> AnswerOut:
    """Attach the answer the routed model gave, so a grader can read it. Kept only for
    decisions drawn for an audit (or any, with STORE_PROMPTS=true); deleted once graded or
    after AUDIT_TEXT_DAYS. 409, not 422: the body is fine, the decision's state refuses it."""
    status = audit_service.attach_answer(rt.engine, rt.settings, decision_id, body.answer)
    if status == "replaced":
        response.status_code = 200
    return AnswerOut(
        decision_id=decision_id, status="created" if status == "created" else "replaced"
    )
