"""The audited report (GET /v1/admin/report, /metrics): its numbers on a store whose truth is
known, and the coverage of its 95 % intervals over seeded stores filled from a known gold table."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from runtime_settings import change_settings

from bandit_router.runtime import Runtime
from bandit_router.services import audits as audit_service
from bandit_router.services.feedback import feedback_row
from bandit_router.store import repository as repo

MODELS = ("strong", "mid", "cheap")  # tests/conftest.py's pool, priciest first
PRICES = {"strong": (10.0, 30.0), "mid": (1.0, 2.0), "cheap": (0.1, 0.2)}  # in, out per 1M
BASE = datetime(2026, 6, 1, tzinfo=UTC)


def _audit_all(rt: Runtime) -> None:
    change_settings(rt, **{"audit_rate_floor": 1.0, "audit_rate_max": 1.0})


def test_report_on_a_fully_audited_store(client, runtime) -> None:  # type: ignore[no-untyped-def]
    """Every decision audited and graded: the estimate is the exact mean of the grades."""
    _audit_all(runtime)
    gold = {"strong": 0.9, "mid": 0.6, "cheap": 0.3}
    grades, savings = [], []
    for i in range(24):
        out = client.post("/v1/route", json={"prompt": f"Explain topic {i}"}).json()
        model, did = out["model"], out["decision_id"]
        cost = {c["model"]: c["expected_cost_usd"] for c in out["candidates"]}
        savings.append(cost["strong"] - cost[model])
        grades.append(gold[model])
        fb = {"decision_id": did, "type": "reward", "value": min(gold[model] + 0.1, 1.0)}
        assert client.post("/v1/feedback", json=fb).status_code == 201
        g = {"decision_id": did, "score": gold[model], "grader_id": "ann"}
        assert client.post("/v1/audits", json=g).status_code == 201

    report = client.get("/v1/admin/report").json()
    assert report["reference"] == "strong"  # the priciest enabled model by default
    assert report["decisions"] == 24 and report["audits_graded"] == 24
    overall = report["overall"]
    assert overall["quality"]["estimate"] == pytest.approx(np.mean(grades))
    assert overall["quality"]["lower"] <= np.mean(grades) <= overall["quality"]["upper"]
    assert overall["saving_per_query_usd"]["estimate"] == pytest.approx(np.mean(savings))
    assert report["saving_total_usd"]["estimate"] == pytest.approx(np.sum(savings))
    per_model = {m["model"]: m for m in report["models"]}
    for name, row in per_model.items():
        if row["quality"] is not None:
            assert row["quality"]["estimate"] == pytest.approx(gold[name])
        else:
            assert "gold grade" in row["quality_reason"]
    assert sum(m["decisions"] for m in report["models"]) == 24
    if report["quality_retained"] is None:  # the reference answered fewer than 2 audits
        assert "strong" in report["quality_retained_reason"]

    metrics = client.get("/metrics").text
    assert 'bandit_router_audited_quality{model="all"}' in metrics
    assert 'bandit_router_audited_quality_lower{model="all"}' in metrics
    assert 'bandit_router_saving_per_query_usd{model="all",reference="strong"}' in metrics


def test_report_windows_and_references(client, runtime) -> None:  # type: ignore[no-untyped-def]
    client.post("/v1/route", json={"prompt": "hello"})
    empty = client.get(
        "/v1/admin/report",
        params={"since": "2020-01-01T00:00:00Z", "until": "2020-02-01T00:00:00+01:00"},
    )
    assert empty.status_code == 200
    body = empty.json()
    assert body["decisions"] == 0 and body["overall"]["quality"] is None
    assert "0 gold grade(s)" in body["overall"]["quality_reason"]
    assert body["quality_retained"] is None and body["quality_retained_reason"]
    ref = client.get("/v1/admin/report", params={"reference": "cheap"}).json()
    assert ref["reference"] == "cheap" and ref["decisions"] == 1
    for params in (
        {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},  # reversed: empty
        {"until": "0001-01-02T00:00:00Z"},  # the default window starts at the first instant
    ):
        r = client.get("/v1/admin/report", params=params)
        assert r.status_code == 200 and r.json()["decisions"] == 0, (params, r.text)
    for params in ({"reference": "nope"}, {"since": "yesterday"}, {"until": "0.5"}):
        r = client.get("/v1/admin/report", params=params)
        assert r.status_code == 422, (params, r.text)


# --- coverage on seeded stores with known truth -------------------------------------------------


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _world(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query: each model's true quality (probability of a passing grade) and the routing
    policy's probabilities. Quality and routing both depend on the query."""
    quality = _sigmoid(np.array([1.6, 0.7, -0.4]) + np.outer(x, [0.5, 1.0, 1.6]))
    logits = np.column_stack([1.2 * x, 0.3 + 0 * x, -1.2 * x])
    pmf = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return quality, pmf


