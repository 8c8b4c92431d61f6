"""HTTP behaviour of the service, on SQLite and PostgreSQL, with the real encoder and VW."""

from __future__ import annotations

import pytest


def route(client, **body):  # type: ignore[no-untyped-def]
    r = client.post("/v1/route", json={"prompt": "How do I reverse a list in Python?", **body})
    assert r.status_code == 200, r.text
    return r.json()


def test_route_returns_a_logged_decision(client) -> None:  # type: ignore[no-untyped-def]
    out = route(client, preset="quality")
    assert len(out["decision_id"]) == 32
    assert out["model"] in {"strong", "mid", "cheap"}
    assert out["lambda"] == 0.0
    probs = {c["model"]: c["probability"] for c in out["candidates"]}
    assert set(probs) == {"strong", "mid", "cheap"}
    assert sum(probs.values()) == pytest.approx(1.0)
    assert out["probability"] == pytest.approx(probs[out["model"]])
    costs = {c["model"]: c["expected_cost_usd"] for c in out["candidates"]}
    assert costs["strong"] > costs["mid"] > costs["cheap"] > 0

    logged = client.get(f"/v1/decisions/{out['decision_id']}").json()
    assert logged["chosen_model"] == out["model"]
    assert logged["probability"] == pytest.approx(out["probability"])
    assert logged["policy_version"] == out["policy_version"]
    assert [c["probability"] for c in logged["candidates"]] == [
        c["probability"] for c in out["candidates"]
    ]
    assert logged["prompt"] is None  # prompts are not stored unless enabled
    assert len(logged["prompt_hash"]) == 64


def test_lambda_trades_quality_for_cost(client) -> None:  # type: ignore[no-untyped-def]
    cheap = route(client, **{"lambda": 5.0})
    best = max(cheap["candidates"], key=lambda c: c["score"])
    assert best["model"] == "cheap"
    assert cheap["lambda"] == 5.0
    assert route(client, preset="cost")["lambda"] == 1.0


def test_allow_list_and_exclude(client) -> None:  # type: ignore[no-untyped-def]
    out = route(client, models=["mid", "strong"])
    assert {c["model"] for c in out["candidates"]} == {"mid", "strong"}
    out = route(client, exclude=["cheap"])
    assert "cheap" not in {c["model"] for c in out["candidates"]}


def test_messages_form(client) -> None:  # type: ignore[no-untyped-def]
    body = {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Prove that sqrt(2) is irrational."}],
            },
        ]
    }
    r = client.post("/v1/route", json=body)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"prompt": "   "}, "the prompt is empty"),
        ({"prompt": "hi", "lambda": -0.5}, "lambda"),
        ({"prompt": "hi", "models": ["gpt-99"]}, "unknown models: gpt-99"),
        ({"prompt": "hi", "exclude": ["nope"]}, "unknown models: nope"),
        ({"prompt": "hi", "models": []}, "at least 1 item"),
        ({"prompt": "hi", "exclude": ["strong", "mid", "cheap"]}, "no candidate model"),
        ({"prompt": "hi", "lambda": 1, "preset": "cost"}, "not both"),
        ({"prompt": "hi", "preset": "fastest"}, "preset"),
        ({}, "exactly one of 'prompt' or 'messages'"),
        ({"prompt": "hi", "messages": [{"role": "user", "content": "hi"}]}, "exactly one"),
        ({"prompt": 42}, "prompt"),
        ({"prompt": "hi", "colour": "red"}, "colour"),
    ],
)
def test_bad_route_requests_get_422(client, body, message) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/v1/route", json=body)
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]


