"""Routing metrics: RouteLLM's PGR / APGR / CPT (two models) and quality–cost curves (N models).

Two-model metrics follow RouteLLM (arXiv 2406.18665): a router emits a score per query (higher =
"send this one to the strong model"); a target share s of strong calls is met by routing the top
round(s·n) scores to the strong model, i.e. thresholding at α = quantile(scores, 1 − s).

N-model metrics follow RouterBench: sweep the trade-off λ, collect (mean quality, mean cost) points,
and summarise the curve by its area over a cost range (AIQ) and by "cost to match" a target quality.
All qualities are means of per-query scores in [0, 1]; costs are mean USD per query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

FloatArray = np.ndarray
Hull = Literal["concave", "running_max"]

# ---------------------------------------------------------------------------------------------
# Two models: PGR, APGR, CPT
# ---------------------------------------------------------------------------------------------


def pgr(q_router: float | FloatArray, q_weak: float, q_strong: float) -> float | FloatArray:
    """Performance gap recovered: (q_router − q_weak) / (q_strong − q_weak); NaN if no gap."""
    gap = q_strong - q_weak
    if gap == 0:
        return np.full_like(np.asarray(q_router, dtype=float), np.nan)[()]
    return (np.asarray(q_router, dtype=float) - q_weak) / gap


def _as_1d(a: Sequence[float] | FloatArray, name: str) -> FloatArray:
    arr = np.asarray(a, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {arr.shape}")
    return arr


def _gain_by_count(
    strong_scores: FloatArray, correct_strong: FloatArray, correct_weak: FloatArray
) -> FloatArray:
    """Total quality gain over all-weak when the top-m scores go strong, for m = 0..n.

    Tied scores cannot be ordered by a threshold rule (α either admits the whole tie group or
    none of it), so inside a tie group we take the expectation under a uniformly random choice of
    which tied queries go strong. That lets every count m — hence every share m/n — be realised
    exactly, and the expected gain is linear inside the group: interpolate between group edges.
    A constant-score router therefore gets exactly the random-routing line, PGR(s) = s.
    """
    n = strong_scores.size
    order = np.argsort(-strong_scores, kind="stable")
    sorted_scores = strong_scores[order]
    diff = (correct_strong - correct_weak)[order]
    cum = np.concatenate([[0.0], np.cumsum(diff)])
    # Group edges: positions where the sorted score changes, plus both ends.
    edges = np.concatenate([[0], np.flatnonzero(np.diff(sorted_scores) != 0) + 1, [n]])
    return np.interp(np.arange(n + 1), edges, cum[edges])


@dataclass(frozen=True)
class RoutingCurve:
    """Per target share: the realised strong-call share, mean quality and PGR."""

    target_share: FloatArray
    share: FloatArray
    quality: FloatArray
    pgr: FloatArray
    q_weak: float
    q_strong: float


def _check_two_model_inputs(
    strong_scores: Sequence[float] | FloatArray,
    correct_strong: Sequence[float] | FloatArray,
    correct_weak: Sequence[float] | FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    s = _as_1d(strong_scores, "strong_scores")
    cs = _as_1d(correct_strong, "correct_strong")
    cw = _as_1d(correct_weak, "correct_weak")
    if not (s.size == cs.size == cw.size) or s.size == 0:
        raise ValueError(
            "strong_scores, correct_strong, correct_weak need the same non-zero length"
        )
    if not (np.isfinite(s).all() and np.isfinite(cs).all() and np.isfinite(cw).all()):
        raise ValueError("scores and correctness must be finite (no NaN)")
    return s, cs, cw


def routing_curve_two_models(
    strong_scores: Sequence[float] | FloatArray,
    correct_strong: Sequence[float] | FloatArray,
    correct_weak: Sequence[float] | FloatArray,
    shares: Sequence[float] | FloatArray,
) -> RoutingCurve:
    """Quality and PGR when a share s of queries (those with the highest scores) goes strong.

    The realised share is round(s·n)/n (nearest achievable count; ties in the scores are split in
    expectation, see `_gain_by_count`), so it differs from s by at most 1/(2n).
    """
    s, cs, cw = _check_two_model_inputs(strong_scores, correct_strong, correct_weak)
    target = np.clip(np.asarray(shares, dtype=float), 0.0, 1.0)
    n = s.size
    counts = np.rint(target * n).astype(int)
    gain = _gain_by_count(s, cs, cw)
    q_weak, q_strong = float(cw.mean()), float(cs.mean())
    quality = q_weak + gain[counts] / n
    return RoutingCurve(
        target_share=target,
        share=counts / n,
        quality=quality,
        pgr=np.asarray(pgr(quality, q_weak, q_strong), dtype=float),
        q_weak=q_weak,
        q_strong=q_strong,
    )


def apgr_shares(n_points: int = 10) -> FloatArray:
    """The APGR grid: the midpoints (i + 0.5)/n_points, i = 0..n_points−1 (0.05, 0.15, …, 0.95).

    Midpoints make the mean a midpoint-rule estimate of the area ∫₀¹ PGR(s) ds. The grid
    0.1, …, 1.0 would be a right Riemann sum: random routing (PGR(s) = s) would score 0.55, and
    every router would get PGR(1) = 1 for free.
    """
    return (np.arange(n_points) + 0.5) / n_points


def apgr(
    strong_scores: Sequence[float] | FloatArray,
    correct_strong: Sequence[float] | FloatArray,
    correct_weak: Sequence[float] | FloatArray,
    n_points: int = 10,
) -> float:
    """Average PGR over `apgr_shares(n_points)`; random routing ≈ 0.5, can exceed 1."""
    curve = routing_curve_two_models(
        strong_scores, correct_strong, correct_weak, apgr_shares(n_points)
    )
    return float(curve.pgr.mean())


def cpt(
    strong_scores: Sequence[float] | FloatArray,
    correct_strong: Sequence[float] | FloatArray,
    correct_weak: Sequence[float] | FloatArray,
    target_pgr: float,
) -> float | None:
    """Call-performance threshold: the smallest strong-call share at which PGR >= target_pgr.

    `target_pgr` is a fraction (0.5 for CPT(50%)). Exact over every achievable share m/n.
    None when no share reaches it (only possible for targets above 1, or with no quality gap).
    """
    s, cs, cw = _check_two_model_inputs(strong_scores, correct_strong, correct_weak)
    gap = cs.mean() - cw.mean()
    if gap == 0:
        return None
    n = s.size
    pgr_by_count = _gain_by_count(s, cs, cw) / n / gap
    # Tolerance: PGR values are ratios of sums, and a hand-computed 0.5 must count as 0.5.
    reached = np.flatnonzero(pgr_by_count >= target_pgr - 1e-12)
    return None if reached.size == 0 else float(reached[0] / n)


# ---------------------------------------------------------------------------------------------
# N models: quality–cost curves
# ---------------------------------------------------------------------------------------------


class CurvePoint(NamedTuple):
    """One operating point: trade-off λ (NaN for fixed policies), mean quality, mean cost (USD)."""

    lam: float
    quality: float
    cost: float


def _costs_2d(costs: FloatArray, shape: tuple[int, int]) -> FloatArray:
    # Per-model prices (K,) are broadcast to every query; per-query costs (n, K) are used as is.
    c = np.asarray(costs, dtype=float)
    return np.broadcast_to(c, shape) if c.ndim == 1 else c


def _cheapest_argmax(values: FloatArray, costs: FloatArray) -> FloatArray:
    """Row-wise argmax of `values`; exact ties go to the cheapest model."""
    best = values.max(axis=1, keepdims=True)
    return np.where(values >= best, costs, np.inf).argmin(axis=1)


def default_cost_norm(costs: FloatArray) -> float:
    """max over models of the model's mean per-query cost: the most expensive model costs 1."""
    c = np.asarray(costs, dtype=float)
    means = c if c.ndim == 1 else c.mean(axis=0)
    norm = float(means.max())
    return norm if norm > 0 else 1.0


