"""Retraining on bias-corrected labels fixes a policy that biased feedback misled; a failed
retraining leaves the active policy alone. Real encoder, VW and SQL, through the HTTP API."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from topics import prompts

from bandit_router.app import create_app
from bandit_router.bench.jobs import fill_store
from bandit_router.config import Settings, load_settings
from bandit_router.jobs.events import read_events
from bandit_router.jobs.labels import fit_labeller
from bandit_router.jobs.retrain import run_retrain
from bandit_router.jobs.update import run_update
from bandit_router.policy.learner import QualityModel
from bandit_router.runtime import Runtime
from bandit_router.store import proxy_log
from bandit_router.store import repository as repo
from bandit_router.store.db import make_engine

TRUTH = {"strong": 1.0, "mid": 0.5, "cheap": 0.0}  # what gold audits say on maths
JUDGE = {"strong": 0.3, "mid": 0.5, "cheap": 0.9}  # what the biased judge says


@pytest.fixture
def service(settings: Settings, encoder):  # type: ignore[no-untyped-def]
    s = settings.model_copy(
        update={
            "audit_rate_floor": 0.3,
            "audit_rate_max": 0.3,
            "exploration": "epsilon",
            "epsilon": 0.5,
            "bias_method": "paired",
            "retrain_min_events": 20,
        }
    )
    rt = Runtime(s, encoder=encoder, scheduler=False)
    with TestClient(create_app(s, rt)) as c:
        yield c, rt
    rt.close()


def prefers(client, prompt: str) -> str:  # type: ignore[no-untyped-def]
    out = client.post("/v1/route", json={"prompt": prompt, "preset": "quality"}).json()
    return max(out["candidates"], key=lambda c: c["predicted_quality"])["model"]


def feed_biased_round(client, rnd: int) -> None:  # type: ignore[no-untyped-def]
    """60 maths queries routed, each rated by the biased judge."""
    for prompt in prompts("math", 60, seed=rnd):
        out = client.post("/v1/route", json={"prompt": prompt, "preset": "quality"}).json()
        did, model = out["decision_id"], out["model"]
        fb = {"decision_id": did, "type": "reward", "value": JUDGE[model], "source": "judge"}
        assert client.post("/v1/feedback", json=fb).status_code == 201


def grade_pending_audits(client) -> None:  # type: ignore[no-untyped-def]
    """A grader who knows the truth grades every audit waiting."""
    for item in client.post("/v1/audits/claim", json={"grader_id": "g", "limit": 500}).json():
        grade = {
            "decision_id": item["decision_id"],
            "score": TRUTH[item["model"]],
            "grader_id": "g",
        }
        assert client.post("/v1/audits", json=grade).status_code == 201


def test_updates_learn_biased_feedback_on_the_gold_scale(service) -> None:  # type: ignore[no-untyped-def]
    """With graded audits in the window, the update job moves every preference reward onto the
    gold scale before learning it: a judge that prefers the cheap model does not mislead it."""
    client, rt = service
    feed_biased_round(client, 0)
    grade_pending_audits(client)
    for rnd in range(1, 3):
        feed_biased_round(client, rnd)
        grade_pending_audits(client)
        job = rt.runner.run("update")
        assert job.status == "succeeded", job.error
    bias = job.result["labels"]["mean_bias_by_model"]
    assert bias["cheap"] < -0.4 and bias["strong"] > 0.3
    held_out = prompts("math", 10, seed=50)
    assert sum(prefers(client, p) == "strong" for p in held_out) >= 8


def test_retraining_fixes_a_policy_misled_by_biased_feedback(service) -> None:  # type: ignore[no-untyped-def]
    """Audits graded late: the updates learned the judge's raw verdicts, so the policy prefers
    the cheap model. Once the grades are in, the retraining's candidate, trained on corrected
    labels, beats the misled policy on the newest events and is promoted."""
    client, rt = service
    for rnd in range(4):
        feed_biased_round(client, rnd)
        assert rt.runner.run("update").status == "succeeded"  # no grade yet: raw labels
    held_out = prompts("math", 10, seed=50)
    assert sum(prefers(client, p) == "cheap" for p in held_out) >= 8  # misled by the judge
    grade_pending_audits(client)

    job = rt.runner.run("retrain")
    assert job.status == "succeeded", job.error
    result = job.result
    assert result["promoted"], result["ope"]
    ope = result["ope"]
    assert ope["difference"]["lo"] > 0
    lo, hi = ope["reward_range"]
    for side in ("candidate", "active"):
        assert lo <= ope[side]["value"] <= hi
    bias = result["bias"]
    assert bias["cheap"]["estimate"] < -0.5 and bias["strong"]["estimate"] > 0.4
    assert sum(prefers(client, p) == "strong" for p in held_out) >= 8  # fixed

    view = client.get("/v1/admin/bias").json()
    assert view["job_id"] == job.id and view["models"]["cheap"]["hi"] < 0

    # More of the same biased feedback: updates now learn it corrected, and the policy stays.
    feed_biased_round(client, rnd=4)
    grade_pending_audits(client)
    assert rt.runner.run("update").status == "succeeded"
    assert sum(prefers(client, p) == "strong" for p in held_out) >= 8


def test_failed_retraining_leaves_the_active_policy(service) -> None:  # type: ignore[no-untyped-def]
    client, rt = service
    for prompt in prompts("poetry", 30, seed=1):
        did = client.post("/v1/route", json={"prompt": prompt}).json()["decision_id"]
        client.post("/v1/feedback", json={"decision_id": did, "type": "thumbs", "value": "up"})
    with rt.engine.begin() as conn:
        before = repo.active_policy_id(conn)
        # A corrupt base policy: the job will fail loading it.
        repo.insert_policy(
            conn, activate=False, vw_args="--cb_adf", model_bytes=b"garbage", source="warm_start"
        )
        n_versions = len(repo.list_policies(conn))
    job = rt.runner.run("retrain")
    assert job.status == "failed" and job.error
    with rt.engine.connect() as conn:
        assert repo.active_policy_id(conn) == before
        assert len(repo.list_policies(conn)) == n_versions
    assert client.get("/healthz").json()["policy_version"] == before


def test_answer_length_reaches_the_bias_model(service) -> None:  # type: ignore[no-untyped-def]
    """A verbosity-biased judge: its score follows the answer's length, whatever the model. The
    lengths the proxy logged, or the feedback reported, reach the bias model, and with them the
    corrected labels land nearer the truth than without."""
    client, rt = service
    for i, prompt in enumerate(prompts("math", 160, seed=7)):
        out = client.post("/v1/route", json={"prompt": prompt}).json()
        did, model, long = out["decision_id"], out["model"], i % 2 == 1
        tokens = 600 if long else 30
        judged = 0.2 * TRUTH[model] + (0.8 if long else 0.0)
        fb = {"decision_id": did, "type": "reward", "value": judged, "source": "judge"}
        if i % 3 == 0:  # a /v1/route client reports the length with its feedback
            fb["output_tokens"] = tokens
        else:  # the answer went through the proxy, which measured it
            answer = {"decision_id": did, "served_model": model, "status": 200}
            answer |= {"attempts": [{"model": model, "status": 200}], "output_tokens": tokens}
            with rt.engine.begin() as conn:
                proxy_log.record_answer(conn, answer)
        assert client.post("/v1/feedback", json=fb).status_code == 201
    grade_pending_audits(client)

    job = rt.runner.run("retrain")
    assert job.status == "succeeded", job.error
    assert job.result["labels"]["answer_length_feature"] is True

    events = [e for chunk in read_events(rt.engine, rt.settings) for e in chunk]
    lengths = [e.output_tokens for e in events]
    assert sum(t is not None for t in lengths) == 160  # every event's length, from either source
    assert {t for t in lengths if t is not None} == {30.0, 600.0}
    pref_only = [e for e in events if e.gold is None]
    truth = np.array([TRUTH[e.answered] for e in pref_only])  # type: ignore[index]
    labeller = fit_labeller(rt.engine, rt.settings, list(TRUTH))
    assert labeller.use_length
    with_length = labeller.labels(pref_only)
    blind = fit_labeller(rt.engine, rt.settings, list(TRUTH), answer_length=False)
    assert not blind.use_length
    without = blind.labels(pref_only)
    assert np.abs(with_length - truth).mean() < 0.5 * np.abs(without - truth).mean()


def _candidate_predictions(engine, settings: Settings, version: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The published candidate's predicted qualities on fixed queries, for every pool model."""
    with engine.connect() as conn:
        row = repo.get_full_policy(conn, version)
        models = [m.name for m in repo.list_models(conn)]
    assert row is not None
    model = QualityModel(row.vw_args, row.model_bytes)
    queries = np.random.default_rng(5).standard_normal((20, 384)).astype(np.float32)
    try:
        return np.stack([model.predict(q / np.linalg.norm(q), models) for q in queries])
    finally:
        model.close()


