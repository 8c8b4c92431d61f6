"""Routing metrics against hand-computed values and simulation."""

from __future__ import annotations

import numpy as np
import pytest

from bandit_router.offline.scores import (
    CurvePoint,
    apgr,
    apgr_shares,
    cost_to_match,
    cpt,
    curve_area,
    monotone_hull,
    oracle_point,
    pgr,
    quality_cost_curve,
    random_point,
    routing_curve_two_models,
    single_model_points,
)


def _perfect_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """20 queries: 8 only the strong model gets right, 10 tie (5 both right, 5 both wrong),
    2 only the weak model gets right. q_strong − q_weak = 6/20. The score is the oracle's."""
    strong = np.array([1] * 8 + [1] * 5 + [0] * 5 + [0] * 2, dtype=float)
    weak = np.array([0] * 8 + [1] * 5 + [0] * 5 + [1] * 2, dtype=float)
    return strong - weak, strong, weak


def test_pgr() -> None:
    assert pgr(0.7, 0.6, 0.8) == pytest.approx(0.5)
    np.testing.assert_allclose(pgr(np.array([0.6, 0.8, 0.9]), 0.6, 0.8), [0.0, 1.0, 1.5])
    assert np.isnan(pgr(0.7, 0.5, 0.5))


def test_apgr_grid_is_midpoints() -> None:
    np.testing.assert_allclose(apgr_shares(), np.arange(0.05, 1.0, 0.1))


def test_perfect_router_apgr_and_cpt_hand_computed() -> None:
    scores, strong, weak = _perfect_case()
    # Strong calls m = 1, 3, …, 19 at the midpoint shares; gain over all-weak (in queries):
    # min(m, 8) until the 10 tied queries are used up (m <= 18), then 8 − (m − 18): 7 at m = 19.
    gains = np.array([1, 3, 5, 7, 8, 8, 8, 8, 8, 7])
    assert apgr(scores, strong, weak) == pytest.approx(gains.mean() / 6)  # = 1.05
    assert cpt(scores, strong, weak, 0.5) == pytest.approx(3 / 20)
    assert cpt(scores, strong, weak, 1.0) == pytest.approx(6 / 20)
    assert cpt(scores, strong, weak, 1.2) == pytest.approx(8 / 20)
    assert cpt(scores, strong, weak, 1.5) is None


def test_routing_curve_endpoints_and_shares() -> None:
    scores, strong, weak = _perfect_case()
    curve = routing_curve_two_models(scores, strong, weak, [0.0, 0.15, 0.5, 1.0])
    np.testing.assert_allclose(curve.share, [0.0, 0.15, 0.5, 1.0])
    np.testing.assert_allclose(curve.quality, [0.35, 0.5, 0.75, 0.65])
    np.testing.assert_allclose(curve.pgr, [0.0, 0.5, 4 / 3, 1.0])
    assert curve.q_weak == pytest.approx(0.35) and curve.q_strong == pytest.approx(0.65)


def test_ties_give_exact_shares_and_expected_quality() -> None:
    rng = np.random.default_rng(0)
    strong = (rng.random(101) < 0.8).astype(float)
    weak = (rng.random(101) < 0.6).astype(float)
    shares = np.linspace(0, 1, 23)
    # A constant score is pure tie: any share is met exactly and PGR is the random line s.
    curve = routing_curve_two_models(np.zeros(101), strong, weak, shares)
    np.testing.assert_allclose(curve.share, np.rint(shares * 101) / 101)
    np.testing.assert_allclose(curve.pgr, curve.share, atol=1e-12)
    assert apgr(np.zeros(101), strong, weak) == pytest.approx(0.5)
    # Coarse scores (5 levels) still realise every share to within 1/(2n).
    coarse = rng.integers(0, 5, 101).astype(float)
    realised = routing_curve_two_models(coarse, strong, weak, shares).share
    assert np.abs(realised - shares).max() <= 1 / (2 * 101) + 1e-12


def test_random_router_apgr_is_half() -> None:
    rng = np.random.default_rng(42)
    values = []
    for _ in range(30):
        strong = (rng.random(2000) < 0.8).astype(float)
        weak = (rng.random(2000) < 0.65).astype(float)
        values.append(apgr(rng.random(2000), strong, weak))
    assert abs(np.mean(values) - 0.5) < 0.05
    assert max(abs(v - 0.5) for v in values) < 0.15


def test_informative_router_beats_random_and_cpt_is_monotone() -> None:
    rng = np.random.default_rng(7)
    strong = (rng.random(3000) < 0.8).astype(float)
    weak = (rng.random(3000) < 0.6).astype(float)
    noisy_oracle = (strong - weak) + rng.normal(0, 1.0, 3000)
    assert apgr(noisy_oracle, strong, weak) > 0.6
    targets = np.linspace(0.05, 1.0, 20)
    cpts = [cpt(noisy_oracle, strong, weak, x) for x in targets]
    assert all(c is not None for c in cpts)
    assert np.all(np.diff(np.array(cpts, dtype=float)) >= 0)
    assert cpt(noisy_oracle, strong, weak, 0.5) < 0.5 < cpt(rng.random(3000), strong, weak, 0.55)


