"""Exploration, reproducibility and the VW quality model."""

from __future__ import annotations

import numpy as np
import pytest

from bandit_router.policy.decide import Policy, decide
from bandit_router.policy.exploration import (
    ExplorationConfig,
    distribution,
    draw,
    epsilon_greedy_pmf,
    squarecb_pmf,
    with_floor,
)
from bandit_router.policy.learner import QualityModel
from bandit_router.policy.pool import ModelSpec
from bandit_router.policy.regions import Tally, from_bytes, to_bytes

ARGS = "--cb_adf -q sa --cb_type mtr --quiet"


def test_squarecb_follows_the_gap() -> None:
    scores = np.array([0.9, 0.5, 0.88])
    pmf = squarecb_pmf(scores, gamma=40.0)
    assert pmf.sum() == pytest.approx(1.0)
    assert pmf[1] == pytest.approx(1 / (3 + 40 * 3 * 0.4))
    assert pmf[2] == pytest.approx(1 / (3 + 40 * 3 * 0.02))
    assert pmf[0] > pmf[2] > pmf[1]
    # More gamma, greedier.
    assert squarecb_pmf(scores, gamma=400.0)[0] > pmf[0]
    # Equal scores: uniform.
    assert squarecb_pmf(np.zeros(4), 40.0) == pytest.approx(np.full(4, 0.25))


def test_epsilon_greedy() -> None:
    pmf = epsilon_greedy_pmf(np.array([0.1, 0.7, 0.2]), 0.3)
    assert pmf == pytest.approx([0.1, 0.8, 0.1])


def test_new_models_get_a_floor() -> None:
    pmf = np.array([0.97, 0.01, 0.02])
    out = with_floor(pmf, np.array([False, True, False]), 0.1)
    assert out.sum() == pytest.approx(1.0)
    assert out[1] == pytest.approx(0.1)
    assert out[0] / out[2] == pytest.approx(0.97 / 0.02)
    cfg = ExplorationConfig(kind="greedy")
    assert distribution(np.array([1.0, 0.0]), np.array([False, True]), cfg)[1] == 0.0


def test_draw_is_reproducible_and_follows_the_pmf() -> None:
    pmf = np.array([0.7, 0.2, 0.1])
    assert draw(pmf, "abc") == draw(pmf, "abc")
    counts = np.bincount([draw(pmf, f"id-{i}") for i in range(20_000)], minlength=3) / 20_000
    assert counts == pytest.approx(pmf, abs=0.015)


def test_quality_model_learns_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    model = QualityModel(ARGS)
    # Model 'a' is good where x[0] > 0, 'b' elsewhere.
    for _ in range(3000):
        x = rng.normal(size=8).astype(np.float32)
        chosen = int(rng.integers(2))
        good = (x[0] > 0) == (chosen == 0)
        model.learn(x, ["a", "b"], chosen, 1.0 if good else 0.0)
    pos = np.array([1.5] + [0.0] * 7, dtype=np.float32)
    neg = -pos
    assert model.predict(pos, ["a", "b"])[0] > model.predict(pos, ["a", "b"])[1] + 0.3
    assert model.predict(neg, ["a", "b"])[1] > model.predict(neg, ["a", "b"])[0] + 0.3
    clone = QualityModel(ARGS, model.to_bytes())
    for x in (pos, neg, rng.normal(size=8).astype(np.float32)):
        assert np.array_equal(clone.predict(x, ["a", "b"]), model.predict(x, ["a", "b"]))
    # An unseen model gets a prediction from what all models share, inside [0, 1].
    q = clone.predict(pos, ["a", "b", "brand-new"])
    assert 0.0 <= q[2] <= 1.0


def test_decision_is_reproducible_from_its_id() -> None:
    policy = Policy(version=1, model=QualityModel(ARGS), model_counts={})
    pool = [ModelSpec("x", 1.0, 2.0, 100), ModelSpec("y", 5.0, 10.0, 100)]
    emb = np.ones(16, dtype=np.float32) / 4
    cfg = ExplorationConfig()
    first = decide(policy, "decision-1", emb, pool, 50, 0.002, 0.2, cfg)
    again = decide(policy, "decision-1", emb, pool, 50, 0.002, 0.2, cfg)
    assert first.model == again.model and np.array_equal(first.pmf, again.pmf)
    assert first.cost_usd[1] == pytest.approx((50 * 5.0 + 100 * 10.0) / 1e6)
    picks = {decide(policy, f"d{i}", emb, pool, 50, 0.002, 0.2, cfg).model for i in range(50)}
    assert picks == {"x", "y"}  # both explored