def quality_cost_curve(
    pred_quality: FloatArray,
    true_scores: FloatArray,
    costs: FloatArray,
    lambdas: Sequence[float] | FloatArray,
    cost_norm: float | None = None,
) -> list[CurvePoint]:
    """Sweep λ: per query pick argmax_k pred_quality − λ·cost/cost_norm, score with true_scores.

    cost_norm defaults to `default_cost_norm(costs)` (mean cost of the priciest model), so λ = 1
    means "the priciest model's average cost is worth one unit of quality"; pass the same
    cost_norm when comparing routers on one data set.
    """
    pred = np.asarray(pred_quality, dtype=float)
    truth = np.asarray(true_scores, dtype=float)
    if pred.shape != truth.shape or pred.ndim != 2:
        raise ValueError(
            f"pred_quality {pred.shape} and true_scores {truth.shape} must match (n, K)"
        )
    c = _costs_2d(costs, pred.shape)
    norm = default_cost_norm(costs) if cost_norm is None else float(cost_norm)
    rows = np.arange(pred.shape[0])
    points = []
    for lam in lambdas:
        choice = _cheapest_argmax(pred - float(lam) * c / norm, c)
        points.append(
            CurvePoint(float(lam), float(truth[rows, choice].mean()), float(c[rows, choice].mean()))
        )
    return points


def single_model_points(
    true_scores: FloatArray, costs: FloatArray, models: Sequence[str]
) -> dict[str, CurvePoint]:
    """(quality, cost) of always calling each model."""
    truth = np.asarray(true_scores, dtype=float)
    c = _costs_2d(costs, truth.shape)
    if len(models) != truth.shape[1]:
        raise ValueError("one model name per column of true_scores")
    return {
        m: CurvePoint(float("nan"), float(truth[:, k].mean()), float(c[:, k].mean()))
        for k, m in enumerate(models)
    }


def oracle_point(true_scores: FloatArray, costs: FloatArray) -> CurvePoint:
    """Best model per query by true score, the cheapest one among ties."""
    truth = np.asarray(true_scores, dtype=float)
    c = _costs_2d(costs, truth.shape)
    choice = _cheapest_argmax(truth, c)
    rows = np.arange(truth.shape[0])
    return CurvePoint(
        float("nan"), float(truth[rows, choice].mean()), float(c[rows, choice].mean())
    )