def test_malformed_json_is_422(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/v1/route", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_disabled_model_is_not_routed_and_rejected_in_allow_list(client) -> None:  # type: ignore[no-untyped-def]
    r = client.patch("/v1/admin/models/strong", json={"enabled": False})
    assert r.status_code == 200 and r.json()["enabled"] is False
    for _ in range(5):
        assert route(client)["model"] != "strong"
    r = client.post("/v1/route", json={"prompt": "hi", "models": ["strong"]})
    assert r.status_code == 422 and "disabled models: strong" in r.json()["detail"]


def test_feedback_kinds_and_rewards(client) -> None:  # type: ignore[no-untyped-def]
    # Never answered by "strong", the pairwise case's other model (exploration may pick any).
    did = route(client, models=["cheap", "mid"])["decision_id"]
    cases = [
        ({"type": "thumbs", "value": "up"}, 1.0),
        ({"type": "thumbs", "value": "down"}, 0.0),
        ({"type": "rating", "value": 4}, 0.75),
        ({"type": "reward", "value": 0.3}, 0.3),
        ({"type": "pairwise", "value": "loss", "other_model": "strong", "source": "judge"}, 0.0),
        ({"type": "reward", "value": 0.9, "output_tokens": 512}, 0.9),
    ]
    for body, reward in cases:
        r = client.post("/v1/feedback", json={"decision_id": did, **body})
        assert r.status_code == 201, r.text
        assert r.json()["reward"] == pytest.approx(reward)
    stored = client.get(f"/v1/decisions/{did}").json()["feedback"]
    assert [f["reward"] for f in stored] == pytest.approx([c[1] for c in cases])
    assert stored[-2]["other_model"] == "strong" and stored[-2]["source"] == "judge"
    assert [f["output_tokens"] for f in stored] == [None] * 5 + [512]


def test_feedback_is_idempotent(client) -> None:  # type: ignore[no-untyped-def]
    did = route(client)["decision_id"]
    body = {"decision_id": did, "type": "rating", "value": 5}
    assert client.post("/v1/feedback", json=body).status_code == 201
    again = client.post("/v1/feedback", json=body)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    keyed = {**body, "type": "reward", "value": 0.3, "idempotency_key": "k1"}
    assert client.post("/v1/feedback", json=keyed).status_code == 201
    again = client.post("/v1/feedback", json=keyed)
    assert again.status_code == 200 and again.json() == {**again.json(), "reward": 0.3}
    # The same key with another body is a client's mistake, said so (Stripe-style), not a
    # "duplicate" that reports the new value while the old one stays stored.
    clash = client.post("/v1/feedback", json={**keyed, "value": 0.9})
    assert clash.status_code == 409, clash.text
    assert "idempotency key k1 was already used" in clash.json()["detail"]
    assert "stored reward is 0.3" in clash.json()["detail"]
    stored = client.get(f"/v1/decisions/{did}").json()["feedback"]
    assert [f["reward"] for f in stored] == [1.0, 0.3]


def test_pairwise_feedback_names_a_real_other_model(client) -> None:  # type: ignore[no-untyped-def]
    out = route(client)
    did, own = out["decision_id"], out["model"]
    other = next(m for m in ("strong", "mid", "cheap") if m != own)
    pair = {"decision_id": did, "type": "pairwise", "value": "win"}
    assert client.post("/v1/feedback", json={**pair, "other_model": other}).status_code == 201
    r = client.post("/v1/feedback", json={**pair, "other_model": own})
    assert r.status_code == 422 and "the model that answered" in r.json()["detail"]
    r = client.post("/v1/feedback", json={**pair, "other_model": "gpt-9"})
    assert r.status_code == 422 and "not a model of the pool" in r.json()["detail"]
    third = next(m for m in ("strong", "mid", "cheap") if m not in (own, other))
    client.patch(f"/v1/admin/models/{third}", json={"enabled": False})
    r = client.post("/v1/feedback", json={**pair, "other_model": third})
    assert r.status_code == 422 and "is disabled" in r.json()["detail"]
    ghost = {**pair, "decision_id": "0" * 32, "other_model": other}
    assert client.post("/v1/feedback", json=ghost).status_code == 404
    stored = client.get(f"/v1/decisions/{did}").json()["feedback"]
    assert [f["other_model"] for f in stored] == [other]  # no phantom model was stored


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"type": "thumbs", "value": "sideways"}, "'up' or 'down'"),
        ({"type": "rating", "value": 6}, "less than or equal to 5"),
        ({"type": "rating", "value": 2.5}, "valid integer"),
        ({"type": "rating", "value": True}, "valid integer"),
        ({"type": "reward", "value": 1.5}, "less than or equal to 1"),
        ({"type": "reward", "value": "0.5"}, "valid number"),
        ({"type": "pairwise", "value": "win"}, "other_model"),
        ({"type": "pairwise", "value": "win", "other_model": "gpt-9"}, "not a model of the pool"),
        ({"type": "thumbs", "value": "up", "other_model": "x"}, "other_model"),
        ({"type": "stars", "value": 3}, "type"),
        ({"type": "thumbs", "value": "up", "source": "robot"}, "source"),
        ({"type": "thumbs", "value": "up", "output_tokens": -1}, "output_tokens"),
    ],
)
def test_bad_feedback_gets_422(client, body, message) -> None:  # type: ignore[no-untyped-def]
    did = route(client)["decision_id"]
    r = client.post("/v1/feedback", json={"decision_id": did, **body})
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]