def test_two_model_input_checks() -> None:
    with pytest.raises(ValueError):
        apgr([0.1, 0.2], [1, 0], [0])
    with pytest.raises(ValueError, match="finite"):
        apgr([0.1, np.nan], [1, 0], [0, 0])
    assert cpt([0.1, 0.2], [1, 0], [1, 0], 0.5) is None  # no gap to recover


# ---- N models ------------------------------------------------------------------------------

TRUE = np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
COSTS = np.array([10.0, 2.0, 1.0])  # per query, per model (broadcast)


def test_single_oracle_random_points() -> None:
    singles = single_model_points(TRUE, COSTS, ["big", "mid", "small"])
    assert singles["big"][1:] == (0.75, 10.0)
    assert singles["small"][1:] == (0.5, 1.0)
    # Oracle: q1 -> mid (cheapest of big/mid), q2 -> big, q3 -> small, q4 -> small.
    assert oracle_point(TRUE, COSTS)[1:] == pytest.approx((1.0, (2 + 10 + 1 + 1) / 4))
    assert random_point(TRUE, COSTS)[1:] == pytest.approx((7 / 12, 13 / 3))


def test_quality_cost_curve_sweeps_from_best_to_cheapest() -> None:
    pred = TRUE * 0.9 + 0.05
    points = quality_cost_curve(pred, TRUE, COSTS, [0.0, 0.05, 100.0])
    assert points[0] == CurvePoint(0.0, 1.0, pytest.approx(3.5))  # oracle, cheapest on ties
    # λ = 0.05 with cost_norm = 10: big pays a 0.05 penalty, mid 0.01, small 0.005.
    assert points[1].quality == 1.0 and points[1].cost == pytest.approx(3.5)
    assert points[2][1:] == pytest.approx((0.5, 1.0))  # always the cheapest
    per_query = np.tile(COSTS, (4, 1))
    same = quality_cost_curve(pred, TRUE, per_query, [0.0, 0.05, 100.0])
    assert same == points


def test_curve_area_hand_computed() -> None:
    pts = [CurvePoint(0, 0.5, 1.0), CurvePoint(1, 0.9, 3.0), CurvePoint(2, 0.4, 2.0)]
    assert curve_area(pts) == pytest.approx(0.7)  # trapezoid from (1, .5) to (3, .9)
    assert curve_area(pts, hull="running_max") == pytest.approx(0.5)
    below = [*pts, CurvePoint(3, 0.6, 2.0)]  # under the chord (0.7 at cost 2)
    assert curve_area(below) == pytest.approx(0.7)
    assert curve_area(below, hull="running_max") == pytest.approx(0.55)
    # Wider range: nothing reachable below cost 1, flat at 0.9 beyond cost 3.
    assert curve_area(pts, (0.0, 4.0)) == pytest.approx((1.4 + 0.9) / 4)
    np.testing.assert_allclose(monotone_hull(below), [[1.0, 0.5], [3.0, 0.9]])


def test_cost_to_match() -> None:
    pts = [CurvePoint(0, 0.5, 1.0), CurvePoint(1, 0.9, 3.0)]
    assert cost_to_match(pts, 0.7, ref_cost=3.0) == pytest.approx(2 / 3)
    assert cost_to_match(pts, 0.4, ref_cost=3.0) == pytest.approx(1 / 3)
    assert cost_to_match(pts, 0.95, ref_cost=3.0) is None
    assert cost_to_match(pts, 0.7, ref_cost=3.0, hull="running_max") == pytest.approx(1.0)


def test_router_curve_against_baselines() -> None:
    """A good router's curve covers more area than one that ignores the query."""
    rng = np.random.default_rng(3)
    truth = (rng.random((500, 3)) < [0.8, 0.6, 0.4]).astype(float)
    costs = np.array([10.0, 3.0, 1.0])
    lambdas = np.concatenate([[0.0], np.geomspace(1e-3, 100, 40)])
    informed = quality_cost_curve(truth * 0.6 + 0.2, truth, costs, lambdas)
    blind = quality_cost_curve(np.tile([0.8, 0.6, 0.4], (500, 1)), truth, costs, lambdas)
    span = (1.0, 10.0)
    assert curve_area(informed, span) > curve_area(blind, span)
    best = single_model_points(truth, costs, ["a", "b", "c"])["a"]
    share = cost_to_match(informed, best.quality, best.cost)
    assert share is not None and share < 0.5
