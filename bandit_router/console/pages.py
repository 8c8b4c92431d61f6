"""The console's routes: check the session, parse the request, call console/service.py, render.

Every route is left out of /openapi.json: the console is HTML for people, not part of the API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from bandit_router.console import service
from bandit_router.console.session import COOKIE, Signer, console_key, login_key, same_origin
from bandit_router.runtime import Runtime
from bandit_router.services.audits import Grader
from bandit_router.services.keys import KeyInfo

PREFIX = "/console"
router = APIRouter(prefix=PREFIX, include_in_schema=False)
templates = Jinja2Templates(directory=str(files("bandit_router.console") / "templates"))


def when(moment: datetime | None) -> str:
    """Times to the second, in UTC (the store's times are UTC; SQLite hands them back naive)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "–"


templates.env.filters["when"] = when


def _rt(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def render(
    request: Request, name: str, key: KeyInfo | None, status: int = 200, **ctx: Any
) -> Response:
    ctx.update(key=key, msg=request.query_params.get("msg"), err=request.query_params.get("err"))
    return templates.TemplateResponse(request, name, ctx, status_code=status)


def back(path: str, *, msg: str | None = None, err: str | None = None) -> RedirectResponse:
    """Post/redirect/get: the page again, with what happened in the query string."""
    note = f"?msg={quote(msg)}" if msg else f"?err={quote(err)}" if err else ""
    return RedirectResponse(f"{PREFIX}{path}{note}", status_code=303)


def gate(request: Request, role: str) -> KeyInfo | Response:
    """The session's key if it may see a page needing `role`; else the login page, or a 403."""
    key = console_key(request)
    if key is None:
        return RedirectResponse(f"{PREFIX}/login", status_code=303)
    if role == "admin" and key.role != "admin":
        return render(request, "forbidden.html", key, status=403)
    return key


async def form(request: Request) -> dict[str, str]:
    """The urlencoded body (parsed here: the console's forms need no multipart parser)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def refused(request: Request) -> Response:
    return HTMLResponse("cross-site request refused", status_code=403)


# --- login ------------------------------------------------------------------------------------


@router.get("")
def home(request: Request) -> Response:
    key = console_key(request)
    if key is None:
        return RedirectResponse(f"{PREFIX}/login", status_code=303)
    return RedirectResponse(
        f"{PREFIX}/overview" if key.role == "admin" else f"{PREFIX}/workbench", status_code=303
    )


@router.get("/login")
def login_page(request: Request) -> Response:
    return render(request, "login.html", None)


@router.post("/login")
async def login(request: Request) -> Response:
    if not same_origin(request):
        return refused(request)
    given = (await form(request)).get("key", "")
    key = login_key(request, given)
    if key is None:
        return render(
            request,
            "login.html",
            None,
            status=401,
            error="unknown, revoked or not an admin or grader key",
        )
    response = RedirectResponse(PREFIX, status_code=303)
    response.set_cookie(
        COOKIE,
        request.app.state.console_signer.issue(given.strip()),
        max_age=int(request.app.state.console_signer.max_age),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=PREFIX,
    )
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    if not same_origin(request):
        return refused(request)
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


# --- admin pages ------------------------------------------------------------------------------


def admin_page(
    request: Request, template: str, page: str, build: Callable[[Runtime], dict[str, Any]]
) -> Response:
    """An admin-only page: the session is checked before anything is read."""
    key = gate(request, "admin")
    if isinstance(key, Response):
        return key
    return render(request, template, key, page=page, **build(_rt(request)))


async def act(
    request: Request,
    role: str,
    path: str,
    action: Callable[[KeyInfo], Any],
    done: Callable[[Any], str],
) -> Response:
    """A state change: session and origin checked, the service called off the event loop, then
    back to the page with what happened (or the service's refusal)."""
    key = gate(request, role)
    if isinstance(key, Response):
        return key
    if not same_origin(request):
        return refused(request)
    try:
        result = await run_in_threadpool(action, key)
    except service.ActionError as exc:
        return back(path, err=str(exc))
    return back(path, msg=done(result))


@router.get("/overview")
def overview(request: Request, window: str = service.DEFAULT_WINDOW) -> Response:
    return admin_page(request, "overview.html", "overview", lambda rt: service.overview(rt, window))


@router.get("/policies")
def policies(request: Request) -> Response:
    return admin_page(
        request, "policies.html", "policies", lambda rt: {"policies": service.policies(rt)}
    )


@router.post("/policies/{version}/activate")
async def activate(request: Request, version: int) -> Response:
    return await act(
        request,
        "admin",
        "/policies",
        lambda _: service.activate(_rt(request), version),
        lambda _: f"policy version {version} is now active",
    )


@router.get("/bias")
def bias(request: Request) -> Response:
    return admin_page(request, "bias.html", "bias", service.bias)


@router.get("/models")
def models(request: Request, window: str = service.DEFAULT_WINDOW) -> Response:
    return admin_page(request, "models.html", "models", lambda rt: service.models(rt, window))


def _model_changes(fields: dict[str, str]) -> dict[str, Any]:
    """What a models-page form asks for: enable, disable, or new prices (numbers as typed)."""
    action = fields.get("action")
    if action in ("enable", "disable"):
        return {"enabled": action == "enable"}
    changes: dict[str, Any] = {}
    for name in ("input_price", "output_price", "expected_output_tokens"):
        if fields.get(name, "").strip():
            try:
                changes[name] = float(fields[name])
            except ValueError:
                changes[name] = fields[name]  # the API's validation says what is wrong
    return changes


@router.post("/models/{name:path}")
async def change_model(request: Request, name: str) -> Response:
    changes = _model_changes(await form(request))
    return await act(
        request,
        "admin",
        "/models",
        lambda _: service.change_model(_rt(request), name, changes),
        lambda _: f"{name} updated",
    )


@router.get("/decisions")
def find_decision(request: Request, id: str = "") -> Response:
    key = gate(request, "admin")
    if isinstance(key, Response):
        return key
    return RedirectResponse(f"{PREFIX}/decisions/{quote(id.strip(), safe='')}", status_code=303)


@router.get("/decisions/{decision_id}")
def decision(request: Request, decision_id: str) -> Response:
    key = gate(request, "admin")
    if isinstance(key, Response):
        return key
    found = service.decision(_rt(request), decision_id)
    if found is None:
        return render(request, "missing.html", key, status=404, what=f"decision {decision_id}")
    return render(request, "decision.html", key, page="decision", **found)


# --- the audit workbench ----------------------------------------------------------------------


def _grader(key: KeyInfo) -> Grader:
    return service.grader(key.prefix, key.name)


@router.get("/workbench")
def workbench(request: Request) -> Response:
    key = gate(request, "grader")
    if isinstance(key, Response):
        return key
    data = service.workbench(_rt(request), _grader(key))
    show_model = request.query_params.get("show_model") == "1"
    return render(request, "workbench.html", key, page="workbench", show_model=show_model, **data)


@router.post("/workbench/claim")
async def claim(request: Request) -> Response:
    size = (await form(request)).get("limit", "")
    limit = int(size) if size.strip().isdigit() else 10
    return await act(
        request,
        "grader",
        "/workbench",
        lambda key: service.claim(_rt(request), _grader(key), limit),
        lambda n: f"claimed {n} item(s)" if n else "the queue is empty",
    )


def _grade_fields(fields: dict[str, str]) -> tuple[float | None, bool | None]:
    """A score in [0, 1] typed by the grader, or a pass/fail button."""
    if fields.get("verdict") in ("pass", "fail"):
        return None, fields["verdict"] == "pass"
    return float(fields.get("score", "")), None


@router.post("/workbench/grade")
async def grade(request: Request) -> Response:
    fields = await form(request)
    decision_id = fields.get("decision_id", "")
    try:
        verdict = _grade_fields(fields)
    except ValueError:
        return back("/workbench", err="give a score between 0 and 1, or pass / fail")
    rubric, comment = fields.get("rubric", "").strip(), fields.get("comment", "").strip()
    return await act(
        request,
        "grader",
        "/workbench",
        lambda key: service.grade(
            _rt(request), _grader(key), decision_id, verdict, rubric or None, comment or None
        ),
        lambda _: f"graded {decision_id[:12]}",
    )


def install(app: FastAPI) -> None:
    """Mount the console's pages and its vendored assets (nothing is loaded from elsewhere)."""
    app.state.console_signer = Signer.from_settings(app.state.settings)
    static = StaticFiles(directory=str(files("bandit_router.console") / "static"))
    app.mount(f"{PREFIX}/static", static, name="console-static")
    app.include_router(router)
