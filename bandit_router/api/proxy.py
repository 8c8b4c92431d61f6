"""OpenAI-compatible `POST /v1/chat/completions`: route the conversation like /v1/route, forward
the request to the chosen model's upstream, and fall back to the next-best candidate when that
upstream fails (connect error, timeout, 429, 5xx). Streams (SSE) pass through as they arrive."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.exc import IntegrityError

from bandit_router import telemetry as metrics
from bandit_router.api.auth import request_key
from bandit_router.api.deps import get_runtime
from bandit_router.api.errors import ErrorBody
from bandit_router.api.schemas import ChatRequest
from bandit_router.api.strict_json import StrictJSONRoute
from bandit_router.config import Settings
from bandit_router.runtime import Runtime
from bandit_router.services.pool import key_env_refused
from bandit_router.services.proxy import (
    RETRY_HEADER,
    KeyReused,
    ProxyCall,
    proxy_call,
)
from bandit_router.services.routing import Choice, ModelSpec, Routed, select_candidates

log = logging.getLogger(__name__)
router = APIRouter(tags=["proxy"], route_class=StrictJSONRoute)

DECISION_HEADER = "x-bandit-router-decision-id"
MODEL_HEADER = "x-bandit-router-model"


@dataclass(frozen=True)
class Upstream:
    """What the proxy holds for the life of the process: one pooled HTTP client."""

    client: httpx.AsyncClient
    max_attempts: int
    settings: Settings


@contextlib.asynccontextmanager
async def upstream_client(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    seconds = settings.proxy_timeout_seconds
    timeout = httpx.Timeout(seconds, connect=min(5.0, seconds))
    async with httpx.AsyncClient(timeout=timeout) as client:
        app.state.upstream = Upstream(client, settings.proxy_max_attempts, settings)
        yield


class UpstreamFailed(Exception):
    """An upstream attempt worth retrying on another model."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- from the OpenAI request to a routing request -----------------------------------------------


def proxyable(candidates: list[ModelSpec]) -> list[ModelSpec]:
    """Only models with an upstream are offered to the policy, so the logged probabilities are
    over what could actually answer."""
    out = [m for m in candidates if m.base_url]
    if not out:
        raise HTTPException(
            502,
            "no enabled model has a base_url to forward to: set one in the pool file or with "
            "PATCH /v1/admin/models/{name}",
        )
    return out


def fallback_order(choice: Choice, limit: int) -> list[str]:
    """The chosen model first, then the other candidates by the decision's scores, best first."""
    others = sorted(
        (i for i in range(len(choice.models)) if i != choice.chosen),
        key=lambda i: -float(choice.score[i]),
    )
    return [choice.models[i] for i in (choice.chosen, *others)][:limit]


# --- talking to upstreams -----------------------------------------------------------------------


def upstream_headers(spec: ModelSpec, settings: Settings) -> dict[str, str]:
    if not spec.api_key_env:
        return {}  # e.g. a local vLLM or Ollama server without keys
    refused = key_env_refused(spec.api_key_env, settings)  # e.g. stored before the allow-list
    if refused:
        raise UpstreamFailed(refused)
    secret = os.environ.get(spec.api_key_env)
    if not secret:
        raise UpstreamFailed(f"its api_key_env {spec.api_key_env} is not set in the environment")
    return {"Authorization": f"Bearer {secret}"}


async def forward(
    upstream: Upstream, spec: ModelSpec, payload: dict[str, Any], stream: bool
) -> httpx.Response:
    """Send to one upstream. A non-streamed answer is read here, so a timeout while reading it
    is still a failure that can fall back; a stream is returned once its headers arrived."""
    assert spec.base_url is not None
    url = spec.base_url.rstrip("/") + "/chat/completions"
    try:
        headers = upstream_headers(spec, upstream.settings)
        request = upstream.client.build_request("POST", url, json=payload, headers=headers)
        response = await upstream.client.send(request, stream=True)
    except httpx.TimeoutException:
        raise UpstreamFailed("timed out") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # a bad base_url is this model's failure
        raise UpstreamFailed(f"{type(exc).__name__}: {exc}") from None
    if response.status_code == 429 or response.status_code >= 500:
        await response.aclose()
        raise UpstreamFailed(f"HTTP {response.status_code}")
    if not stream:
        try:
            await response.aread()
        except httpx.HTTPError as exc:
            await response.aclose()
            raise UpstreamFailed(f"reading the answer: {type(exc).__name__}") from None
    return response