def test_retrain_learns_the_same_policy_whatever_the_chunk_size(settings: Settings) -> None:
    """Streaming is an implementation detail: a log read 7 events at a time and one read in a
    single chunk teach the same candidate, label for label and step for step."""
    s = settings.model_copy(update={"retrain_min_events": 20})
    fill_store(s, 300, seed=3, audit_rate=0.3)  # ~90 audits: the bias model is fitted
    engine = make_engine(s.database_url)
    try:
        small = run_retrain(engine, s.model_copy(update={"job_chunk_events": 7}))
        whole = run_retrain(engine, s.model_copy(update={"job_chunk_events": 10_000}))
        assert small["learned_events"] == whole["learned_events"] == 300
        assert small["labels"]["n_paired"] == whole["labels"]["n_paired"] >= 10
        assert small["bias"] == whole["bias"]
        np.testing.assert_array_equal(
            _candidate_predictions(engine, s, small["candidate"]),
            _candidate_predictions(engine, s, whole["candidate"]),
        )
    finally:
        engine.dispose()


def test_update_learns_the_same_learner_whatever_the_chunk_size(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The update job marks what it learned, so each chunk size gets its own, identical store."""
    learned = []
    for chunk in (7, 10_000):
        s = load_settings(
            database_url=f"sqlite:///{tmp_path}/chunk{chunk}.db",
            scheduler_enabled=False,
            job_chunk_events=chunk,
            update_promotion="always",
        )
        fill_store(s, 300, seed=4, audit_rate=0.3)
        engine = make_engine(s.database_url)
        try:
            result = run_update(engine, s)
            assert result["events"] == 300
            learned.append((result["gate"], _candidate_predictions(engine, s, result["published"])))
        finally:
            engine.dispose()
    (gate_small, small), (gate_whole, whole) = learned
    np.testing.assert_array_equal(small, whole)
    # The same events valued the same way; numpy's SIMD sums may differ in the last bit.
    for lam, terms in gate_small.items():
        assert terms == pytest.approx(gate_whole[lam], rel=1e-12), lam
