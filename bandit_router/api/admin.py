"""Admin API: the model pool, policy versions, jobs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy.exc import IntegrityError

from bandit_router.api.deps import get_runtime
from bandit_router.api.schemas import JobOut, ModelPatch
from bandit_router.policy.pool import ModelSpecIn
from bandit_router.runtime import Runtime
from bandit_router.store import repository as repo

router = APIRouter(prefix="/v1/admin", tags=["admin"])
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


@router.get("/models")
def list_models(rt: RuntimeDep) -> list[dict[str, Any]]:
    with rt.engine.connect() as conn:
        return repo.list_models(conn)


@router.post("/models", status_code=201)
def add_model(spec: ModelSpecIn, rt: RuntimeDep) -> dict[str, Any]:
    """A new model is routable at once: it starts from what all models share and gets explored."""
    try:
        with rt.engine.begin() as conn:
            repo.add_model(conn, spec.model_dump())
    except IntegrityError:
        raise HTTPException(409, f"model {spec.name} already exists; PATCH it instead") from None
    rt.refresh(force=True)
    return _model_or_404(rt, spec.name)


@router.patch("/models/{name}")
def patch_model(name: str, patch: ModelPatch, rt: RuntimeDep) -> dict[str, Any]:
    changes = patch.model_dump(exclude_unset=True)
    if not changes:
        raise HTTPException(422, "nothing to change: give at least one field")
    with rt.engine.begin() as conn:
        if repo.get_model(conn, name) is None:
            raise HTTPException(404, f"model {name} does not exist")
        if changes.get("enabled") is False:
            others = [m for m in repo.list_models(conn, enabled_only=True) if m["name"] != name]
            if not others:
                raise HTTPException(409, "cannot disable the last enabled model")
        repo.update_model(conn, name, changes)
    rt.refresh(force=True)
    return _model_or_404(rt, name)


def found(row: dict[str, Any] | None, what: str) -> dict[str, Any]:
    """The row, or a 404 saying which thing does not exist."""
    if row is None:
        raise HTTPException(404, f"{what} does not exist")
    return row


def _model_or_404(rt: Runtime, name: str) -> dict[str, Any]:
    with rt.engine.connect() as conn:
        return found(repo.get_model(conn, name), f"model {name}")


@router.get("/policies")
def list_policies(rt: RuntimeDep) -> list[dict[str, Any]]:
    with rt.engine.connect() as conn:
        return repo.list_policies(conn)


@router.get("/policies/{version}")
def get_policy(version: int, rt: RuntimeDep) -> dict[str, Any]:
    with rt.engine.connect() as conn:
        return found(repo.get_policy(conn, version), f"policy version {version}")


@router.post("/policies/{version}/activate")
def activate_policy(version: int, rt: RuntimeDep) -> dict[str, Any]:
    """Activate any stored version: promotion by hand, or rollback to an older one."""
    with rt.engine.begin() as conn:
        if repo.get_policy(conn, version) is None:
            raise HTTPException(404, f"policy version {version} does not exist")
        repo.activate_policy(conn, version)
    rt.refresh()
    return get_policy(version, rt)


@router.post("/jobs/{kind}", status_code=202, response_model=JobOut)
def trigger_job(kind: str, rt: RuntimeDep) -> dict[str, Any]:
    try:
        job_id, _ = rt.runner.submit(kind, "admin")
    except KeyError:
        raise HTTPException(
            404, f"unknown job kind {kind}; known: {', '.join(rt.runner.kinds)}"
        ) from None
    return get_job(job_id, rt)


@router.get("/jobs", response_model=list[JobOut])
def list_jobs(rt: RuntimeDep) -> list[dict[str, Any]]:
    with rt.engine.connect() as conn:
        return repo.list_jobs(conn)


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: int, rt: RuntimeDep) -> dict[str, Any]:
    with rt.engine.connect() as conn:
        return found(repo.get_job(conn, job_id), f"job {job_id}")


@router.get("/bias")
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
