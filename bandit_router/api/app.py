"""The FastAPI application and its start-up / shut-down."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from bandit_router import __version__
from bandit_router.api import admin, audits, auth, feedback, limits, metrics, proxy, routing
from bandit_router.api.logging import ObserveMiddleware, configure_logging
from bandit_router.config import Settings, load_settings
from bandit_router.embed.service import EncoderOverloaded
from bandit_router.runtime import Runtime

log = logging.getLogger(__name__)


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """`runtime` lets tests share one loaded encoder; by default it is built at start-up."""

    keys = auth.KeyCache()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_format)  # per worker process, after uvicorn's own set-up
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
    )
    app.include_router(routing.router)
    app.include_router(feedback.router)
    app.include_router(admin.router)
    app.include_router(proxy.router)
    app.include_router(audits.router)
    app.add_api_route("/healthz", healthz, methods=["GET"], tags=["health"])
    app.add_api_route("/metrics", metrics.endpoint, methods=["GET"], include_in_schema=False)
    # Added innermost first: observe (latency, access log) -> auth -> rate/body limits -> routes.
    app.add_middleware(limits.LimitsMiddleware, settings=settings)
    app.add_middleware(auth.AuthMiddleware, keys=keys, settings=settings)
    json_logs = settings.log_format == "json"
    app.add_middleware(ObserveMiddleware, access_lines=json_logs)
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(OperationalError, _database_down)  # type: ignore[arg-type]
    app.add_exception_handler(EncoderOverloaded, _overloaded)  # type: ignore[arg-type]
    for unstorable in (DataError, IntegrityError, OverflowError):
        app.add_exception_handler(unstorable, _unstorable)
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


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with one readable line per problem, plus the structured details."""
    errors = jsonable_encoder(exc.errors(), custom_encoder={Exception: str})
    lines = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        lines.append(f"{where}: {msg}" if where else msg)
    return auth.error_response(request.url.path, 422, "; ".join(lines), errors=errors)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """FastAPI's own handler, except on OpenAI-compatible paths: OpenAI's error shape there."""
    if not request.url.path.startswith(auth.OPENAI_PATHS):
        return await http_exception_handler(request, exc)
    return auth.error_response(request.url.path, exc.status_code, str(exc.detail), exc.headers)


async def _unstorable(request: Request, exc: Exception) -> Response:
    """Last line of defence, found by tests/test_fuzz_api.py: a value that passed validation but
    that the store cannot hold (an integer past its column's range, a NUL byte in PostgreSQL text,
    null into a required column) is the request's fault: a 422 saying so, never a 500."""
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    log.warning("%s %s: the store rejected a value: %s", request.method, request.url.path, reason)
    message = f"a value in the request cannot be stored: {reason}"
    return auth.error_response(request.url.path, 422, message)


async def _overloaded(request: Request, exc: EncoderOverloaded) -> Response:
    metrics.record_rejection("overloaded")
    message = f"the router is overloaded ({exc}); retry shortly"
    return auth.error_response(request.url.path, 503, message, {"Retry-After": "1"})


async def _database_down(_request: Request, exc: OperationalError) -> JSONResponse:
    log.error("database unavailable: %s", exc.orig)
    return JSONResponse(
        status_code=503,
        content={"detail": "the database is unavailable; retry shortly"},
        headers={"Retry-After": "2"},
    )