def _costs(tokens: np.ndarray) -> np.ndarray:
    return np.column_stack(
        [(tokens * PRICES[m][0] + 300 * PRICES[m][1]) / 1e6 for m in MODELS]
    )  # expected_output_tokens is 300 in the test pool


def _truth(rng: np.random.Generator) -> dict[str, float]:
    """The superpopulation values, by a large Monte Carlo sample of the same world."""
    x = rng.uniform(-1, 1, 400_000)
    tokens = rng.integers(20, 400, x.size)
    quality, pmf = _world(x)
    costs = _costs(tokens)
    routed = float((pmf * quality).sum(axis=1).mean())
    return {
        "quality": routed,
        "saving": float((pmf * (costs[:, [0]] - costs)).sum(axis=1).mean()),
        "retained": routed / float(quality[:, 0].mean()),
    }


def _fill(conn: Any, rng: np.random.Generator, start: datetime, n: int) -> None:
    """n decisions of the world above, with audits drawn at logged, unequal π (90 % of them
    graded with a 0/1 gold grade) and biased, noisy preference rewards on 70 %."""
    x = rng.uniform(-1, 1, n)
    tokens = rng.integers(20, 400, n)
    quality, pmf = _world(x)
    costs = _costs(tokens)
    predicted = np.clip(quality + rng.normal(0, 0.1, quality.shape), 0, 1)
    chosen = np.array([rng.choice(3, p=p) for p in pmf])
    gold = rng.binomial(1, quality[np.arange(n), chosen]).astype(float)
    pi = np.clip(0.05 + 0.4 * (1 - pmf.max(axis=1)), 0.05, 0.5)
    selected = rng.random(n) < pi
    graded = selected & (rng.random(n) < 0.9)
    has_pref = rng.random(n) < 0.7
    pref = np.clip(0.25 + 0.45 * gold + rng.normal(0, 0.15, n), 0, 1)
    rows = []
    for i in range(n):
        cands = [
            {"model": m, "quality": float(predicted[i, k]), "cost_usd": float(costs[i, k]),
             "cost_norm": 0.0, "score": 0.0, "probability": float(pmf[i, k])}
            for k, m in enumerate(MODELS)
        ]  # fmt: skip
        rows.append(
            {
                "id": uuid.UUID(int=int(rng.integers(2**62)) * 2**64 + i).hex,
                "created_at": start + timedelta(seconds=i),
                "prompt_hash": "0" * 64,
                "embedding": b"\0" * 16,
                "input_tokens": int(tokens[i]),
                "lam": 0.2,
                "candidates": cands,
                "chosen_model": MODELS[chosen[i]],
                "probability": float(pmf[i, chosen[i]]),
                "exploration": "squarecb",
                "policy_version": 1,
                "audit_probability": float(pi[i]),
                "audit_selected": bool(selected[i]),
            }
        )
    repo.insert_decisions(conn, rows)
    for i, row in enumerate(rows):
        if selected[i]:
            repo.insert_audit(conn, row["id"])
        if graded[i]:
            repo.grade_audit(conn, row["id"], float(gold[i]), "g")
        if has_pref[i]:
            fb = feedback_row(row["id"], "reward", float(pref[i]), float(pref[i]), source="judge",
                              idempotency_key="k")  # fmt: skip
            repo.insert_feedback(conn, fb)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_intervals_cover_the_truth_on_seeded_stores(runtime) -> None:  # type: ignore[no-untyped-def]
    """80 seeded stores (one window each, in one database) filled from a known gold table: the
    report's 95 % intervals cover the true quality, saving and quality retained in >= 90 %."""
    truth = _truth(np.random.default_rng(12345))
    seeds, hits = 80, {"quality": 0, "saving": 0, "retained": 0}
    settings = runtime.settings.model_copy(update={"report_cache_seconds": 0})
    for seed in range(seeds):
        start = BASE + timedelta(days=seed)
        with runtime.engine.begin() as conn:
            _fill(conn, np.random.default_rng(seed), start, 600)
        report = audit_service.report(runtime.engine, settings, start, start + timedelta(days=1))
        assert report.decisions == 600 and report.reference == "strong"
        estimates = {
            "quality": report.overall.quality,
            "saving": report.overall.saving_per_query_usd,
            "retained": report.quality_retained,
        }
        for name, est in estimates.items():
            assert est is not None, (seed, name, report.quality_retained_reason)
            hits[name] += est.lower <= truth[name] <= est.upper
    coverage = {name: n / seeds for name, n in hits.items()}
    assert min(coverage.values()) >= 0.9, coverage
