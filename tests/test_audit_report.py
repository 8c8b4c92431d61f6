"""The audited report (GET /v1/admin/report, /metrics): its numbers on a store whose truth is
known, and the coverage of its 95 % intervals over seeded stores filled from a known gold table."""

from __future__ import annotations

import random
import tracemalloc
import uuid
from collections.abc import Iterator
from dataclasses import fields as dataclass_fields
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from runtime_settings import change_settings

from bandit_router.audit.ppi import classical_mean_ci, ppi_ipw_terms
from bandit_router.audit.report import ReportRow, WindowMoments, build_report
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


# --- the streamed report against the formulas on plain arrays -----------------------------------

MOMENT_MODELS = ("m0", "m1", "m2", "m3")  # m0 is the reference; m3 has one gold at most
T0 = datetime(2026, 1, 1, tzinfo=UTC)
DROP = {"since", "until", "computed_at", "agreement"}  # not built from the rows


def _rows(n: int, seed: int, **change: Any) -> list[ReportRow]:
    """Random rows: unequal audit probabilities (some 0), 80 % of audits graded, preferences on
    60 %, predicted qualities outside [0, 1] and missing, rows the reference could not have been
    chosen on. `change` sets a field on every row."""
    rng = np.random.default_rng(seed)
    model = rng.choice(MOMENT_MODELS, n, p=[0.35, 0.35, 0.29, 0.01])
    pi = np.where(rng.random(n) < 0.02, 0.0, rng.uniform(0.02, 0.9, n))
    selected = rng.random(n) < np.maximum(pi, 0.05)
    graded = selected & (rng.random(n) < 0.8)
    graded[np.flatnonzero(model == "m3")[1:]] = False
    gold = np.clip(0.3 + 0.5 * rng.random(n) + 0.2 * (model == "m0"), 0, 1)
    pref = np.clip(gold + rng.normal(0, 0.2, n), 0, 1)
    ref_prob = np.where(rng.random(n) < 0.15, 0.0, rng.uniform(0.05, 1.0, n))
    ref_quality = np.clip(gold + rng.normal(0, 0.3, n), -0.2, 1.2)
    cost = rng.uniform(1e-5, 1e-3, n)
    rows = [
        ReportRow(
            model=str(model[i]),
            cost=float(cost[i]),
            reference_cost=float(cost[i] * rng.uniform(0.5, 20)),
            reference_quality=float(ref_quality[i]) if rng.random() > 0.1 else None,
            reference_probability=float(ref_prob[i]),
            audit_probability=float(pi[i]),
            selected=bool(selected[i]),
            gold=float(gold[i]) if graded[i] else None,
            preference=float(pref[i]) if rng.random() < 0.6 else None,
        )
        for i in range(n)
    ]
    return [replace(r, **change) for r in rows]


def _streamed(rows: list[ReportRow], reference: str | None) -> dict[str, Any]:
    """The report built from a one-shot generator, as the service feeds it."""
    built = build_report(
        (r for r in rows), reference=reference, since=T0, until=T0, pairs=[], computed_at=T0
    )
    return built.model_dump(exclude=DROP)


def _arrays(rows: list[ReportRow]) -> dict[str, np.ndarray]:
    """The rows as columns, None as NaN."""
    fields = [f.name for f in dataclass_fields(ReportRow) if f.name != "model"]
    out = {f: np.array([getattr(r, f) for r in rows], dtype=float).ravel() for f in fields}
    return {**out, "model": np.array([r.model for r in rows], dtype=str)}


def _subset(a: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[keep] for k, v in a.items()}


def _ci(values: np.ndarray) -> dict[str, float] | None:
    if values.size < 2:
        return None
    ci = classical_mean_ci(values)
    return {"estimate": ci.estimate, "lower": ci.lo, "upper": ci.hi}


def _audit_weights(a: dict[str, np.ndarray]) -> np.ndarray:
    """1 / (π × graded/selected) on graded rows with π > 0."""
    graded, selected = ~np.isnan(a["gold"]), a["selected"].sum()
    completion = graded.sum() / selected if selected else 1.0
    usable = graded & (a["audit_probability"] > 0)
    return np.where(usable, 1 / np.where(usable, a["audit_probability"] * completion, 1), 0.0)


