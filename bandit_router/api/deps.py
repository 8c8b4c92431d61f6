"""Shared request dependencies."""

from __future__ import annotations

from fastapi import Request

from bandit_router.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    # async on purpose: FastAPI runs a sync dependency in its thread pool, a hop on every request.
    runtime: Runtime = request.app.state.runtime
    return runtime