def test_novelty_is_counted_per_region() -> None:
    regions = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    tally = Tally(regions, {"old": 500}, {"old": [250, 250]})
    left, right = np.array([0.9, 0.1], np.float32), np.array([0.1, 0.9], np.float32)
    for _ in range(12):
        tally.add("new", left)
    assert tally.by_region["new"] == [12, 0] and tally.totals["new"] == 12
    policy = Policy(1, QualityModel(ARGS), tally.totals, regions, tally.by_region)
    assert list(policy.is_new(["old", "new"], left, 10)) == [False, False]
    assert list(policy.is_new(["old", "new"], right, 10)) == [False, True]
    # Without a codebook the total decides (policies stored before regions were counted).
    flat = Policy(1, QualityModel(ARGS), {"old": 500, "new": 3})
    assert list(flat.is_new(["old", "new"], right, 10)) == [False, True]
    # Where every model is under the count (a sparse region of the warm start), the one that
    # lags the others is still new; equally counted models are not.
    sparse = Policy(1, QualityModel(ARGS), {}, regions, {"a": [4, 0], "b": [4, 0], "c": [0, 0]})
    assert list(sparse.is_new(["a", "b", "c"], left, 10)) == [False, False, True]
    assert list(sparse.is_new(["a", "b", "c"], right, 10)) == [False, False, False]
    assert from_bytes(to_bytes(regions), dim=2) == pytest.approx(regions)


def test_predict_and_learn_is_predict_then_learn_bit_for_bit() -> None:
    """The jobs value an event and learn it from one VW example: the scores VW computes before
    its update must be exactly predict()'s, and the model after it exactly learn()'s."""
    names = ["a", "b", "c"]
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((200, 384)).astype(np.float32)
    for args in ("--cb_adf -q sa --cb_type mtr -l 0.05 --quiet", "--cb_adf -q sa --quiet"):
        apart, joint = QualityModel(args), QualityModel(args)
        for i, q in enumerate(queries):
            before = apart.predict(q, names)
            apart.learn(q, names, i % 3, float(i % 2))
            np.testing.assert_array_equal(
                joint.predict_and_learn(q, names, i % 3, float(i % 2)), before
            )
        np.testing.assert_array_equal(
            apart.predict(queries[0], names), joint.predict(queries[0], names)
        )
        apart.close()
        joint.close()


def test_linear_readout_scores_as_vw_does_and_falls_back_where_it_cannot() -> None:
    """The serving snapshot scores candidates with a read-out of the VW model (a matrix product):
    it must give VW's predictions on any query, fall back to VW for a model it did not read out,
    and refuse a model that is not linear in the embedding."""
    rng = np.random.default_rng(1)
    model = QualityModel(ARGS)
    for _ in range(500):
        x = rng.normal(size=16).astype(np.float32)
        model.learn(x, ["a", "b", "c"], int(rng.integers(3)), float(x[0] > 0))
    policy = Policy(1, model, {}).read_out(["a", "b", "c"], 16)
    assert policy.readout is not None
    for x in rng.normal(size=(50, 16)).astype(np.float32):
        vw = model.predict(x, ["c", "a"])
        assert np.max(np.abs(policy.quality(x, ["c", "a"]) - vw)) < 1e-5
        assert np.array_equal(policy.quality(x, ["a", "new"]), model.predict(x, ["a", "new"]))
    # Crossing the embedding with itself makes scores quadratic: no read-out, VW serves.
    square = QualityModel("--cb_adf -q sa -q ss --quiet")
    for _ in range(200):
        x = rng.normal(size=16).astype(np.float32)
        square.learn(x, ["a", "b"], int(rng.integers(2)), float(x[0] * x[1] > 0))
    assert Policy(1, square, {}).read_out(["a", "b"], 16).readout is None