def _routed_terms(a: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
    given = ~np.isnan(a["preference"])
    fill = a["preference"][given].mean() if given.any() else 0.5
    f = np.where(given, a["preference"], fill)
    return ppi_ipw_terms(np.nan_to_num(a["gold"]), f, _audit_weights(a))


def _quality(terms: np.ndarray, lam: float, golds: int) -> dict[str, float]:
    return {**_ci(terms), "gold_grades": golds, "lambda_hat": lam}  # type: ignore[dict-item]


def _model(name: str, a: dict[str, np.ndarray], total: int, ref: str | None) -> dict[str, Any]:
    golds, prefs = int((~np.isnan(a["gold"])).sum()), a["preference"][~np.isnan(a["preference"])]
    quality = _quality(*_routed_terms(a), golds) if golds >= 2 else None
    return {
        "model": name,
        "decisions": a["cost"].size,
        "share": a["cost"].size / total if total else 0.0,
        "preference_mean": prefs.mean() if prefs.size else None,
        "quality": quality,
        "quality_reason": None if quality else "why",
        "cost_per_query_usd": _ci(a["cost"]),
        "saving_per_query_usd": _ci(a["reference_cost"] - a["cost"]) if ref else None,
    }


def _reference(a: dict[str, np.ndarray], ref: str | None) -> tuple[Any, Any]:
    """The reference's off-policy quality and quality retained, on the rows it could have had."""
    usable = (a["reference_probability"] > 0) & ~np.isnan(a["reference_quality"])
    s = _subset(a, usable)
    mine = s["model"] == ref
    golds = int((mine & ~np.isnan(s["gold"])).sum())
    if ref is None or golds < 2:
        return None, None
    routing = np.where(mine, 1 / np.where(mine, s["reference_probability"], 1), 0.0)
    predicted = np.clip(s["reference_quality"], 0, 1)
    ref_terms, ref_lam = ppi_ipw_terms(
        np.nan_to_num(s["gold"]), predicted, _audit_weights(s) * routing
    )
    routed, _ = _routed_terms(s)
    ratio = routed.mean() / ref_terms.mean()
    ci = classical_mean_ci((routed - ratio * ref_terms) / ref_terms.mean())
    half = (ci.hi - ci.lo) / 2
    retained = {"estimate": ratio, "lower": ratio - half, "upper": ratio + half}
    return _quality(ref_terms, ref_lam, golds), retained


def _oracle(rows: list[ReportRow], ref: str | None) -> dict[str, Any]:
    """The report from the formulas on whole arrays: what build_report computed before it
    streamed."""
    a, n = _arrays(rows), len(rows)
    overall = _model("all", a, n, ref)
    ref_quality, retained = _reference(a, ref)
    saving = overall["saving_per_query_usd"]
    return {
        "reference": ref,
        "decisions": n,
        "audits_selected": int(a["selected"].sum()),
        "audits_graded": int((~np.isnan(a["gold"])).sum()),
        "overall": overall,
        "models": [_model(m, _subset(a, a["model"] == m), n, ref) for m in sorted(set(a["model"]))],
        "saving_total_usd": {k: v * n for k, v in saving.items()} if saving else None,
        "reference_quality": ref_quality,
        "quality_retained": retained,
        "quality_retained_reason": None if retained else "why",
    }


def _assert_same(got: Any, want: Any, path: str = "report") -> None:
    """Equal structure, equal counts and names, floats within 1e-9 relative; a reason is only
    checked for being given (its words are the edge-case tests')."""
    if isinstance(want, dict):
        assert got.keys() == want.keys(), path
        for key in want:
            if key.endswith("_reason"):
                assert (got[key] is None) == (want[key] is None), (path, key, got[key])
            else:
                _assert_same(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_same(g, w, f"{path}[{i}]")
    elif isinstance(want, float | np.floating) and not isinstance(want, bool):
        assert got == pytest.approx(float(want), rel=1e-9), path
    else:
        assert got == want, path


def test_the_streamed_report_matches_the_formulas_on_random_rows() -> None:
    rows = _rows(9000, seed=7)  # three batches, the last one partial
    got, want = _streamed(rows, "m0"), _oracle(rows, "m0")
    _assert_same(got, want)
    per_model = {m["model"]: m for m in got["models"]}
    # The draw exercises what it should: PPI++ in use, a rare model with too few golds.
    assert 0 < got["overall"]["quality"]["lambda_hat"] < 1
    assert got["reference_quality"] is not None and got["quality_retained"] is not None
    assert per_model["m3"]["quality"] is None and per_model["m3"]["decisions"] >= 2


@pytest.mark.parametrize(
    ("case", "n", "change", "ref", "retained"),
    [
        ("no reference", 3000, {}, None, False),
        ("no feedback at all", 3000, {"preference": None}, "m0", True),
        ("nothing graded", 3000, {"gold": None}, "m0", False),
        (
            "the reference never could have been chosen",
            3000,
            {"reference_probability": 0},
            "m0",
            False,
        ),
        ("one row", 1, {}, "m0", False),
        ("empty window", 0, {}, "m0", False),
    ],
)
def test_the_streamed_report_matches_the_formulas_at_the_edges(
    case: str, n: int, change: dict[str, Any], ref: str | None, retained: bool
) -> None:
    rows = _rows(n, seed=11, **change)
    got = _streamed(rows, ref)
    _assert_same(got, _oracle(rows, ref))
    assert (got["quality_retained"] is not None) == retained, case


def test_the_reasons_and_nulls_the_edges_give() -> None:
    empty = _streamed([], "m0")
    assert empty["decisions"] == 0 and empty["models"] == [] and empty["saving_total_usd"] is None
    assert empty["overall"]["share"] == 0.0 and empty["overall"]["cost_per_query_usd"] is None
    assert empty["overall"]["quality_reason"].startswith("0 gold grade(s)")
    assert empty["quality_retained_reason"].startswith("0 gold grade(s) of m0's answers")
    assert _streamed(_rows(50, 3), None)["quality_retained_reason"] == "no reference model"
    one_gold = _rows(50, 3, gold=None)
    one_gold[0] = replace(one_gold[0], gold=0.5, selected=True)
    got = _streamed(one_gold, "m0")
    assert got["audits_graded"] == 1 and got["overall"]["quality"] is None
    assert got["overall"]["quality_reason"].startswith("1 gold grade(s)")
    silent = _streamed(_rows(50, 3, preference=None), "m0")
    assert silent["overall"]["preference_mean"] is None


def test_a_fully_audited_set_is_the_plain_mean_of_its_grades() -> None:
    """π = 1 and every row graded: (1 − w)·f is 0 on every row, so λ̂ must be 0 from the
    moments too (their combination cancels exactly: u·p and p are the same column) and the
    estimate is the grades' mean."""
    rows = _rows(3000, seed=5, audit_probability=1.0, selected=True, reference_probability=1.0)
    rows = [replace(r, gold=round(r.cost * 1000, 3)) for r in rows]
    got = _streamed(rows, "m0")
    _assert_same(got, _oracle(rows, "m0"))
    assert got["overall"]["quality"]["lambda_hat"] == 0.0
    assert got["overall"]["quality"]["estimate"] == pytest.approx(np.mean([r.gold for r in rows]))


def test_moments_do_not_depend_on_how_the_rows_are_batched() -> None:
    rows = _rows(500, seed=9)
    fits = [WindowMoments("m0", batch_size=size).fit(rows) for size in (1, 13, 500)]
    for fit in fits[:-1]:
        for mine, whole in (
            (fit.overall_, fits[-1].overall_),
            (fit.models_["m1"], fits[-1].models_["m1"]),
        ):
            assert mine.n == whole.n and (mine.counts_ == whole.counts_).all()
            np.testing.assert_allclose(mine.moments_.mean_, whole.moments_.mean_, rtol=1e-12)
            np.testing.assert_allclose(
                mine.moments_.comoment_, whole.moments_.comoment_, rtol=1e-10, atol=1e-18
            )


def _generated(n: int) -> Iterator[ReportRow]:
    """n rows made one at a time: nothing but the report can hold them."""
    draw = random.Random(n)
    for i in range(n):
        graded = draw.random() < 0.2
        yield ReportRow(
            model=MOMENT_MODELS[i % 3],
            cost=draw.random() * 1e-3,
            reference_cost=draw.random() * 1e-2,
            reference_quality=draw.random(),
            reference_probability=draw.uniform(0.1, 1.0),
            audit_probability=0.25,
            selected=graded or draw.random() < 0.05,
            gold=draw.random() if graded else None,
            preference=draw.random() if draw.random() < 0.5 else None,
        )


def _peak_bytes(n: int) -> int:
    tracemalloc.start()
    try:
        build_report(_generated(n), reference="m0", since=T0, until=T0, pairs=[], computed_at=T0)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_window() -> None:
    """The peak while building from 10k and from 100k generated rows: the same batch-sized
    amount (a list of 100k rows alone would be ~20 MB)."""
    small, large = _peak_bytes(10_000), _peak_bytes(100_000)
    assert large < small + 256 * 1024, (small, large)
    assert large < 8 * 1024 * 1024, large
