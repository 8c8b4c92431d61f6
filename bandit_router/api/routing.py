"""POST /v1/route and GET /v1/decisions/{id}."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response
from sqlalchemy import Connection

from bandit_router import telemetry as metrics
from bandit_router.api.deps import get_runtime
from bandit_router.api.errors import ErrorBody, storing
from bandit_router.api.logging import bind_decision
from bandit_router.api.schemas import (
    AnswerIn,
    AnswerOut,
    CandidateOut,
    DecisionOut,
    RouteRequest,
    RouteResponse,
)
from bandit_router.api.strict_json import StrictJSONRoute
from bandit_router.embed.service import text_hash
from bandit_router.policy.decide import Choice
from bandit_router.policy.pool import ModelSpec
from bandit_router.routing import plan_decision
from bandit_router.runtime import Runtime
from bandit_router.services import audits as audit_service
from bandit_router.services.errors import excerpt, names_excerpt
from bandit_router.store import proxy_log
from bandit_router.store import repository as repo

router = APIRouter(tags=["routing"], route_class=StrictJSONRoute)
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def select_candidates(rt: Runtime, req: RouteRequest) -> list[ModelSpec]:
    """The allow-list minus the exclusions, in pool order; unknown or disabled names are errors
    (a model whose prices cannot be used counts as disabled: it is never routed)."""
    for field, names in (("models", req.models), ("exclude", req.exclude)):
        unknown = {n for n in names or [] if n not in rt.pool}
        if unknown:
            raise HTTPException(422, f"'{field}' names unknown models: {names_excerpt(unknown)}")
    enabled = {m.name for m in rt.enabled_models}
    disabled = {n for n in req.models or [] if n not in enabled}
    if disabled:
        raise HTTPException(422, f"'models' names disabled models: {names_excerpt(disabled)}")
    allowed = set(req.models) if req.models is not None else None
    excluded = set(req.exclude or [])
    out = [
        m
        for m in rt.enabled_models
        if (allowed is None or m.name in allowed) and m.name not in excluded
    ]
    if not out:
        raise HTTPException(422, "no candidate model is left after 'models' and 'exclude'")
    return out


@dataclass(frozen=True)
class Routed:
    """A committed decision: what /v1/route returns and what the proxy forwards on."""

    decision_id: str
    choice: Choice
    lam: float
    policy_version: int
    audited: bool = False  # drawn for a gold audit: the proxy keeps the answer for graders

    def response(self) -> RouteResponse:
        return RouteResponse(
            decision_id=self.decision_id,
            model=self.choice.model,
            probability=self.choice.probability,
            policy_version=self.policy_version,
            lam=self.lam,
            candidates=[
                CandidateOut(
                    model=c["model"],
                    # The log keeps the regression's value; a client sees it on the 0-1 scale.
                    predicted_quality=min(max(c["quality"], 0.0), 1.0),
                    expected_cost_usd=c["cost_usd"],
                    score=c["score"],
                    probability=c["probability"],
                )
                for c in self.choice.candidates()
            ],
        )


async def route_request(
    rt: Runtime,
    req: RouteRequest,
    candidates: list[ModelSpec],
    endpoint: str = "route",
    record: Callable[[Connection, str], None] | None = None,
) -> Routed:
    """The one routing code path (/v1/route and the OpenAI-compatible proxy): embed, decide,
    commit the decision before returning it; `record` writes more about it in the same
    transaction (the proxy: what identifies the request, for its retries)."""
    lam = (
        req.lam
        if req.lam is not None
        else rt.settings.preset_lambda(req.preset or rt.settings.default_preset)
    )
    text = req.query_text()
    key = text_hash(text)
    emb, _ = await rt.embedder.embed(text, key)
    policy = rt.policy
    assert policy is not None
    input_tokens = max(1, round(len(req.full_text()) / rt.settings.chars_per_token))
    decision_id = uuid.uuid4().hex
    bind_decision(decision_id)
    planned = plan_decision(
        policy,
        decision_id,
        emb,
        candidates,
        rt.enabled_models,
        input_tokens,
        lam,
        rt.settings,
        rt.exploration,
        prompt_hash=key,
        prompt=req.full_text() if rt.settings.store_prompts else None,
        preset=req.preset,
    )
    choice, row, audited = planned.choice, planned.row, planned.audited

    # Kept for the grader even with STORE_PROMPTS=false (services/audits.py says what is kept).
    audit_prompt = req.transcript() if audited else None

    def write(conn: Connection) -> None:
        repo.insert_decision(conn, row, audited, audit_prompt)
        if record is not None:
            record(conn, decision_id)

    await rt.writer.write(write)
    metrics.record_decision(choice.model, endpoint)
    if audited:
        metrics.record_audit("selected")
    return Routed(decision_id, choice, lam, policy.version, audited)


@router.post("/v1/route", response_model=RouteResponse, response_model_by_alias=True)
async def route(req: RouteRequest, rt: RuntimeDep) -> RouteResponse:
    routed = await route_request(rt, req, select_candidates(rt, req))
    return routed.response()


@router.get(
    "/v1/decisions/{decision_id}",
    response_model=DecisionOut,
    response_model_by_alias=True,
    responses={404: {"model": ErrorBody, "description": "no such decision"}},
)
def get_decision(decision_id: str, rt: RuntimeDep) -> dict[str, Any]:
    with rt.engine.connect() as conn:
        return decision_view(conn, decision_id)


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


def decision_view(conn: Connection, decision_id: str) -> dict[str, Any]:
    row = repo.get_decision(conn, decision_id)
    if row is None:
        raise HTTPException(404, f"decision {excerpt(decision_id, 64)} does not exist")
    row.pop("embedding")
    row["feedback"] = repo.list_feedback(conn, decision_id)
    row["proxy"] = proxy_log.get_answer(conn, decision_id)  # who answered, if it was proxied
    return row
