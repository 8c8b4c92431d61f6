"""What Python's JSON parser takes but JSON is not (NaN, Infinity, -Infinity, 1e400, a lone
surrogate escape) and other hostile values, sent to every endpoint on SQLite and PostgreSQL: each
gets a short 4xx, nothing is stored, and the proxy logs no decision for a request it refuses."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from bandit_router.store.models import Decision

NOT_JSON = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]
SURROGATE = '"\\ud800"'  # the JSON text of a lone high surrogate
LOW_SURROGATE = '"abc\\udfff"'


def decisions(runtime: Any) -> int:
    with runtime.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Decision)).scalar_one())


def post_raw(client: Any, path: str, text: str, method: str = "POST") -> Any:
    return client.request(
        method, path, content=text.encode(), headers={"content-type": "application/json"}
    )


def assert_refused(r: Any, *words: str) -> None:
    assert r.status_code == 422, (r.request.url, r.status_code, r.text[:300])
    body = r.json()
    assert len(r.content) < 2000, len(r.content)  # a bounded answer, whatever was sent
    for word in words:
        assert word in body["detail"], body["detail"]


def bodies(did: str) -> list[tuple[str, str, str]]:
    """(method, path, JSON text with a {} where each hostile value goes)."""
    return [
        ("POST", "/v1/route", '{"prompt": "hi", "lambda": %s}'),
        ("POST", "/v1/route", '{"prompt": %s}'),
        ("POST", "/v1/route", '{"prompt": "hi", "anything": [1, {"x": %s}]}'),
        ("POST", "/v1/feedback", f'{{"decision_id": "{did}", "type": "reward", "value": %s}}'),
        (
            "POST",
            "/v1/feedback",
            f'{{"decision_id": "{did}", "type": "reward", "value": 0.5, "output_tokens": %s}}',
        ),
        ("POST", "/v1/feedback", '{"decision_id": %s, "type": "thumbs", "value": "up"}'),
        (
            "POST",
            "/v1/feedback",
            f'{{"decision_id": "{did}", "type": "pairwise", "value": "win", "other_model": %s}}',
        ),
        ("POST", "/v1/admin/models", '{"name": "x", "input_price": %s, "output_price": 1}'),
        ("POST", "/v1/admin/models", '{"name": %s, "input_price": 1, "output_price": 1}'),
        ("PATCH", "/v1/admin/models/strong", '{"output_price": %s}'),
        ("PATCH", "/v1/admin/models/strong", '{"base_url": %s}'),
        ("POST", "/v1/audits", f'{{"decision_id": "{did}", "score": %s, "grader_id": "g"}}'),
        ("POST", "/v1/audits/claim", '{"grader_id": %s, "limit": 3}'),
        ("POST", "/v1/audits/claim", '{"grader_id": "g", "limit": %s}'),
        (
            "POST",
            "/v1/chat/completions",
            '{"model": "router", "messages": [{"role": "user", "content": "hi"}], '
            '"temperature": %s}',
        ),
        (
            "POST",
            "/v1/chat/completions",
            '{"model": "router", "messages": [{"role": "user", "content": %s}]}',
        ),
    ]


@pytest.mark.postgres
def test_values_json_cannot_carry_get_422_everywhere(client, runtime, wire) -> None:  # type: ignore[no-untyped-def]
    wire(strong="ok", mid="ok", cheap="ok")  # the proxy could answer: only the body is wrong
    did = client.post("/v1/route", json={"prompt": "a decision to aim at"}).json()["decision_id"]
    before = decisions(runtime)
    models_before = client.get("/v1/admin/models").json()
    for method, path, template in bodies(did):
        for value in [*NOT_JSON, SURROGATE, LOW_SURROGATE]:
            r = post_raw(client, path, template % value, method)
            what = "surrogate" if "ud" in value else "JSON"
            assert_refused(r, what)
            if path.startswith("/v1/chat/"):
                assert r.json()["error"]["message"] == r.json()["detail"]  # OpenAI's shape too
    assert decisions(runtime) == before  # not one decision for a refused request
    assert client.get("/v1/admin/models").json() == models_before
    assert client.get(f"/v1/decisions/{did}").json()["feedback"] == []


@pytest.mark.postgres
def test_a_huge_input_is_echoed_as_an_excerpt(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/v1/route", json={"prompt": "hi", "preset": "x" * 200_001})
    assert_refused(r, "preset")
    (problem,) = r.json()["errors"]
    assert problem["loc"] == ["body", "preset"]
    assert problem["input"].startswith("xxxx") and "(200001 characters)" in problem["input"]
    many = client.post("/v1/route", json={"prompt": "hi", "models": [{"a": i} for i in range(900)]})
    assert_refused(many, "and 890 more problems")
    assert len(many.json()["errors"]) == 10


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/route", {"prompt": "hi", "lambda": True}, "lambda"),
        ("/v1/route", {"prompt": "hi", "lambda": "0.5"}, "lambda"),
        ("/v1/feedback", {"type": "rating", "value": "4"}, "value"),
        ("/v1/feedback", {"type": "reward", "value": True}, "value"),
        ("/v1/admin/models", {"name": "n", "input_price": True, "output_price": 1}, "input_price"),
        ("/v1/admin/models", {"name": "n", "input_price": 1, "output_price": "1"}, "output_price"),
        (
            "/v1/admin/models",
            {"name": "n", "input_price": 1, "output_price": 1, "enabled": 0},
            "enabled",
        ),
        ("/v1/audits/claim", {"grader_id": "g", "limit": "3"}, "limit"),
        ("/v1/audits", {"decision_id": "d", "pass": 1, "grader_id": "g"}, "pass"),
    ],
)
def test_loose_types_are_refused(client, path, body, field) -> None:  # type: ignore[no-untyped-def]
    """A client's mistake is not reinterpreted: true is not 1.0, 0 is not false, "4" is not 4."""
    if path == "/v1/feedback":
        body = {
            **body,
            "decision_id": client.post("/v1/route", json={"prompt": "hi"}).json()["decision_id"],
        }
    assert_refused(client.post(path, json=body), field)
    r = client.patch("/v1/admin/models/strong", json={"enabled": 0})
    assert_refused(r, "enabled")
    assert client.get("/v1/admin/models/strong").json()["enabled"] is True


def test_body_parser_unit() -> None:
    import json

    from bandit_router.api.strict_json import loads

    assert loads(b'{"a": [1, 2.5, "\\ud83d\\ude00", null]}') == {"a": [1, 2.5, "😀", None]}
    for text in ["NaN", "[Infinity]", '{"x": -Infinity}', "1e400", '"\\ud800"', '{"\\udc00": 1}']:
        with pytest.raises(json.JSONDecodeError):
            loads(text.encode())
    with pytest.raises(json.JSONDecodeError, match="digits is too large"):
        loads(b"1" * 5000)
