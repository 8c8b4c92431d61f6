"""Gold audits: the queue graders work from, and grade submission."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Connection

from bandit_router.api import metrics
from bandit_router.api.deps import get_runtime
from bandit_router.api.errors import ErrorBody
from bandit_router.api.schemas import Flag, Integer, Number, Timestamp
from bandit_router.api.strict_json import StrictJSONRoute
from bandit_router.runtime import Runtime
from bandit_router.store import repository as repo

router = APIRouter(prefix="/v1/audits", tags=["audits"], route_class=StrictJSONRoute)
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


class ClaimRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grader_id: str = Field(min_length=1, max_length=200)
    limit: Integer = Field(default=10, ge=1, le=500)


def _one_grade(schema: dict[str, Any]) -> None:
    schema["oneOf"] = [
        {"required": ["score"], "properties": {"score": {"type": "number"}}},
        {"required": ["pass"], "properties": {"pass": {"type": "boolean"}}},
    ]


class GradeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_grade)

    decision_id: str = Field(min_length=1, max_length=64)
    score: Number | None = Field(default=None, ge=0, le=1)
    passed: Flag | None = Field(default=None, alias="pass")
    grader_id: str = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _one_grade(self) -> GradeRequest:
        if (self.score is None) == (self.passed is None):
            raise ValueError("give exactly one of 'score' (in [0, 1]) or 'pass' (true/false)")
        return self

    def gold(self) -> float:
        return float(self.score) if self.score is not None else float(bool(self.passed))


class AuditItem(BaseModel):
    id: int
    decision_id: str
    created_at: Timestamp
    status: str
    claimed_by: str | None
    claim_expires_at: Timestamp | None
    score: float | None
    grader_id: str | None
    graded_at: Timestamp | None
    model: str | None = Field(description="the model whose answer is to be graded")
    prompt: str | None = Field(description="the prompt, when prompts are stored")
    prompt_hash: str | None
    decision_created_at: Timestamp | None


class GradeOut(BaseModel):
    decision_id: str
    status: Literal["graded", "duplicate"]
    score: float


def _item(conn: Connection, audit: dict[str, Any]) -> dict[str, Any]:
    """What a grader needs: the decision's model and, when prompts are stored, the prompt."""
    d = repo.get_decision(conn, audit["decision_id"]) or {}
    return {
        **audit,
        "model": d.get("chosen_model"),
        "prompt": d.get("prompt"),
        "prompt_hash": d.get("prompt_hash"),
        "decision_created_at": d.get("created_at"),
    }


@router.get("/pending", response_model=list[AuditItem])
def pending(
    rt: RuntimeDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[dict[str, Any]]:
    with rt.engine.connect() as conn:
        return [_item(conn, a) for a in repo.list_pending_audits(conn, limit)]


@router.post("/claim", response_model=list[AuditItem])
def claim(req: ClaimRequest, rt: RuntimeDep) -> list[dict[str, Any]]:
    """Claim up to `limit` audits; concurrent graders never receive the same item. A claim
    expires after AUDIT_CLAIM_SECONDS so abandoned work returns to the queue."""
    lease = timedelta(seconds=rt.settings.audit_claim_seconds)
    with rt.engine.begin() as conn:
        ids = repo.claim_audits(conn, req.grader_id, req.limit, lease)
        items = [_item(conn, a) for a in repo.audits_by_id(conn, ids)] if ids else []
    for _ in items:
        metrics.record_audit("claimed")
    return items


@router.post(
    "",
    status_code=201,
    response_model=GradeOut,
    responses={
        200: {"model": GradeOut, "description": "the same grade was already stored"},
        404: {"model": ErrorBody, "description": "no such decision"},
        409: {"model": ErrorBody, "description": "not drawn for an audit, or graded otherwise"},
    },
)
def grade(req: GradeRequest, response: Response, rt: RuntimeDep) -> dict[str, Any]:
    score = req.gold()
    with rt.engine.begin() as conn:
        audit = repo.get_audit(conn, req.decision_id)
        if audit is None:
            if repo.get_decision(conn, req.decision_id) is None:
                raise HTTPException(404, f"decision {req.decision_id} does not exist")
            raise HTTPException(
                409,
                f"decision {req.decision_id} was not selected for a gold audit; its audit "
                "probability must be known for unbiased estimates (import offline gold instead)",
            )
        if audit["status"] == "graded":
            if audit["score"] == score:
                response.status_code = 200
                return {"decision_id": req.decision_id, "status": "duplicate", "score": score}
            raise HTTPException(409, f"decision {req.decision_id} is already graded")
        repo.grade_audit(conn, req.decision_id, score, req.grader_id)
    metrics.record_audit("graded")
    return {"decision_id": req.decision_id, "status": "graded", "score": score}
