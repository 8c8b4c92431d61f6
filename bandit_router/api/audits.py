"""Gold audits: the queue graders work from, and grade submission."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bandit_router import telemetry as metrics
from bandit_router.api.auth import request_key
from bandit_router.api.deps import get_runtime
from bandit_router.api.errors import storing
from bandit_router.api.schemas import Flag, Integer, Number, Timestamp
from bandit_router.api.strict_json import StrictJSONRoute
from bandit_router.runtime import Runtime
from bandit_router.services import audits as audit_service

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


# A rubric is named, not described: a short id the console and reports can group by.
RUBRIC_PATTERN = r"^[A-Za-z0-9._:-]+$"
MAX_COMMENT = 2000


class GradeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_grade)

    decision_id: str = Field(min_length=1, max_length=64)
    score: Number | None = Field(default=None, ge=0, le=1)
    passed: Flag | None = Field(default=None, alias="pass")
    grader_id: str = Field(min_length=1, max_length=200)
    rubric: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=RUBRIC_PATTERN,
        description="the id of the rubric graded against, e.g. 'factual-v2'",
    )  # fmt: skip
    comment: str | None = Field(default=None, max_length=MAX_COMMENT)

    @model_validator(mode="after")
    def _one_grade(self) -> GradeRequest:
        if (self.score is None) == (self.passed is None):
            raise ValueError("give exactly one of 'score' (in [0, 1]) or 'pass' (true/false)")
        return self

    def grade(self) -> audit_service.Grade:
        score = float(self.score) if self.score is not None else float(bool(self.passed))
        return audit_service.Grade(self.decision_id, score, self.rubric, self.comment)


class AuditItem(BaseModel):
    id: int
    decision_id: str
    round: Literal[1, 2] = Field(description="1: a first grade; 2: a second grader's opinion")
    created_at: Timestamp
    status: str
    claimed_by: str | None
    claim_expires_at: Timestamp | None
    score: float | None = Field(description="the first grade (hidden from a second grader)")
    grader_id: str | None
    graded_at: Timestamp | None
    model: str | None = Field(description="the model whose answer is to be graded")
    prompt: str | None = Field(description="the prompt, kept for audited decisions")
    answer: str | None = Field(description="the answer, once the proxy or the client gave it")
    prompt_hash: str | None
    decision_created_at: Timestamp | None


class GradeOut(BaseModel):
    decision_id: str
    status: Literal["graded", "duplicate"]
    score: float
    round: Literal[1, 2]


def grader_of(request: Request, name: str) -> audit_service.Grader:
    key = request_key(request.scope)
    return audit_service.Grader.of(name, key.prefix if key else None)


@router.get("/pending", response_model=list[AuditItem])
def pending(
    rt: RuntimeDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[dict[str, Any]]:
    return audit_service.pending(rt.engine, limit)


@router.post("/claim", response_model=list[AuditItem])
def claim(req: ClaimRequest, request: Request, rt: RuntimeDep) -> list[dict[str, Any]]:
    """Claim up to `limit` audits; concurrent graders never receive the same item. A claim
    expires after AUDIT_CLAIM_SECONDS so abandoned work returns to the queue. With keys, the
    claim belongs to the API key: only it may grade the item while the claim lasts."""
    items = audit_service.claim(
        rt.engine, rt.settings, grader_of(request, req.grader_id), req.limit
    )
    for _ in items:
        metrics.record_audit("claimed")
    return items


@router.post(
    "",
    **storing(
        GradeOut,
        "the same grade was already stored",
        {
            404: "no such decision",
            409: "not drawn for an audit, claimed by another grader, or graded otherwise",
        },
    ),
)
def grade(req: GradeRequest, request: Request, response: Response, rt: RuntimeDep) -> GradeOut:
    out = audit_service.grade(
        rt.engine, rt.settings, grader_of(request, req.grader_id), req.grade()
    )
    if out.status == "duplicate":
        response.status_code = 200
    else:
        metrics.record_audit("graded" if out.round == 1 else "second_graded")
    return GradeOut(
        decision_id=out.decision_id, status=out.status, score=out.score, round=out.round
    )
