"""The service learns: feedback that favours one model per kind of query changes its choices.

Real encoder, real Vowpal Wabbit, real SQL (SQLite and PostgreSQL), through the HTTP API.
"""

from __future__ import annotations

from topics import prompts

from bandit_router.services.policies import load_policy

# The truth the simulated users report: 'strong' is good at maths, 'cheap' at poetry.
GOOD = {"math": "strong", "poetry": "cheap"}


def qualities(client, prompt: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    r = client.post("/v1/route", json={"prompt": prompt, "preset": "quality"})
    assert r.status_code == 200, r.text
    return {c["model"]: c["predicted_quality"] for c in r.json()["candidates"]}


def best(q: dict[str, float]) -> str:
    return max(q, key=q.__getitem__)


def test_feedback_teaches_the_policy_per_kind_of_query(client, runtime) -> None:  # type: ignore[no-untyped-def]
    chosen: dict[str, set[str]] = {"math": set(), "poetry": set()}
    for rnd in range(3):
        for kind in ("math", "poetry"):
            for prompt in prompts(kind, 40, seed=rnd):
                r = client.post("/v1/route", json={"prompt": prompt, "preset": "quality"})
                out = r.json()
                chosen[kind].add(out["model"])
                thumbs = "up" if out["model"] == GOOD[kind] else "down"
                fb = {"decision_id": out["decision_id"], "type": "thumbs", "value": thumbs}
                assert client.post("/v1/feedback", json=fb).status_code == 201
        job = runtime.runner.run("update")
        assert job.status == "succeeded", job
        assert job.result["events"] == 80
    # Exploration tried every model on both kinds of query.
    assert chosen["math"] == chosen["poetry"] == {"strong", "mid", "cheap"}

    held_out = {kind: prompts(kind, 15, seed=99) for kind in ("math", "poetry")}
    for kind, batch in held_out.items():
        wins = sum(best(qualities(client, p)) == GOOD[kind] for p in batch)
        assert wins >= 13, f"{kind}: the policy preferred {GOOD[kind]} on only {wins}/15"
    math_q = qualities(client, held_out["math"][0])
    poem_q = qualities(client, held_out["poetry"][0])
    assert math_q["strong"] - math_q["cheap"] > 0.3
    assert poem_q["cheap"] - poem_q["strong"] > 0.3


def test_pairwise_feedback_teaches_both_models(client, runtime) -> None:  # type: ignore[no-untyped-def]
    """A judge's 'A beat B' on maths teaches that the loser is worse, whichever was routed.
    (The cold policy already routes to 'mid', the first candidate, so the learner makes the same
    choices and is not promoted: its predictions are read from the learner itself.)"""
    for rnd in range(2):
        for prompt in prompts("math", 40, seed=10 + rnd):
            out = client.post(
                "/v1/route",
                json={"prompt": prompt, "models": ["mid", "cheap"], "preset": "quality"},
            ).json()
            other = "cheap" if out["model"] == "mid" else "mid"
            result = "win" if out["model"] == "mid" else "loss"
            fb = {
                "decision_id": out["decision_id"],
                "type": "pairwise",
                "value": result,
                "other_model": other,
                "source": "judge",
            }
            assert client.post("/v1/feedback", json=fb).status_code == 201
        job = runtime.runner.run("update")
        assert job.status == "succeeded", job
    learner = load_policy(runtime.engine, job.result["published"])
    held_out = runtime.embedder.encoder.encode(prompts("math", 10, seed=77))
    wins = sum(q[0] > q[1] for q in (learner.model.predict(x, ["mid", "cheap"]) for x in held_out))
    assert wins >= 9