async def first_answer(
    upstream: Upstream, specs: dict[str, ModelSpec], routed: Routed, body: dict[str, Any]
) -> tuple[str | None, httpx.Response | None, list[dict[str, Any]]]:
    """Try the chosen model, then the fallbacks: (who answered, the answer, every attempt)."""
    stream = body.get("stream") is True
    attempts: list[dict[str, Any]] = []
    # A retried decision's candidates may have lost their upstream since: only those left count.
    order = [n for n in fallback_order(routed.choice, len(routed.choice.models)) if n in specs]
    for name in order[: upstream.max_attempts]:
        try:
            response = await forward(upstream, specs[name], {**body, "model": name}, stream)
        except UpstreamFailed as exc:
            log.warning("upstream %s failed: %s", name, exc.reason)
            metrics.record_upstream(name, "failed")
            attempts.append({"model": name, "error": exc.reason})
            continue
        metrics.record_upstream(name, "answered")
        attempts.append({"model": name, "status": response.status_code})
        return name, response, attempts
    return None, None, attempts


def answer_tokens(response: httpx.Response, stream: bool, chars_per_token: float) -> int | None:
    """A whole answer's length in tokens: the upstream's usage count, else its text length /
    chars_per_token. None for a stream (counted as it passes, see StreamLength) or an answer
    that is not JSON."""
    if stream or not response.is_success:
        return None
    try:
        body = response.json()
        usage, chars = completion_tokens(body), None
        if usage is None:
            text = body["choices"][0]["message"]["content"]
            chars = len(text) if isinstance(text, str) else None
        return count_tokens(usage, chars, chars_per_token)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


def completion_tokens(body: dict[str, Any]) -> int | None:
    """The upstream's own count of an answer's tokens (OpenAI's usage block), if it gave one."""
    usage = (body.get("usage") or {}).get("completion_tokens")
    return usage if isinstance(usage, int) and usage >= 0 else None


def count_tokens(usage: int | None, chars: int | None, chars_per_token: float) -> int | None:
    """The upstream's count when there is one, else characters / chars_per_token."""
    if usage is not None:
        return usage
    return None if chars is None else round(chars / chars_per_token)


class StreamLength:
    """Counts a streamed answer's length from its server-sent events as they pass through: the
    upstream's usage count when it sends one (stream_options.include_usage), else the delta
    text's characters / chars_per_token."""

    def __init__(self, chars_per_token: float, keep_text: bool = False) -> None:
        self.chars_per_token = chars_per_token
        self.chars = 0
        self.usage: int | None = None
        self._pending = b""
        # The assembled answer, only for a decision whose text is kept (an audit's).
        self.parts: list[str] | None = [] if keep_text else None

    def feed(self, chunk: bytes) -> None:
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        for line in lines:
            if line.startswith(b"data: ") and line.strip() != b"data: [DONE]":
                self._event(line[6:])

    def _event(self, data: bytes) -> None:
        try:
            event = json.loads(data)
            usage = completion_tokens(event)
            if usage is not None:
                self.usage = usage
            for choice in event.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if isinstance(text, str):
                    self.chars += len(text)
                    self._keep(choice, text)
        except (ValueError, AttributeError, TypeError):
            pass  # not an OpenAI chunk: relayed all the same, just not counted

    def _keep(self, choice: dict[str, Any], text: str) -> None:
        if self.parts is not None and choice.get("index", 0) == 0:  # the first choice is graded
            self.parts.append(text)

    def tokens(self) -> int:
        return count_tokens(self.usage, self.chars, self.chars_per_token) or 0

    def text(self) -> str | None:
        return "".join(self.parts) if self.parts else None


async def _relay(
    response: httpx.Response, length: StreamLength, on_end: Callable[[StreamLength], None]
) -> AsyncIterator[bytes]:
    complete = False
    try:
        async for chunk in response.aiter_bytes():
            length.feed(chunk)
            yield chunk
        complete = True
    except httpx.HTTPError as exc:  # headers are sent: all we can do is end the stream
        log.warning("upstream stream broke off: %s", type(exc).__name__)
    finally:
        await response.aclose()
        if complete:  # a cut-off answer's length says nothing about the answer
            on_end(length)


def relay(
    rt: Runtime, response: httpx.Response, routed: Routed, served: str, stream: bool
) -> Response:
    decision_id = routed.decision_id
    headers = {DECISION_HEADER: decision_id, MODEL_HEADER: served}
    media_type = response.headers.get("content-type")
    keep = response.is_success and rt.proxy.keeps_text(routed)
    if stream:

        def record_end(length: StreamLength) -> None:
            rt.proxy.stream_ended(decision_id, length.tokens(), length.text())

        length = StreamLength(rt.settings.chars_per_token, keep_text=keep)
        return StreamingResponse(
            _relay(response, length, record_end), response.status_code, headers, media_type
        )
    return Response(response.content, response.status_code, headers, media_type)