def test_feedback_for_unknown_decision_is_404(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/v1/feedback", json={"decision_id": "0" * 32, "type": "thumbs", "value": "up"})
    assert r.status_code == 404
    assert "does not exist" in r.json()["detail"]
    assert client.get(f"/v1/decisions/{'0' * 32}").status_code == 404


def test_model_added_at_run_time_is_routable_and_explored(client) -> None:  # type: ignore[no-untyped-def]
    spec = {
        "name": "newbie",
        "input_price": 0.5,
        "output_price": 1.0,
        "expected_output_tokens": 200,
    }
    assert client.post("/v1/admin/models", json=spec).status_code == 201
    assert client.post("/v1/admin/models", json=spec).status_code == 409
    out = route(client, preset="quality")
    newbie = next(c for c in out["candidates"] if c["model"] == "newbie")
    assert newbie["probability"] > 0
    r = client.patch("/v1/admin/models/newbie", json={"output_price": 20.0})
    assert r.status_code == 200 and r.json()["output_price"] == 20.0
    repriced = next(c for c in route(client)["candidates"] if c["model"] == "newbie")
    assert repriced["expected_cost_usd"] > newbie["expected_cost_usd"]


@pytest.mark.parametrize(
    ("spec", "status"),
    [
        ({"name": "x", "input_price": -1, "output_price": 1}, 422),
        ({"name": "bad name!", "input_price": 1, "output_price": 1}, 422),
        ({"name": "x", "input_price": 1}, 422),
    ],
)
def test_bad_model_specs(client, spec, status) -> None:  # type: ignore[no-untyped-def]
    assert client.post("/v1/admin/models", json=spec).status_code == status


def test_admin_model_errors(client) -> None:  # type: ignore[no-untyped-def]
    assert client.patch("/v1/admin/models/ghost", json={"enabled": False}).status_code == 404
    assert client.patch("/v1/admin/models/mid", json={}).status_code == 422
    client.patch("/v1/admin/models/strong", json={"enabled": False})
    client.patch("/v1/admin/models/mid", json={"enabled": False})
    r = client.patch("/v1/admin/models/cheap", json={"enabled": False})
    assert r.status_code == 409


def test_update_job_keeps_the_active_policy_until_the_gate_has_evidence(client, runtime) -> None:  # type: ignore[no-untyped-def]
    before = route(client)
    client.post(
        "/v1/feedback", json={"decision_id": before["decision_id"], "type": "thumbs", "value": "up"}
    )
    job = runtime.runner.run("update")
    assert job.status == "succeeded", job
    # One event is far below the gate's minimum: the learner is stored, not served.
    assert job.result["promoted"] is False
    assert job.result["published"] != before["policy_version"]
    assert route(client)["policy_version"] == before["policy_version"]


def test_update_job_publishes_and_rollback_restores(settings, encoder) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from bandit_router.app import create_app
    from bandit_router.runtime import Runtime

    always = settings.model_copy(update={"update_promotion": "always"})
    runtime = Runtime(always, encoder=encoder, scheduler=False)
    try:
        with TestClient(create_app(always, runtime)) as client:
            _publish_then_roll_back(client, runtime)
    finally:
        runtime.close()


def _publish_then_roll_back(client, runtime) -> None:  # type: ignore[no-untyped-def]
    did = route(client)["decision_id"]
    client.post("/v1/feedback", json={"decision_id": did, "type": "thumbs", "value": "up"})
    r = client.post("/v1/admin/jobs/update")
    assert r.status_code == 202
    job_id = r.json()["id"]
    runtime.runner.run("update")  # waits for any queued run to finish
    job = client.get(f"/v1/admin/jobs/{job_id}").json()
    assert job["status"] == "succeeded", job
    new_version = job["result"]["published"]
    assert job["result"]["events"] == 1
    policies = client.get("/v1/admin/policies").json()
    active = [p for p in policies if p["active"]]
    assert [p["id"] for p in active] == [new_version]
    assert route(client)["policy_version"] == new_version
    assert client.get(f"/v1/decisions/{did}").json()["learned_version"] == new_version

    # Late feedback is kept and marked.
    r = client.post("/v1/feedback", json={"decision_id": did, "type": "rating", "value": 2})
    assert r.status_code == 201
    assert client.get(f"/v1/decisions/{did}").json()["feedback"][-1]["late"] is True

    r = client.post(f"/v1/admin/policies/{job['result']['parent']}/activate")
    assert r.status_code == 200 and r.json()["active"] is True
    assert route(client)["policy_version"] == job["result"]["parent"]
    assert client.post("/v1/admin/policies/999/activate").status_code == 404
    assert client.post("/v1/admin/jobs/nope").status_code == 404
    assert client.get("/v1/admin/jobs/999").status_code == 404


def test_health_and_openapi(client) -> None:  # type: ignore[no-untyped-def]
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["models"] == ["cheap", "mid", "strong"]
    schema = client.get("/openapi.json").json()
    assert {"/v1/route", "/v1/feedback", "/v1/decisions/{decision_id}"} <= set(schema["paths"])
