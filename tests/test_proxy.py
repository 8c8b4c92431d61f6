"""The OpenAI-compatible proxy against a fake upstream (tests/fake_upstream.py): a real HTTP server
on a loopback port that answers, streams, fails with 500, refuses with 400 or hangs, depending on
the URL it is given."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import SECRET_ENV

from bandit_router.api.proxy import (
    StreamLength,
    Upstream,
    UpstreamFailed,
    answer_tokens,
    fallback_order,
    forward,
)
from bandit_router.config import load_settings
from bandit_router.policy.decide import Choice
from bandit_router.policy.pool import ModelSpec
from bandit_router.store.proxy_log import served_by

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
CHAT = {"model": "router", "messages": [{"role": "user", "content": "Write a haiku about rain."}]}


def test_forwards_to_the_chosen_model(client, upstream, wire) -> None:  # type: ignore[no-untyped-def]
    wire(strong="ok", mid="ok")  # cheap has no base_url: it cannot be proxied
    body = {**CHAT, "temperature": 0.2}
    r = client.post(
        "/v1/chat/completions", json=body, headers={"Authorization": "Bearer brk_callers_own"}
    )
    assert r.status_code == 200, r.text
    served = r.headers["x-bandit-router-model"]
    decision_id = r.headers["x-bandit-router-decision-id"]
    assert served in {"strong", "mid"}
    assert r.json()["choices"][0]["message"]["content"] == f"hi from {served}"

    (call,) = upstream.calls
    assert call["body"] == {**body, "model": served}  # forwarded as is, model replaced
    assert call["auth"] == "Bearer sk-upstream-secret"  # the model's key, never the caller's

    decision = client.get(f"/v1/decisions/{decision_id}").json()
    assert decision["chosen_model"] == served
    assert {c["model"] for c in decision["candidates"]} == {"strong", "mid"}
    assert decision["proxy"]["served_model"] == served
    assert decision["proxy"]["attempts"] == [{"model": served, "status": 200}]
    assert decision["proxy"]["output_tokens"] == 3  # the upstream's usage count
    fb = {"decision_id": decision_id, "type": "thumbs", "value": "up"}
    assert client.post("/v1/feedback", json=fb).status_code == 201


@SQLITE_ONLY
def test_streams_server_sent_events(client, wire) -> None:  # type: ignore[no-untyped-def]
    wire(strong="ok", mid="ok", cheap="ok")
    with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        served = r.headers["x-bandit-router-model"]
        assert r.headers["x-bandit-router-decision-id"]
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    words = [
        json.loads(e.removeprefix("data: "))["choices"][0]["delta"]["content"] for e in events[:-1]
    ]
    assert words == ["soft", "rain", "falls"]
    assert json.loads(events[0].removeprefix("data: "))["model"] == served
    # Its length, counted as it passed through ("softrainfalls": 13 characters / 4), is written
    # after the stream ended.
    decision_id = r.headers["x-bandit-router-decision-id"]
    deadline = time.monotonic() + 5
    while client.get(f"/v1/decisions/{decision_id}").json()["proxy"]["output_tokens"] is None:
        assert time.monotonic() < deadline, "the stream's length was never recorded"
        time.sleep(0.02)
    assert client.get(f"/v1/decisions/{decision_id}").json()["proxy"]["output_tokens"] == 3


@SQLITE_ONLY
@pytest.mark.parametrize("stream", [False, True])
def test_falls_back_to_the_next_best_candidate(client, runtime, wire, stream) -> None:  # type: ignore[no-untyped-def]
    wire(strong="fail", mid="down", cheap="ok")
    fallbacks, ids = 0, []
    for _ in range(12):  # the policy explores: some decisions choose a failing model
        r = client.post(
            "/v1/chat/completions", json={**CHAT, "model": "router:quality", "stream": stream}
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-bandit-router-model"] == "cheap"
        ids.append(r.headers["x-bandit-router-decision-id"])
        decision = client.get(f"/v1/decisions/{ids[-1]}").json()
        attempts = decision["proxy"]["attempts"]
        assert attempts[0]["model"] == decision["chosen_model"]
        assert attempts[-1] == {"model": "cheap", "status": 200}
        assert decision["proxy"]["served_model"] == "cheap"
        if decision["chosen_model"] != "cheap":
            fallbacks += 1
            errors = {a["model"]: a["error"] for a in attempts[:-1]}
            assert errors.get("strong", "HTTP 500") == "HTTP 500"
            assert "ConnectError" in errors.get("mid", "ConnectError")
        if fallbacks >= 2:
            break
    assert fallbacks >= 1, "no decision chose a failing model (probability < 1e-5)"
    not_proxied = client.post("/v1/route", json={"prompt": "hi"}).json()["decision_id"]
    with runtime.engine.connect() as conn:
        assert served_by(conn, [*ids, not_proxied]) == dict.fromkeys(ids, "cheap")


@SQLITE_ONLY
def test_all_upstreams_failing_is_a_502_saying_why(client, wire, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    wire(strong="fail", mid="down", cheap="ok")
    monkeypatch.delenv(SECRET_ENV)
    r = client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 502
    detail = r.json()["detail"]
    assert "no upstream model answered" in detail
    assert f"api_key_env {SECRET_ENV} is not set" in detail
    decision_id = r.headers["x-bandit-router-decision-id"]
    answer = client.get(f"/v1/decisions/{decision_id}").json()["proxy"]
    assert answer["served_model"] is None and answer["status"] == 502
    assert len(answer["attempts"]) == 3


@SQLITE_ONLY
def test_client_errors_pass_through_without_fallback(client, upstream, wire) -> None:  # type: ignore[no-untyped-def]
    wire(strong="reject", mid="reject", cheap="reject")
    r = client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "bad parameter: temperature"
    assert r.headers["x-bandit-router-model"] in {"strong", "mid", "cheap"}
    assert len(upstream.calls) == 1


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({**CHAT, "model": "gpt-4o"}, 422, "'model' must be 'router'"),
        ({**CHAT, "model": "router:fastest"}, 422, "preset"),
        ({**CHAT, "model": "router:lambda=-1"}, 422, "lambda"),
        ({"model": "router"}, 422, "messages: Field required"),
        ({"model": "router", "messages": []}, 422, "at least 1 item"),
        ({"model": "router", "messages": [{"role": "user", "content": "  "}]}, 422, "no user"),
        ({**CHAT, "messages": [{"role": "system", "content": "Be brief."}]}, 422, "no user"),
        ([1, 2], 422, "valid dictionary"),
        (CHAT, 502, "no enabled model has a base_url"),
    ],
)
def test_bad_requests_and_unproxyable_pool(client, body, status, message) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    assert r.json()["error"]["message"] == r.json()["detail"]  # what OpenAI SDKs show


@SQLITE_ONLY
def test_lambda_in_the_model_name(client, wire) -> None:  # type: ignore[no-untyped-def]
    wire(strong="ok", mid="ok", cheap="ok")
    r = client.post("/v1/chat/completions", json={**CHAT, "model": "router:lambda=0.5"})
    assert r.status_code == 200, r.text
    decision = client.get(f"/v1/decisions/{r.headers['x-bandit-router-decision-id']}").json()
    assert decision["lambda"] == 0.5


def test_fallback_order_is_by_score() -> None:
    choice = Choice(
        models=["a", "b", "c", "d"],
        quality=np.zeros(4),
        cost_usd=np.zeros(4),
        cost_norm=np.zeros(4),
        score=np.array([0.1, 0.9, 0.5, 0.7]),
        pmf=np.full(4, 0.25),
        chosen=2,
    )
    assert fallback_order(choice, 4) == ["c", "b", "d", "a"]
    assert fallback_order(choice, 2) == ["c", "b"]


def test_a_hanging_upstream_times_out_as_a_fallback_worthy_failure(upstream) -> None:  # type: ignore[no-untyped-def]
    spec = ModelSpec("m", 1.0, 1.0, 10, base_url=upstream.url("hang"))

    async def call() -> None:
        async with httpx.AsyncClient(timeout=0.3) as http:
            upstream = Upstream(http, 1, load_settings())
            await forward(upstream, spec, {"model": "m", "messages": []}, stream=False)

    with pytest.raises(UpstreamFailed, match="timed out"):
        asyncio.run(call())


@pytest.mark.parametrize(
    ("status", "body", "stream", "tokens"),
    [
        (200, {"usage": {"completion_tokens": 7}, "choices": []}, False, 7),
        (200, {"choices": [{"message": {"content": "x" * 40}}]}, False, 10),  # no usage: chars / 4
        (200, {"usage": {"completion_tokens": 7}}, True, None),  # a stream is never held whole
        (500, {"error": {"message": "boom"}}, False, None),
        (200, {"choices": [{"message": {"content": None}}]}, False, None),
    ],
)
def test_answer_length(status: int, body: dict[str, Any], stream: bool, tokens: int | None) -> None:
    response = httpx.Response(status, json=body)
    assert answer_tokens(response, stream, chars_per_token=4.0) == tokens
    assert answer_tokens(httpx.Response(200, text="not json"), False, 4.0) is None


def test_stream_length_counts_events_split_anywhere() -> None:
    def chunk(text: str) -> str:
        return "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]})

    sse = "\n\n".join([chunk("x" * 10), ": a comment", "data: not json", chunk("y" * 6)]) + "\n\n"
    length = StreamLength(chars_per_token=4.0)
    raw = (sse + "data: [DONE]\n\n").encode()
    for i in range(0, len(raw), 7):  # events cut across chunk boundaries
        length.feed(raw[i : i + 7])
    assert (length.chars, length.tokens()) == (16, 4)
    # A final usage chunk (stream_options.include_usage) is the upstream's own count: it wins.
    length.feed(b'data: {"choices": [], "usage": {"completion_tokens": 9}}\n\n')
    assert length.tokens() == 9


@pytest.fixture
def served(settings, runtime):  # type: ignore[no-untyped-def]
    """The app on a real loopback port (the OpenAI SDK speaks HTTP, not ASGI)."""
    from fake_upstream import serving_in_thread

    from bandit_router.app import create_app

    with serving_in_thread(create_app(settings, runtime)) as port:
        yield f"http://127.0.0.1:{port}/v1"


def decision_count(runtime) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from bandit_router.store.models import Decision

    with runtime.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Decision)).scalar_one())


@SQLITE_ONLY
def test_the_openai_sdk_retrying_a_502_logs_one_decision(served, runtime, wire) -> None:  # type: ignore[no-untyped-def]
    import openai

    wire(strong="fail", mid="down", cheap="fail")
    client = openai.OpenAI(base_url=served, api_key="unused", max_retries=2)
    before = decision_count(runtime)
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="router", messages=CHAT["messages"])
    assert failed.value.status_code == 502
    assert decision_count(runtime) == before + 1  # three tries, one decision
    decision_id = failed.value.response.headers["x-bandit-router-decision-id"]
    answer = client.get(f"/decisions/{decision_id}", cast_to=dict)["proxy"]
    assert answer["status"] == 502 and len(answer["attempts"]) == 9  # 3 tries x 3 models

    # Once an upstream is back, a retry with the same Idempotency-Key answers the same decision.
    wire(strong="fail", mid="down", cheap="ok")
    keyed = {"Idempotency-Key": "order-17"}
    first = client.chat.completions.with_raw_response.create(
        model="router:quality", messages=CHAT["messages"], extra_headers=keyed
    )
    again = client.chat.completions.with_raw_response.create(
        model="router:quality", messages=CHAT["messages"], extra_headers=keyed
    )
    assert (
        first.headers["x-bandit-router-decision-id"] == again.headers["x-bandit-router-decision-id"]
    )
    assert again.parse().choices[0].message.content == "hi from cheap"
    assert decision_count(runtime) == before + 2
    with pytest.raises(openai.ConflictError, match="already used for a different request body"):
        client.chat.completions.create(
            model="router:cost", messages=CHAT["messages"], extra_headers=keyed
        )
    assert decision_count(runtime) == before + 2


@SQLITE_ONLY
def test_a_retry_header_reuses_only_the_same_callers_same_body(client, runtime, wire) -> None:  # type: ignore[no-untyped-def]
    wire(strong="ok", mid="ok", cheap="ok")

    def ask(body: dict[str, Any], retry: str) -> str:
        r = client.post(
            "/v1/chat/completions", json=body, headers={"x-stainless-retry-count": retry}
        )
        assert r.status_code == 200, r.text
        return r.headers["x-bandit-router-decision-id"]

    first = ask(CHAT, "0")
    assert ask(CHAT, "1") == first  # the SDK's retry of the same body
    assert ask(CHAT, "0") != first  # a new request that happens to say the same
    other = {**CHAT, "temperature": 0.1}
    assert ask(other, "1") != first  # a retry of something never seen: a new decision
