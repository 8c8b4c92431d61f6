"""The API's error bodies and the handlers that shape every failure into one.

An error answer is `{"detail": "<one readable line>"}`, plus the structured `errors` of a
validation failure and, on OpenAI-compatible paths, OpenAI's `error` object. What a client sent is
echoed only as a bounded excerpt: a 200,000-character prompt must not come back whole, and a value
JSON cannot carry must not break the answer that reports it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from bandit_router import telemetry as metrics
from bandit_router.services.errors import (
    Conflict,
    DomainError,
    Invalid,
    NotFound,
    excerpt,
)
from bandit_router.services.routing import EncoderOverloaded

log = logging.getLogger(__name__)

OPENAI_PATHS = ("/v1/chat/",)
_OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
MAX_PROBLEMS = 10  # validation problems listed in one answer


class ValidationProblem(BaseModel):
    loc: list[str | int] = Field(description="where: 'body', then field names and list indexes")
    msg: str
    type: str
    input: Any = Field(default=None, description="an excerpt of the value that was refused")


class OpenAIError(BaseModel):
    message: str
    type: str
    code: int


class ErrorBody(BaseModel):
    """Every 4xx and 5xx the service itself produces."""

    detail: str = Field(description="what is wrong, in one line")
    errors: list[ValidationProblem] | None = Field(
        default=None, description="422 validation failures: each problem (at most 10)"
    )
    error: OpenAIError | None = Field(
        default=None, description="the same message in OpenAI's shape (/v1/chat/* only)"
    )


def refusals(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for errors an operation answers with, each in the ErrorBody shape."""
    return {status: {"model": ErrorBody, "description": d} for status, d in descriptions.items()}


def storing(model: type, again: str, refused: dict[int, str]) -> dict[str, Any]:
    """Route arguments of a POST that answers 201 when it stores something, 200 (`again`) when
    it was stored before, and the errors in `refused`."""
    answers = {200: {"model": model, "description": again}, **refusals(refused)}
    return {"status_code": 201, "response_model": model, "responses": answers}


def error_response(
    path: str, status: int, detail: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """The API's error body, {"detail": ...}. On OpenAI-compatible paths it also has OpenAI's
    {"error": {"message", "type", "code"}}, the part OpenAI SDKs show in their exceptions."""
    body: dict[str, Any] = {"detail": detail, **extra}
    if path.startswith(OPENAI_PATHS):
        kind = _OPENAI_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
        body["error"] = {"message": detail, "type": kind, "code": status}
    return JSONResponse(body, status, headers)


def _echo(value: Any) -> Any:
    """A small JSON scalar as it is; anything else as a bounded excerpt."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) < 2**53:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return excerpt(value)


def problems(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors()[:MAX_PROBLEMS]:
        loc = [p if isinstance(p, int) else excerpt(str(p), 60) for p in err.get("loc", ())]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "json_invalid" and (err.get("ctx") or {}).get("error"):
            msg = f"{msg}: {err['ctx']['error']}"  # what the strict parser said was wrong
        msg = excerpt(msg, 300)
        out.append({"loc": loc, "msg": msg, "type": str(err.get("type", "invalid")), "input": None})
        if "input" in err:
            out[-1]["input"] = _echo(err["input"])
    return out


async def validation_error(request: Request, exc: RequestValidationError) -> Response:
    """422 with one readable line per problem, plus the structured problems (bounded)."""
    found = problems(exc)
    lines = []
    for p in found:
        where = ".".join(str(part) for part in p["loc"] if part != "body")
        lines.append(f"{where}: {p['msg']}" if where else p["msg"])
    more = len(exc.errors()) - len(found)
    if more > 0:
        lines.append(f"and {more} more problems")
    return error_response(request.url.path, 422, "; ".join(lines), errors=found)


async def http_error(request: Request, exc: HTTPException) -> Response:
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(sorted(allowed_methods(request.app, request.scope)))
    return error_response(request.url.path, exc.status_code, str(exc.detail), headers or None)


REFUSAL_STATUS = {NotFound: 404, Conflict: 409, Invalid: 422}


async def refused(request: Request, exc: DomainError) -> Response:
    """A service's refusal, as the status that says the same."""
    return error_response(request.url.path, REFUSAL_STATUS.get(type(exc), 409), str(exc))


def allowed_methods(app: FastAPI, scope: Any) -> set[str]:
    """Every method some route serves at this path (Starlette's own 405 names one route's)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(scope)
        route_methods = getattr(route, "methods", None)
        if match != Match.NONE and route_methods:
            methods |= set(route_methods)
    return methods


async def unstorable(request: Request, exc: Exception) -> Response:
    """Last line of defence, found by tests/test_fuzz_api.py: a value that passed validation but
    that the store cannot hold (an integer past its column's range, a NUL byte in PostgreSQL text,
    null into a required column) is the request's fault: a 422 saying so, never a 500."""
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    log.warning("%s %s: the store rejected a value: %s", request.method, request.url.path, reason)
    message = f"a value in the request cannot be stored: {excerpt(reason, 200)}"
    return error_response(request.url.path, 422, message)


async def overloaded(request: Request, exc: EncoderOverloaded) -> Response:
    metrics.record_rejection("overloaded")
    message = f"the router is overloaded ({exc}); retry shortly"
    return error_response(request.url.path, 503, message, {"Retry-After": "1"})


async def database_down(request: Request, exc: OperationalError) -> Response:
    log.error("database unavailable: %s", type(exc.orig).__name__)
    message = "the database is unavailable; retry shortly"
    return error_response(request.url.path, 503, message, {"Retry-After": "2"})


async def internal_error(request: Request, exc: Exception) -> Response:
    """A bug: the client gets a short 500 in the API's error shape; the server logs the traceback
    (with its messages scrubbed, see api/logging.py)."""
    return error_response(request.url.path, 500, "internal error; it has been logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(DomainError, refused)  # type: ignore[arg-type]
    app.add_exception_handler(OperationalError, database_down)  # type: ignore[arg-type]
    app.add_exception_handler(EncoderOverloaded, overloaded)  # type: ignore[arg-type]
    for kind in (DataError, IntegrityError, OverflowError):
        app.add_exception_handler(kind, unstorable)
    app.add_exception_handler(Exception, internal_error)
