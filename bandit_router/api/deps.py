"""Shared request dependencies."""

from __future__ import annotations

from fastapi import Request

from bandit_router.config import Settings
from bandit_router.runtime import Runtime
from bandit_router.services.admin import Admin


async def get_runtime(request: Request) -> Runtime:
    # async on purpose: FastAPI runs a sync dependency in its thread pool, a hop on every request.
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_settings(request: Request) -> Settings:
    """The app's settings (the runtime's, except where a test starts an app with others)."""
    settings: Settings = request.app.state.settings
    return settings


async def get_admin(request: Request) -> Admin:
    admin: Admin = request.app.state.runtime.admin
    return admin
