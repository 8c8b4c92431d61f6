"""Admin API: the model pool, policy versions, jobs (services/admin.py), the audited report."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from bandit_router import telemetry as metrics
from bandit_router.api.deps import get_admin, get_runtime
from bandit_router.api.errors import ErrorBody
from bandit_router.api.schemas import (
    DailyOut,
    JobOut,
    ModelIn,
    ModelOut,
    ModelPatch,
    PolicyOut,
    TimeIn,
)
from bandit_router.api.strict_json import StrictJSONRoute
from bandit_router.runtime import Runtime
from bandit_router.services import audits as audit_service
from bandit_router.services.admin import JOB_KINDS, Admin, JobRecord, PolicyVersion
from bandit_router.services.audits import Report

router = APIRouter(prefix="/v1/admin", tags=["admin"], route_class=StrictJSONRoute)
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
AdminDep = Annotated[Admin, Depends(get_admin)]
# `{name:path}`: model names such as mistralai/Mixtral-8x7B-Instruct-v0.1 hold slashes.
ModelPath = Annotated[str, Path(description="the model's name; slashes need no escaping")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "no such thing"}
}


@router.get("/models", response_model=list[ModelOut])
def list_models(admin: AdminDep) -> list[dict[str, Any]]:
    return admin.list_models()


@router.post(
    "/models",
    status_code=201,
    response_model=ModelOut,
    responses={409: {"model": ErrorBody, "description": "a model of that name exists"}},
)
def add_model(spec: ModelIn, admin: AdminDep) -> dict[str, Any]:
    """A new model is routable at once: it starts from what all models share and gets explored.
    `warnings` says what will not work yet (e.g. its api_key_env is not set)."""
    return admin.add_model(spec.model_dump())


@router.get("/models/{name:path}", response_model=ModelOut, responses=NOT_FOUND)
def get_model(name: ModelPath, admin: AdminDep) -> dict[str, Any]:
    return admin.get_model(name)


@router.patch(
    "/models/{name:path}",
    response_model=ModelOut,
    responses={
        **NOT_FOUND,
        409: {"model": ErrorBody, "description": "it is the last enabled model"},
    },
)
def patch_model(name: ModelPath, patch: ModelPatch, admin: AdminDep) -> dict[str, Any]:
    return admin.change_model(name, patch.model_dump(exclude_unset=True))


@router.get("/policies", response_model=list[PolicyOut])
def list_policies(admin: AdminDep) -> list[PolicyVersion]:
    return admin.list_policies()


@router.get("/policies/{version}", response_model=PolicyOut, responses=NOT_FOUND)
def get_policy(version: int, admin: AdminDep) -> PolicyVersion:
    return admin.get_policy(version)


@router.post("/policies/{version}/activate", response_model=PolicyOut, responses=NOT_FOUND)
def activate_policy(version: int, admin: AdminDep) -> PolicyVersion:
    """Activate any stored version: promotion by hand, or rollback to an older one."""
    return admin.activate_policy(version)


JobKind = Annotated[str, Path(json_schema_extra={"enum": sorted(JOB_KINDS)})]


@router.post("/jobs/{kind}", status_code=202, response_model=JobOut, responses=NOT_FOUND)
def trigger_job(kind: JobKind, admin: AdminDep) -> JobRecord:
    return admin.submit_job(kind)


@router.get("/jobs", response_model=list[JobOut])
def list_jobs(admin: AdminDep) -> list[JobRecord]:
    return admin.list_jobs()


# {job_id:int}: GET /jobs/retrain is then a 405 (only POST /jobs/{kind} lives there), not a 422.
@router.get(
    "/jobs/{job_id:int}",
    response_model=JobOut,
    responses={
        **NOT_FOUND,
        405: {"model": ErrorBody, "description": "not a number: /jobs/{kind} takes POST only"},
    },
)
def get_job(job_id: Annotated[int, Path(ge=1)], admin: AdminDep) -> JobRecord:
    return admin.get_job(job_id)


@router.get("/daily", response_model=list[DailyOut])
def daily(admin: AdminDep) -> list[dict[str, Any]]:
    """Per UTC day and chosen model, what the retention purge rolled up before deleting the
    decisions (RETENTION_DAYS): the history that outlives the rows, oldest day first."""
    return admin.daily()


@router.get("/bias", responses=NOT_FOUND)
def bias(admin: AdminDep) -> dict[str, Any]:
    """Per-model bias of preference feedback (gold − preference) with PPI++ intervals, from the
    newest successful retraining run; `alert` marks an estimate outside the previous interval."""
    return admin.bias()


@router.get("/report", response_model=Report)
def report(
    rt: RuntimeDep,
    since: Annotated[
        TimeIn | None, Query(description="window start (default: REPORT_WINDOW_DAYS ago)")
    ] = None,
    until: Annotated[TimeIn | None, Query(description="window end (default: now)")] = None,
    reference: Annotated[
        str | None,
        Query(max_length=200, description="savings against (default: the priciest model)"),
    ] = None,
) -> Report:
    """Audited numbers with 95 % intervals over [since, until), per model and overall: quality
    of the routed answers (PPI++ on gold audits and preference feedback), cost per query, the
    saving against `reference` and the quality retained against it; graders' agreement.
    Computed on demand and reused for REPORT_CACHE_SECONDS. Times are RFC 3339."""
    out = audit_service.report(rt.engine, rt.settings, since, until, reference)
    if since is None and until is None and reference is None:
        metrics.set_report(out)
    return out
