"""A fake OpenAI-compatible upstream: a real HTTP server on a loopback port that answers, streams,
fails with 500, refuses with 400 or hangs, depending on the URL it is given. The one stand-in the
tests use: the service itself always runs for real."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class FakeUpstream:
    port: int = 0
    calls: list[dict[str, Any]] = field(default_factory=list)

    def url(self, behaviour: str) -> str:
        return f"http://127.0.0.1:{self.port}/{behaviour}/v1"

    def calls_to(self, behaviour: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["behaviour"] == behaviour]


def _completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": f"hi from {model}"}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }


async def _sse(model: str) -> AsyncIterator[bytes]:
    for word in ("soft", "rain", "falls"):
        chunk = {"model": model, "choices": [{"index": 0, "delta": {"content": word}}]}
        yield f"data: {json.dumps(chunk)}\n\n".encode()
        await asyncio.sleep(0.01)
    yield b"data: [DONE]\n\n"


def _fake_app(state: FakeUpstream) -> Starlette:
    async def chat(request: Request) -> Response:
        behaviour = request.path_params["behaviour"]
        body = await request.json()
        state.calls.append(
            {"behaviour": behaviour, "auth": request.headers.get("authorization"), "body": body}
        )
        if behaviour == "fail":
            return JSONResponse({"error": {"message": "upstream exploded"}}, 500)
        if behaviour == "reject":
            return JSONResponse({"error": {"message": "bad parameter: temperature"}}, 400)
        if behaviour == "hang":
            await asyncio.sleep(3)
        if body.get("stream"):
            return StreamingResponse(_sse(body["model"]), media_type="text/event-stream")
        return JSONResponse(_completion(body["model"]))

    return Starlette(routes=[Route("/{behaviour}/v1/chat/completions", chat, methods=["POST"])])


@contextmanager
def serving_in_thread(app: Any, **config: Any) -> Iterator[int]:
    """An ASGI app under uvicorn in a thread of this process, on a free loopback port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def running_upstream() -> Iterator[FakeUpstream]:
    state = FakeUpstream()
    app = _fake_app(state)
    with serving_in_thread(app, lifespan="off", timeout_graceful_shutdown=1) as port:
        state.port = port
        yield state


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there: connection refused
