"""/openapi.json as the service really behaves, and the docs pages served without a CDN.

FastAPI's generated schema is completed here with what it cannot see: the authentication (checked
in a middleware), the errors every operation can answer with (401/403/413/422/429/503 in the
API's own error shape), links between operations (a decision id leads to its feedback), and the
rules that depend on the running service: which model names a request may name (the pool now)
and which environment variables an upstream key may come from (the settings)."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from bandit_router.api.errors import ErrorBody
from bandit_router.config import UPSTREAM_KEY_PREFIX, Settings

ERROR = {"$ref": "#/components/schemas/ErrorBody"}
RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
OPEN_PATHS = frozenset({"/healthz", "/metrics", "/openapi.json"})
DOCS_PREFIX = "/docs"  # every path under it is open: the pages and their assets
CONSOLE_PREFIX = "/console"
KEY_ENV_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"  # api/schemas.py's KeyEnv, narrowed per settings
SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key from `bandit-router keys create` (brk_...)",
    },
    "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": ERROR}},
    }
    if headers:
        out["headers"] = headers
    return out


GUARDED = {
    "401": _error("no valid API key (missing, unknown or revoked)"),
    "403": _error("the key's role may not call this"),
    "429": _error("the key's rate limit is spent", RETRY_AFTER),
}
EVERYWHERE = {
    "413": _error("the request body is larger than MAX_BODY_BYTES"),
    "503": _error("the database is unreachable, or the router is overloaded", RETRY_AFTER),
}

# (path, method, status) -> links to operations that take what the answer holds.
LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, dict[str, Any]]]] = {
    ("/v1/route", "post", "200"): {
        "GetDecision": (
            "/v1/decisions/{decision_id}",
            "get",
            {"parameters": {"decision_id": "$response.body#/decision_id"}},
        ),
        "SendFeedback": (
            "/v1/feedback",
            "post",
            {"requestBody": {"decision_id": "$response.body#/decision_id"}},
        ),
    },
    ("/v1/chat/completions", "post", "200"): {
        "GetDecision": (
            "/v1/decisions/{decision_id}",
            "get",
            {"parameters": {"decision_id": "$response.header.x-bandit-router-decision-id"}},
        ),
    },
    ("/v1/admin/models", "post", "201"): {
        "GetModel": (
            "/v1/admin/models/{name}",
            "get",
            {"parameters": {"name": "$response.body#/name"}},
        ),
        "PatchModel": (
            "/v1/admin/models/{name}",
            "patch",
            {"parameters": {"name": "$response.body#/name"}},
        ),
    },
    ("/v1/admin/jobs/{kind}", "post", "202"): {
        "GetJob": (
            "/v1/admin/jobs/{job_id}",
            "get",
            {"parameters": {"job_id": "$response.body#/id"}},
        ),
    },
    ("/v1/admin/policies/{version}/activate", "post", "200"): {
        "GetPolicy": (
            "/v1/admin/policies/{version}",
            "get",
            {"parameters": {"version": "$response.body#/id"}},
        ),
    },
}


def install(app: FastAPI, settings: Settings) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _complete(app, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    _docs(app)


def is_open(path: str) -> bool:
    """Paths that need no key."""
    return (
        path in OPEN_PATHS
        or path == DOCS_PREFIX
        or path.startswith(DOCS_PREFIX + "/")
        or (path == "/redoc")
        # The console checks its own session cookie (console/session.py), not an API key.
        or path == CONSOLE_PREFIX
        or path.startswith(CONSOLE_PREFIX + "/")
    )


def _complete(app: FastAPI, settings: Settings) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    components = schema.setdefault("components", {})
    components["securitySchemes"] = SECURITY_SCHEMES
    found = components.setdefault("schemas", {})
    error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    found.update(error_schema.pop("$defs", {}))
    found["ErrorBody"] = error_schema
    for name in ("HTTPValidationError", "ValidationError"):
        found.pop(name, None)
    for path, item in schema["paths"].items():
        for op in item.values():
            _complete_operation(path, op)
    _links(schema)
    _key_env_rule(found, settings)
    return schema


def _complete_operation(path: str, op: dict[str, Any]) -> None:
    responses = op.setdefault("responses", {})
    if "422" in responses or op.get("requestBody") or op.get("parameters"):
        responses["422"] = _error("the request is malformed; `errors` lists each problem")
    if not is_open(path):
        op["security"] = [{"bearer": []}, {"apiKey": []}]
        for status, answer in GUARDED.items():
            responses.setdefault(status, answer)
    for status, answer in EVERYWHERE.items():
        responses.setdefault(status, answer)
    for answer in responses.values():  # FastAPI's own error models are replaced by ErrorBody
        json_body = answer.get("content", {}).get("application/json", {})
        if json_body.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
            json_body["schema"] = ERROR


def _links(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    for (path, method, status), links in LINKS.items():
        answer = paths[path][method]["responses"][status]
        answer["links"] = {
            name: {"operationId": paths[target][verb]["operationId"], **values}
            for name, (target, verb, values) in links.items()
        }


def _key_env_rule(found: dict[str, Any], settings: Settings) -> None:
    """api_key_env: a BANDIT_ROUTER_UPSTREAM_KEY_* name or one listed (services/pool.py)."""
    listed = "".join(f"|{name}" for name in sorted(settings.upstream_key_envs))
    pattern = f"^({UPSTREAM_KEY_PREFIX}[A-Za-z0-9_]+{listed})$"
    for model in ("ModelIn", "ModelPatch"):
        for node in _branches(found[model]["properties"]["api_key_env"]):
            if node.get("pattern") == KEY_ENV_PATTERN:
                node["pattern"] = pattern


def _branches(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *node.get("anyOf", [])]


def _docs(app: FastAPI) -> None:
    """Swagger UI and ReDoc from the assets the fastapi-offline package ships: nothing is
    fetched from a CDN, so the pages work on a machine with no Internet."""
    assets = f"{DOCS_PREFIX}/assets"
    app.mount(
        assets, StaticFiles(directory=str(files("fastapi_offline") / "static")), "docs-assets"
    )

    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{DOCS_PREFIX}/oauth2-redirect",
            swagger_js_url=f"{root}{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{assets}/swagger-ui.css",
            swagger_favicon_url=f"{root}{assets}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    async def redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}/openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{assets}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{assets}/favicon.png",
            with_google_fonts=False,
        )

    app.add_api_route(DOCS_PREFIX, swagger, methods=["GET"], include_in_schema=False)
    app.add_api_route(
        f"{DOCS_PREFIX}/oauth2-redirect", redirect, methods=["GET"], include_in_schema=False
    )
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
