"""Admin API: the model pool, policy versions, jobs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from sqlalchemy.exc import IntegrityError

from bandit_router import telemetry as metrics
from bandit_router.api.audits import http_error
from bandit_router.api.deps import get_runtime, get_settings
from bandit_router.api.errors import ErrorBody, excerpt
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
from bandit_router.audit.report import Report
from bandit_router.config import Settings
from bandit_router.jobs.runner import JOBS
from bandit_router.policy.pool import ModelSpec
from bandit_router.runtime import Runtime
from bandit_router.services import audits as audit_service
from bandit_router.services.pool import key_env_refused, model_warnings
from bandit_router.store import repository as repo

router = APIRouter(prefix="/v1/admin", tags=["admin"], route_class=StrictJSONRoute)
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
# `{name:path}`: model names such as mistralai/Mixtral-8x7B-Instruct-v0.1 hold slashes.
ModelPath = Annotated[str, Path(description="the model's name; slashes need no escaping")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "no such thing"}
}
# Ids are 32-bit in PostgreSQL; a larger one names nothing (and must not reach the database).
MAX_ID = 2**31 - 1


def stored_id(value: int) -> bool:
    return 1 <= value <= MAX_ID


def model_view(settings: Settings, row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "warnings": model_warnings(ModelSpec.from_row(row), settings)}


def check_key_env(settings: Settings, name: str | None) -> None:
    refused = key_env_refused(name, settings) if name else None
    if refused:
        raise HTTPException(422, refused)


@router.get("/models", response_model=list[ModelOut])
def list_models(rt: RuntimeDep, settings: SettingsDep) -> list[dict[str, Any]]:
    with rt.engine.connect() as conn:
        return [model_view(settings, row) for row in repo.list_models(conn)]


@router.post(
    "/models",
    status_code=201,
    response_model=ModelOut,
    responses={409: {"model": ErrorBody, "description": "a model of that name exists"}},
)
def add_model(spec: ModelIn, rt: RuntimeDep, settings: SettingsDep) -> dict[str, Any]:
    """A new model is routable at once: it starts from what all models share and gets explored.
    `warnings` says what will not work yet (e.g. its api_key_env is not set)."""
    check_key_env(settings, spec.api_key_env)
    try:
        with rt.engine.begin() as conn:
            repo.add_model(conn, spec.model_dump())
    except IntegrityError:
        raise HTTPException(409, f"model {spec.name} already exists; PATCH it instead") from None
    rt.refresh(force=True)
    return _model_or_404(rt, settings, spec.name)


@router.get("/models/{name:path}", response_model=ModelOut, responses=NOT_FOUND)
def get_model(name: ModelPath, rt: RuntimeDep, settings: SettingsDep) -> dict[str, Any]:
    return _model_or_404(rt, settings, name)


@router.patch(
    "/models/{name:path}",
    response_model=ModelOut,
    responses={
        **NOT_FOUND,
        409: {"model": ErrorBody, "description": "it is the last enabled model"},
    },
)
def patch_model(
    name: ModelPath, patch: ModelPatch, rt: RuntimeDep, settings: SettingsDep
) -> dict[str, Any]:
    changes = patch.model_dump(exclude_unset=True)
    check_key_env(settings, changes.get("api_key_env"))
    with rt.engine.begin() as conn:
        if repo.get_model(conn, name) is None:
            raise HTTPException(404, f"model {excerpt(name, 200)} does not exist")
        if changes.get("enabled") is False:
            others = [m for m in repo.list_models(conn, enabled_only=True) if m["name"] != name]
            if not others:
                raise HTTPException(409, "cannot disable the last enabled model")
        repo.update_model(conn, name, changes)
    rt.refresh(force=True)
    return _model_or_404(rt, settings, name)


def found(row: dict[str, Any] | None, what: str) -> dict[str, Any]:
    """The row, or a 404 saying which thing does not exist."""
    if row is None:
        raise HTTPException(404, f"{excerpt(what, 200)} does not exist")
    return row


def _model_or_404(rt: Runtime, settings: Settings, name: str) -> dict[str, Any]:
    with rt.engine.connect() as conn:
        return model_view(settings, found(repo.get_model(conn, name), f"model {name}"))


@router.get("/policies", response_model=list[PolicyOut])
def list_policies(rt: RuntimeDep) -> list[dict[str, Any]]:
    with rt.engine.connect() as conn:
        return repo.list_policies(conn)


@router.get("/policies/{version}", response_model=PolicyOut, responses=NOT_FOUND)
def get_policy(version: int, rt: RuntimeDep) -> dict[str, Any]:
    with rt.engine.connect() as conn:
        row = repo.get_policy(conn, version) if stored_id(version) else None
    return found(row, f"policy version {version}")


@router.post("/policies/{version}/activate", response_model=PolicyOut, responses=NOT_FOUND)
def activate_policy(version: int, rt: RuntimeDep) -> dict[str, Any]:
    """Activate any stored version: promotion by hand, or rollback to an older one."""
    with rt.engine.begin() as conn:
        if not stored_id(version) or repo.get_policy(conn, version) is None:
            raise HTTPException(404, f"policy version {version} does not exist")
        repo.activate_policy(conn, version)
    rt.refresh()
    return get_policy(version, rt)


JobKind = Annotated[str, Path(json_schema_extra={"enum": sorted(JOBS)})]


@router.post("/jobs/{kind}", status_code=202, response_model=JobOut, responses=NOT_FOUND)
def trigger_job(kind: JobKind, rt: RuntimeDep) -> dict[str, Any]:
    try:
        job_id, _ = rt.runner.submit(kind, "admin")
    except KeyError:
        raise HTTPException(
            404, f"unknown job kind {excerpt(kind, 40)}; known: {', '.join(rt.runner.kinds)}"
        ) from None
    return get_job(job_id, rt)


@router.get("/jobs", response_model=list[JobOut])
def list_jobs(rt: RuntimeDep) -> list[dict[str, Any]]:
    with rt.engine.connect() as conn:
        return repo.list_jobs(conn)


# {job_id:int}: GET /jobs/retrain is then a 405 (only POST /jobs/{kind} lives there), not a 422.
@router.get(
    "/jobs/{job_id:int}",
    response_model=JobOut,
    responses={
        **NOT_FOUND,
        405: {"model": ErrorBody, "description": "not a number: /jobs/{kind} takes POST only"},
    },
)
def get_job(job_id: Annotated[int, Path(ge=1)], rt: RuntimeDep) -> dict[str, Any]:
    with rt.engine.connect() as conn:
        row = repo.get_job(conn, job_id) if stored_id(job_id) else None
    return found(row, f"job {job_id}")


@router.get("/daily", response_model=list[DailyOut])
def daily(rt: RuntimeDep) -> list[dict[str, Any]]:
    """Per UTC day and chosen model, what the retention purge rolled up before deleting the
    decisions (RETENTION_DAYS): the history that outlives the rows, oldest day first."""
    with rt.engine.connect() as conn:
        rows = repo.daily_aggregates(conn)
    return [
        {
            **r,
            "mean_reward": r["reward_sum"] / r["feedback"] if r["feedback"] else None,
            "mean_grade": r["gold_sum"] / r["audits"] if r["audits"] else None,
        }
        for r in rows
    ]


@router.get("/bias", responses=NOT_FOUND)
def bias(rt: RuntimeDep) -> dict[str, Any]:
    """Per-model bias of preference feedback (gold − preference) with PPI++ intervals, from the
    newest successful retraining run; `alert` marks an estimate outside the previous interval."""
    with rt.engine.connect() as conn:
        job = repo.latest_bias_job(conn)
    if job is None:
        raise HTTPException(404, "no retraining run has estimated the bias yet")
    return {
        "job_id": job["id"],
        "finished_at": job["finished_at"],
        "method": job["result"].get("bias_method"),
        "models": job["result"]["bias"],
    }


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
    try:
        out = audit_service.report(rt.engine, rt.settings, since, until, reference)
    except audit_service.AuditError as exc:
        raise http_error(exc) from None
    if since is None and until is None and reference is None:
        metrics.set_report(out)
    return out