def random_point(true_scores: FloatArray, costs: FloatArray) -> CurvePoint:
    """Expected (quality, cost) of a uniformly random model per query (exact, no sampling)."""
    truth = np.asarray(true_scores, dtype=float)
    c = _costs_2d(costs, truth.shape)
    return CurvePoint(float("nan"), float(truth.mean()), float(c.mean()))


def monotone_hull(points: Sequence[CurvePoint], hull: Hull = "concave") -> FloatArray:
    """Vertices (cost, quality), sorted by cost, of the best quality reachable at each cost.

    "running_max": drop every point that a cheaper-or-equal point matches or beats (a step
    function: spend less, keep quality). "concave": additionally take the upper concave hull, as
    RouterBench does — any point on a segment between two operating points is reachable in
    expectation by flipping a biased coin between them per query.
    """
    arr = np.array([(p.cost, p.quality) for p in points], dtype=float)
    if arr.size == 0:
        raise ValueError("no points")
    arr = arr[np.lexsort((-arr[:, 1], arr[:, 0]))]  # by cost, best quality first on equal cost
    keep: list[tuple[float, float]] = []
    for cost, quality in arr:
        if not keep or quality > keep[-1][1]:
            keep.append((cost, quality))
    if hull == "concave":
        keep = _upper_concave(keep)
    return np.array(keep, dtype=float)


def _upper_concave(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    # Monotone chain on points with increasing cost and quality: pop the middle point whenever
    # it lies on or below the chord from its predecessor to the new point.
    out: list[tuple[float, float]] = []
    for p in pts:
        while len(out) >= 2:
            (x1, y1), (x2, y2) = out[-2], out[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:
                out.pop()
            else:
                break
        out.append(p)
    return out


def _hull_value(vertices: FloatArray, cost: float) -> float:
    # Below the cheapest operating point nothing is reachable; above the last one quality stays.
    if cost < vertices[0, 0]:
        return 0.0
    return float(np.interp(cost, vertices[:, 0], vertices[:, 1]))


def curve_area(
    points: Sequence[CurvePoint],
    cost_range: tuple[float, float] | None = None,
    hull: Hull = "concave",
) -> float:
    """Normalised area under the monotone quality–cost curve (RouterBench's AIQ).

    AIQ = 1/(c_hi − c_lo) ∫_{c_lo}^{c_hi} Q̃(c) dc, where Q̃ is `monotone_hull(points, hull)`
    linearly interpolated between vertices ("concave") or as a step function ("running_max"),
    held flat beyond its most expensive vertex and taken as 0 below its cheapest one (a budget
    below every operating point buys nothing). cost_range defaults to the points' own cost span;
    pass a common range (e.g. cheapest to priciest single model) to compare routers. The result
    is a mean quality over the range, in [0, 1] for scores in [0, 1].
    """
    vertices = monotone_hull(points, hull)
    c_lo, c_hi = cost_range if cost_range is not None else (vertices[0, 0], vertices[-1, 0])
    if c_hi < c_lo:
        raise ValueError("cost_range must be (low, high)")
    if c_hi == c_lo:
        return _hull_value(vertices, c_hi)
    start = max(c_lo, vertices[0, 0])
    if start >= c_hi:
        return 0.0
    inner = vertices[(vertices[:, 0] > start) & (vertices[:, 0] < c_hi), 0]
    xs = np.concatenate([[start], inner, [c_hi]])
    if hull == "concave":
        ys = np.interp(xs, vertices[:, 0], vertices[:, 1])
        area = float(np.sum((ys[1:] + ys[:-1]) / 2 * np.diff(xs)))
    else:
        # A step function holds each vertex's quality until the next vertex.
        steps = np.searchsorted(vertices[:, 0], xs[:-1], side="right") - 1
        area = float(np.sum(vertices[steps, 1] * np.diff(xs)))
    return area / (c_hi - c_lo)


def cost_to_match(
    points: Sequence[CurvePoint],
    target_quality: float,
    ref_cost: float,
    hull: Hull = "concave",
) -> float | None:
    """Smallest cost, as a share of ref_cost, at which the monotone curve reaches target_quality.

    Interpolates linearly along the "concave" hull (or jumps at vertices for "running_max").
    None if no point reaches the target. Typical use: target = best single model's quality,
    ref_cost = its cost ("X% of its quality at Y% of its cost").
    """
    if ref_cost <= 0:
        raise ValueError("ref_cost must be positive")
    vertices = monotone_hull(points, hull)
    reached = np.flatnonzero(vertices[:, 1] >= target_quality)
    if reached.size == 0:
        return None
    i = int(reached[0])
    if i == 0 or hull == "running_max":
        return float(vertices[i, 0] / ref_cost)
    (c0, q0), (c1, q1) = vertices[i - 1], vertices[i]
    cost = c0 + (target_quality - q0) / (q1 - q0) * (c1 - c0)
    return float(cost / ref_cost)
