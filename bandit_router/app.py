"""The FastAPI application: the API's routers and the console, their start-up and shut-down."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from sqlalchemy import text

from bandit_router import __version__
from bandit_router.api import (
    admin,
    audits,
    auth,
    errors,
    feedback,
    limits,
    metrics,
    openapi,
    proxy,
    routing,
)
from bandit_router.api.logging import ObserveMiddleware, configure_logging
from bandit_router.api.schemas import Health
from bandit_router.config import Settings, load_settings
from bandit_router.console import pages as console_pages
from bandit_router.runtime import Runtime

log = logging.getLogger(__name__)


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """`runtime` lets tests share one loaded encoder; by default it is built at start-up."""

    keys = auth.KeyCache()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Per worker process, after uvicorn's own set-up.
        configure_logging(settings.log_format, settings.store_prompts)
        rt = runtime if runtime is not None else await asyncio.to_thread(Runtime, settings)
        app.state.runtime = rt
        # What start-up built (~170k objects: libraries, model, app) lives as long as the process;
        # frozen, a full collection no longer walks it: that walk took ~100 ms, a p99 spike.
        gc.collect()
        gc.freeze()
        poller = asyncio.create_task(_poll_state(rt))
        try:
            async with (
                auth.key_refresh(keys, rt.engine, settings),
                proxy.upstream_client(app, settings),
            ):
                yield
        finally:
            poller.cancel()
            if runtime is None:
                await asyncio.to_thread(rt.close)

    app = FastAPI(
        title="bandit-router",
        version=__version__,
        summary="Routes each LLM query to a model of the pool and learns from feedback.",
        lifespan=lifespan,
        docs_url=None,  # served by api/openapi.py from local assets
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.keys = keys  # the console checks its sessions against the same keys
    app.include_router(routing.router)
    app.include_router(feedback.router)
    app.include_router(admin.router)
    app.include_router(proxy.router)
    app.include_router(audits.router)
    console_pages.install(app)
    app.add_api_route("/healthz", healthz, methods=["GET"], tags=["health"], response_model=Health)
    app.add_api_route("/metrics", metrics.endpoint, methods=["GET"], include_in_schema=False)
    # Added innermost first: observe (latency, access log) -> auth -> rate/body limits -> routes.
    app.add_middleware(limits.LimitsMiddleware, settings=settings)
    app.add_middleware(auth.AuthMiddleware, keys=keys, settings=settings)
    json_logs = settings.log_format == "json"
    app.add_middleware(ObserveMiddleware, access_lines=json_logs)
    errors.install(app)
    openapi.install(app, settings)
    return app


def app_from_env() -> FastAPI:
    """The factory uvicorn calls in each worker process (`serve --workers N`): a worker is a fresh
    interpreter, so it reads the same BANDIT_ROUTER_* environment the parent was started with
    (and has no logging set up: without this, which worker owns the scheduler is never logged)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return create_app(load_settings())


async def _poll_state(rt: Runtime) -> None:
    """Pick up policy versions and pool edits made by other processes."""
    while True:
        await asyncio.sleep(rt.settings.state_poll_seconds)
        try:
            await asyncio.to_thread(rt.refresh)
        except Exception as exc:  # the store being briefly unreachable must not kill the loop
            log.warning("state refresh failed: %s", exc)


def healthz(request: Request) -> dict[str, Any]:
    rt: Runtime = request.app.state.runtime
    with rt.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return {
        "status": "ok",
        "policy_version": rt.policy.version if rt.policy else None,
        "models": [m.name for m in rt.enabled_models],
    }