def answer_text(response: httpx.Response) -> str | None:
    """The first choice's text of an OpenAI chat answer, if it is one."""
    try:
        text = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return text if isinstance(text, str) and text else None


async def keep_answer(rt: Runtime, routed: Routed, response: httpx.Response) -> None:
    """Keep an audited decision's whole answer for its grader (a stream's is kept as it ends)."""
    text = answer_text(response)
    if text is not None and response.is_success:
        await rt.proxy.keep_answer(routed, text)


# --- the endpoint -------------------------------------------------------------------------------


CHAT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the upstream's answer, as it sent it (a stream is text/event-stream)",
        "content": {"application/json": {"schema": {}}, "text/event-stream": {"schema": {}}},
        "headers": {
            DECISION_HEADER: {"schema": {"type": "string"}, "description": "for /v1/feedback"},
            MODEL_HEADER: {"schema": {"type": "string"}, "description": "who answered"},
        },
    },
    "4XX": {
        "description": "the upstream's own client error (a bad parameter), relayed as it is",
        "content": {"application/json": {"schema": {}}},
    },
    409: {
        "model": ErrorBody,
        "description": "the Idempotency-Key was used before with another body",
    },
    502: {
        "model": ErrorBody,
        "description": "no candidate has an upstream, or none answered (every error listed); "
        "the decision stays logged and a retry reuses it",
    },
}


@router.post("/v1/chat/completions", response_model=None, responses=CHAT_RESPONSES)
async def chat_completions(
    req: ChatRequest,
    request: Request,
    rt: Annotated[Runtime, Depends(get_runtime)],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=200,
            description="retries with the same key reuse the first try's decision",
        ),
    ] = None,
    retry_count: Annotated[
        str | None,
        Header(
            alias=RETRY_HEADER,
            max_length=20,
            description="sent by OpenAI's SDKs: a retry (> 0) of the same body reuses its decision",
        ),
    ] = None,
) -> Response:
    """`model`: 'router', 'router:<preset>' or 'router:lambda=<x>'; the rest is forwarded as is.
    The answer carries x-bandit-router-decision-id (for /v1/feedback) and x-bandit-router-model."""
    body: dict[str, Any] = await request.json()  # as sent: what is forwarded
    key = request_key(request.scope)
    call = proxy_call(key.prefix if key else "", idempotency_key, body, retry_count)
    routed, specs = await _decision_for(rt, call, req)
    served, response, attempts = await first_answer(request.app.state.upstream, specs, routed, body)
    if served is None or response is None:
        await rt.proxy.record_answer(routed.decision_id, None, 502, attempts)
        failures = "; ".join(f"{a['model']}: {a['error']}" for a in attempts) or (
            "none of its candidates has an upstream any more"
        )
        raise HTTPException(
            502,
            f"no upstream model answered (decision {routed.decision_id}): {failures}",
            headers={DECISION_HEADER: routed.decision_id},
        )
    stream = body.get("stream") is True
    tokens = answer_tokens(response, stream, rt.settings.chars_per_token)
    await rt.proxy.record_answer(routed.decision_id, served, response.status_code, attempts, tokens)
    if not stream:
        await keep_answer(rt, routed, response)
    return relay(rt, response, routed, served, stream)


async def _decision_for(
    rt: Runtime, call: ProxyCall, req: ChatRequest
) -> tuple[Routed, dict[str, ModelSpec]]:
    """The decision this request repeats, or a new one logged with the request's identity."""
    for _ in range(2):  # a concurrent twin may take the key between our look and our write
        earlier = await asyncio.to_thread(_earlier, rt, call)
        if earlier is not None:
            names, pool = earlier.choice.models, rt.pool
            return earlier, {n: pool[n] for n in names if n in pool and pool[n].base_url}
        route_req = req.route_request()
        snapshot = rt.snapshot
        candidates = proxyable(select_candidates(snapshot, route_req.models, route_req.exclude))
        try:
            routed = await rt.routing.route(
                route_req,
                candidates,
                snapshot,
                endpoint="proxy",
                record=rt.proxy.request_recorder(call),
            )
        except IntegrityError:
            if call.key is None:
                raise
            continue
        return routed, {m.name: m for m in candidates}
    raise HTTPException(409, "a request with this Idempotency-Key is being logged; retry")


def _earlier(rt: Runtime, call: ProxyCall) -> Routed | None:
    try:
        return rt.proxy.earlier(call)
    except KeyReused as exc:
        raise HTTPException(409, str(exc), headers={"x-should-retry": "false"}) from None
