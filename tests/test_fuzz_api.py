"""Bad input never gets a 5xx: random bodies and path values, drawn from the app's own OpenAPI
schema (schema-valid bodies, the same with one field broken, and arbitrary JSON or bytes), against
the real app on SQLite and PostgreSQL. Every answer must be < 500 (a 4xx saying what is wrong).

The OpenAI proxy (/v1/chat/completions) is left out on purpose: its job is to call the upstream
model named in the pool, and tests send no traffic off this machine.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bandit_router.config import load_settings

# Bounded so the whole module stays well under a minute on 2 cores (route bodies that pass
# validation run the real encoder).
EXAMPLES = 60
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples every run: CI failures reproduce
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Python's JSON parser takes NaN, Infinity and lone surrogate escapes, which json.dumps writes:
# the fuzzer sends them too (the service must refuse them with a 4xx, never a 500).
any_text = st.text(st.characters(codec=None, categories=None), max_size=40)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
path_text = st.text(min_size=1, max_size=80)
path_ints = st.integers(min_value=-(2**70), max_value=2**70).map(str) | path_text


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    from bandit_router.app import create_app

    return create_app(load_settings()).openapi()


def from_schema(node: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid for the JSON-schema subset FastAPI emits (hypothesis-jsonschema, which would
    do this, no longer works with current Hypothesis)."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        return from_schema(root["components"]["schemas"][name], root)
    for key in ("anyOf", "oneOf"):
        if key in node:
            return st.one_of([from_schema(n, root) for n in node[key]])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if "const" in node:
        return st.just(node["const"])
    kind = node.get("type")
    if kind in SCALARS:
        return SCALARS[kind](node)
    if kind == "array":
        items = from_schema(node.get("items", {}), root)
        return st.lists(
            items, min_size=node.get("minItems", 0), max_size=min(node.get("maxItems", 4), 4)
        )
    if kind == "object":
        props = {k: from_schema(v, root) for k, v in node.get("properties", {}).items()}
        required = set(node.get("required", []))
        return st.fixed_dictionaries(
            {k: v for k, v in props.items() if k in required},
            optional={k: v for k, v in props.items() if k not in required},
        )
    return json_values


def _string(node: dict[str, Any]) -> st.SearchStrategy[str]:
    lo, hi = node.get("minLength", 0), min(node.get("maxLength", 60), 60)
    if "pattern" in node:
        return st.from_regex(node["pattern"], fullmatch=True).filter(lambda v: lo <= len(v) <= hi)
    return st.text(min_size=lo, max_size=max(lo, hi))


def _bound(node: dict[str, Any], key: str, cast: type) -> Any:
    return cast(node[key]) if key in node else None


SCALARS: dict[str, Any] = {
    "string": _string,
    "integer": lambda n: st.integers(_bound(n, "minimum", int), _bound(n, "maximum", int)),
    "number": lambda n: st.floats(
        _bound(n, "minimum", float),
        _bound(n, "maximum", float),
        allow_nan=False,
        allow_infinity=False,
    ),
    "boolean": lambda _n: st.booleans(),
    "null": lambda _n: st.none(),
}


def body_strategy(
    schema: dict[str, Any], path: str, method: str = "post"
) -> st.SearchStrategy[Any]:
    """Schema-valid bodies, the same with one field replaced by anything, and plain junk."""
    body = schema["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    valid = from_schema(body, schema)
    broken = st.tuples(valid, st.text(max_size=12), json_values).map(_break_one_field)
    return valid | broken | json_values


def _break_one_field(args: tuple[Any, str, Any]) -> Any:
    body, key, value = args
    if isinstance(body, dict):
        target = sorted(body)[len(key) % len(body)] if body and len(key) % 2 else key
        body = {**body, target: value}
    return body


def _check(response: Any) -> None:
    assert response.status_code < 500, (
        response.request.method,
        str(response.request.url)[:200],
        response.status_code,
        response.text[:500],
    )
    if response.status_code >= 400:
        assert "detail" in response.json(), response.text[:500]
        assert len(response.content) < 5000, response.text[:500]  # excerpts, not echoes


def _post_json(client: Any, path: str, body: Any) -> None:
    text = json.dumps(body)  # NaN -> NaN, a lone surrogate -> "\\ud800": what clients send
    _check(client.post(path, content=text, headers={"content-type": "application/json"}))


@pytest.mark.postgres
def test_route_never_5xx(client: Any, schema: dict[str, Any]) -> None:
    @FUZZ
    @given(body_strategy(schema, "/v1/route"))
    def run(body: Any) -> None:
        _post_json(client, "/v1/route", body)

    run()


@pytest.mark.postgres
def test_feedback_never_5xx(client: Any, schema: dict[str, Any]) -> None:
    decision_id = client.post("/v1/route", json={"prompt": "fuzz target"}).json()["decision_id"]
    known = st.just(decision_id)

    @FUZZ
    @given(body_strategy(schema, "/v1/feedback"), st.booleans(), known)
    def run(body: Any, aim_at_real_decision: bool, real_id: str) -> None:
        # Half the time about a decision that exists, so bodies get past the 404.
        if aim_at_real_decision and isinstance(body, dict):
            body = {**body, "decision_id": real_id}
        _post_json(client, "/v1/feedback", body)

    run()


@pytest.mark.postgres
def test_admin_never_5xx(client: Any, schema: dict[str, Any]) -> None:
    model_names = st.sampled_from(["strong", "mid", "cheap"]) | path_text

    @FUZZ
    @given(
        body_strategy(schema, "/v1/admin/models"),
        body_strategy(schema, "/v1/admin/models/{name}", "patch"),
        model_names,
        path_ints,
        path_text,
    )
    def run(spec: Any, patch: Any, name: str, number: str, word: str) -> None:
        _post_json(client, "/v1/admin/models", spec)
        _check(
            client.patch(
                f"/v1/admin/models/{quote(name, safe='')}",
                content=json.dumps(patch),
                headers={"content-type": "application/json"},
            )
        )
        n = quote(number, safe="")
        _check(client.get(f"/v1/admin/policies/{n}"))
        _check(client.post(f"/v1/admin/policies/{n}/activate"))
        _check(client.get(f"/v1/admin/jobs/{n}"))
        _check(client.post(f"/v1/admin/jobs/{quote(word, safe='')}"))
        _check(client.get(f"/v1/decisions/{quote(word, safe='')}"))

    run()


@pytest.mark.postgres
def test_bodies_that_are_not_json_get_4xx(client: Any) -> None:
    @FUZZ
    @given(
        st.binary(max_size=200), st.sampled_from(["/v1/route", "/v1/feedback", "/v1/admin/models"])
    )
    def run(raw: bytes, path: str) -> None:
        _check(client.post(path, content=raw, headers={"content-type": "application/json"}))

    run()
