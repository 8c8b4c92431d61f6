"""The admin API's pool: numbers that cannot price a query, names with slashes, which variables
may hold an upstream key, ids past the database's range. SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from bandit_router.store.models import LLMModel

SPEC = {"name": "org/model-7b", "input_price": 0.5, "output_price": 1.0}


def route_models(client) -> set[str]:  # type: ignore[no-untyped-def]
    r = client.post("/v1/route", json={"prompt": "What is 2 + 2?"})
    assert r.status_code == 200, r.text
    return {c["model"] for c in r.json()["candidates"]}


@pytest.mark.postgres
@pytest.mark.parametrize(
    "price", [-1, 1.7e308, 1e6, 100_000.5], ids=["negative", "near-max", "1e6", "past-max"]
)
def test_absurd_prices_get_422_and_routing_goes_on(client, price) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/v1/admin/models", json={**SPEC, "input_price": price})
    assert r.status_code == 422, r.text
    assert "input_price" in r.json()["detail"]
    r = client.patch("/v1/admin/models/strong", json={"output_price": price})
    assert r.status_code == 422, r.text
    r = client.post("/v1/admin/models", json={**SPEC, "expected_output_tokens": 10**7})
    assert r.status_code == 422
    assert route_models(client) == {"strong", "mid", "cheap"}


@pytest.mark.postgres
def test_a_stored_model_with_unusable_numbers_is_never_routed(client, runtime) -> None:  # type: ignore[no-untyped-def]
    """Whatever put it there (an older version, a hand edit): routing leaves it out, the admin
    view says why, and naming it in `models` is refused like a disabled model."""
    with runtime.engine.begin() as conn:
        conn.execute(update(LLMModel).where(LLMModel.name == "mid").values(input_price=1e300))
    runtime.refresh(force=True)
    assert route_models(client) == {"strong", "cheap"}
    mid = client.get("/v1/admin/models/mid").json()
    assert any("input_price" in w for w in mid["warnings"]), mid
    r = client.post("/v1/route", json={"prompt": "hi", "models": ["mid"]})
    assert r.status_code == 422 and "disabled models: mid" in r.json()["detail"]


@pytest.mark.postgres
def test_a_model_named_with_a_slash_can_be_patched_and_disabled(client) -> None:  # type: ignore[no-untyped-def]
    assert client.post("/v1/admin/models", json=SPEC).status_code == 201
    assert "org/model-7b" in route_models(client)
    for path in ("/v1/admin/models/org/model-7b", "/v1/admin/models/org%2Fmodel-7b"):
        r = client.patch(path, json={"output_price": 2.5})
        assert r.status_code == 200, r.text
        assert r.json()["name"] == "org/model-7b" and r.json()["output_price"] == 2.5
    assert client.get("/v1/admin/models/org/model-7b").json()["output_price"] == 2.5
    r = client.patch("/v1/admin/models/org/model-7b", json={"enabled": False})
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert "org/model-7b" not in route_models(client)
    assert client.patch("/v1/admin/models/org/ghost", json={"enabled": False}).status_code == 404


@pytest.mark.postgres
def test_api_key_env_must_be_on_the_allow_list(client, make_client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    url = {"base_url": "http://127.0.0.1:9/v1"}
    for name in ("BANDIT_ROUTER_DATABASE_URL", "HOME", "PATH", "BANDIT_ROUTER_UPSTREAM_KEY_"):
        r = client.patch("/v1/admin/models/strong", json={**url, "api_key_env": name})
        assert r.status_code == 422, (name, r.text)
        r = client.post("/v1/admin/models", json={**SPEC, **url, "api_key_env": name})
        assert r.status_code == 422, (name, r.text)
    assert client.get("/v1/admin/models/strong").json()["api_key_env"] is None

    # Allowed by its prefix, but unset: accepted, with a warning in the answer.
    monkeypatch.delenv("BANDIT_ROUTER_UPSTREAM_KEY_OPENAI", raising=False)
    r = client.patch(
        "/v1/admin/models/strong", json={**url, "api_key_env": "BANDIT_ROUTER_UPSTREAM_KEY_OPENAI"}
    )
    assert r.status_code == 200, r.text
    assert "is not set in the router's environment" in " ".join(r.json()["warnings"])
    monkeypatch.setenv("BANDIT_ROUTER_UPSTREAM_KEY_OPENAI", "sk-1")
    assert client.get("/v1/admin/models/strong").json()["warnings"] == []

    # A name listed when the router started is allowed too; the schema says which names are.
    listed = make_client(upstream_api_key_envs="OPENAI_API_KEY")
    r = listed.patch("/v1/admin/models/mid", json={**url, "api_key_env": "OPENAI_API_KEY"})
    assert r.status_code == 200, r.text
    assert (
        client.patch("/v1/admin/models/cheap", json={"api_key_env": "OPENAI_API_KEY"}).status_code
        == 422
    )
    pattern = listed.get("/openapi.json").json()["components"]["schemas"]["ModelPatch"]
    assert "|OPENAI_API_KEY)$" in str(pattern)


def test_settings_refuse_a_router_setting_as_an_upstream_key() -> None:
    from bandit_router.config import ConfigError, Settings, load_settings

    with pytest.raises(ConfigError, match="BANDIT_ROUTER_UPSTREAM_API_KEY_ENVS"):
        load_settings(upstream_api_key_envs="OPENAI_API_KEY,BANDIT_ROUTER_DATABASE_URL")
    assert load_settings(upstream_api_key_envs="A_KEY, B").upstream_key_envs == {"A_KEY", "B"}
    # No setting could ever be read through the prefix that names upstream keys.
    assert not [f for f in Settings.model_fields if f.upper().startswith("UPSTREAM_KEY_")]


@pytest.mark.postgres
@pytest.mark.parametrize("ident", ["2147483648", "9" * 30])
def test_ids_past_the_database_range_are_404(client, ident) -> None:  # type: ignore[no-untyped-def]
    for path in (f"/v1/admin/jobs/{ident}", f"/v1/admin/policies/{ident}"):
        r = client.get(path)
        assert r.status_code == 404, (path, r.text)
        assert "does not exist" in r.json()["detail"]
    assert client.post(f"/v1/admin/policies/{ident}/activate").status_code == 404
    assert client.get("/v1/admin/jobs/0").status_code == 422  # ids start at 1 (the schema says)
    assert client.get("/v1/admin/jobs/-1").status_code == 405  # POST /jobs/{kind} lives there
    assert client.get("/v1/admin/policies/-1").status_code == 404
