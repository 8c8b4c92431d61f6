"""`bandit-router bench bias`: does bias-corrected preference feedback route better, at equal
audit cost, than preference alone, naive pooling, or the audits alone?

The preference side is SIMULATED (bench/judges.py: a JudgeBench-calibrated judge with a
category-dependent accuracy, an AlpacaEval-calibrated verbosity bonus and a compressed scale);
the gold side is the gold table's real scores. Per seed, on TRAIN prompts:

1. events: each train prompt is logged `events_per_prompt` times (on average) with a model drawn
   uniformly at random (the logging policy); every event gets a simulated preference label;
2. audits: each event's gold label is revealed with probability π = max(audit rate, 2% floor),
   the same audits for every method (equal audit cost); "all_gold" reveals every gold label and
   is the upper bound;
3. labels: `audit.training.corrected_labels` by method, then one `fit_quality` per method.

On TEST prompts each method routes argmax_k q̂_k(x) − λ·c_k(x)/c_norm; its value is the mean over
a fixed λ grid of (true quality − λ·normalised cost) of those decisions. gap_closed =
(corrected − gold_only) / (all_gold − gold_only) on the seed-averaged values.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from bandit_router.audit.training import (
    CORRECTED_METHODS,
    METHODS,
    corrected_labels,
    fit_quality,
    reduce_dimension,
)
from bandit_router.bench.data import BenchData, load_bench_data
from bandit_router.bench.judges import (
    DEFAULT_JUDGE,
    DEFAULT_SCALE,
    PreferenceModel,
    answer_log_lengths,
    calibrate,
    relative_log_length,
)
from bandit_router.bench.latency import machine
from bandit_router.config import Settings
from bandit_router.offline import scores as M

log = logging.getLogger(__name__)

AUDIT_FLOOR = 0.02
# λ in units of "the priciest model's mean cost is worth this much quality", one point per
# half-decade: 0 is pure quality; up to 10, where the cheap models' price differences decide.
# (With one model 10x pricier than the rest, as in both pools, a grid ending at 1 would barely
# weigh the trade-offs between the cheaper models.)
VALUE_LAMBDAS: tuple[float, ...] = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
# A dense sweep for the quality–cost curve behind "quality at equal cost".
CURVE_LAMBDAS = np.concatenate([[0.0], np.geomspace(1e-3, 100, 41)])
BENCH_METHODS: tuple[str, ...] = (*METHODS, "all_gold")


@dataclass
class BiasBenchOptions:
    audit_rate: float = 0.05
    seeds: int = 5
    events_per_prompt: float = 2.0
    test_fraction: float = 0.5
    max_prompts: int | None = None
    judge: str = DEFAULT_JUDGE
    pref_scale: tuple[float, float] = DEFAULT_SCALE
    length_slope: float | None = None  # None: the AlpacaEval-calibrated slope
    normaliser: str = "variance"
    n_components: int = 32
    length_feature: bool = True  # the bias model sees each answer's log length
    lambdas: tuple[float, ...] = VALUE_LAMBDAS
    methods: tuple[str, ...] = BENCH_METHODS
    shared_data: str | None = None  # folder with judgebench/ and alpaca_eval/ (calibration)
    label_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class World:
    """What stays fixed across seeds: data, features, the judge and each answer's length."""

    data: BenchData
    Z: np.ndarray  # (n, c) PCA of the embeddings, fitted on train prompts only
    log_length: np.ndarray  # (n, K) log length of each model's answer (measured or simulated)
    ell: np.ndarray  # (n, K) the same relative to the query's mean over models (judge's bias)
    accuracy: np.ndarray  # (n,) the judge's accuracy on each query
    judge: PreferenceModel
    cost_norm: float

    @property
    def n_models(self) -> int:
        return len(self.data.models)


@dataclass
class Events:
    rows: np.ndarray
    k: np.ndarray
    pref: np.ndarray
    gold: np.ndarray  # NaN where not audited
    gold_all: np.ndarray
    propensity: np.ndarray


def build_world(data: BenchData, opts: BiasBenchOptions) -> World:
    shared = Path(opts.shared_data) if opts.shared_data else None
    judge = PreferenceModel(calibrate(shared), opts.judge, opts.pref_scale, opts.length_slope)
    _, pca = reduce_dimension(data.X[data.train], opts.n_components)
    Z = data.X if pca is None else pca.transform(data.X)
    gm = data.gold
    log_length = answer_log_lengths(gm.output_tokens, gm.models, gm.n_prompts, judge.calibration)
    accuracy = judge.query_accuracy(gm.category, gm.n_prompts)
    cost_norm = M.default_cost_norm(data.costs[data.test])
    return World(
        data,
        np.asarray(Z, dtype=float),
        log_length,
        relative_log_length(log_length),
        accuracy,
        judge,
        cost_norm,
    )


def log_events(world: World, opts: BiasBenchOptions, rng: np.random.Generator) -> Events:
    train = world.data.train
    n_events = max(2, round(opts.events_per_prompt * len(train)))
    rows = np.resize(rng.permutation(train), n_events)
    k = rng.integers(0, world.n_models, size=n_events)  # uniform logging policy
    gold_all = world.data.scores[rows, k].astype(float)
    pref = world.judge.sample(gold_all, world.ell[rows, k], world.accuracy[rows], rng)
    propensity = np.full(n_events, max(opts.audit_rate, AUDIT_FLOOR))
    audited = rng.random(n_events) < propensity
    gold = np.where(audited, gold_all, np.nan)
    return Events(rows, k, pref, gold, gold_all, propensity)


def method_labels(
    method: str, ev: Events, world: World, opts: BiasBenchOptions, seed: int
) -> tuple[np.ndarray, dict[str, Any]]:
    gold, name = (ev.gold_all, "gold_only") if method == "all_gold" else (ev.gold, method)
    lengths = world.log_length[ev.rows, ev.k] if opts.length_feature else None
    return corrected_labels(
        world.Z[ev.rows],
        ev.k,
        world.n_models,
        ev.pref,
        gold,
        ev.propensity,
        name,
        seed=seed,
        normaliser=opts.normaliser,
        n_components=None,  # world.Z is already reduced
        event_features=lengths,
        **opts.label_options,
    )


def evaluate(pred: np.ndarray, world: World, lambdas: tuple[float, ...]) -> dict[str, float]:
    """Value over the λ grid, and the quality the policy reaches at equal cost (curve area)."""
    te = world.data.test
    truth, costs = world.data.scores[te], world.data.costs[te]
    points = M.quality_cost_curve(pred, truth, costs, lambdas, world.cost_norm)
    values = [p.quality - p.lam * p.cost / world.cost_norm for p in points]
    singles = M.single_model_points(truth, costs, world.data.models).values()
    span = (min(p.cost for p in singles), max(p.cost for p in singles))
    curve = M.quality_cost_curve(pred, truth, costs, CURVE_LAMBDAS, world.cost_norm)
    return {
        "value": float(np.mean(values)),
        "quality_at_equal_cost": M.curve_area(curve, span),
        "quality_lambda0": points[0].quality if lambdas[0] == 0 else float("nan"),
    }


def run_seed(world: World, opts: BiasBenchOptions, seed: int) -> dict[str, dict[str, Any]]:
    ev = log_events(world, opts, np.random.default_rng(seed))
    te = world.data.test
    out: dict[str, dict[str, Any]] = {}
    for method in opts.methods:
        t0 = time.perf_counter()
        labels, info = method_labels(method, ev, world, opts, seed)
        quality = fit_quality(world.Z[ev.rows], ev.k, labels, world.n_models, n_components=None)
        pred = quality.predict(world.Z[te])
        out[method] = {
            **evaluate(pred, world, opts.lambdas),
            "label_mse": _label_mse(labels, ev.gold_all),
            "seconds": round(time.perf_counter() - t0, 2),
            "info": info,
        }
    return out


def _logged(result: dict[str, dict[str, Any]], seed: int) -> dict[str, dict[str, Any]]:
    log.info("seed %d: %s", seed, {m: round(r["value"], 4) for m, r in result.items()})
    return result


def _label_mse(labels: np.ndarray, truth: np.ndarray) -> float | None:
    keep = np.isfinite(labels)
    return float(np.mean((labels[keep] - truth[keep]) ** 2)) if keep.any() else None


def _spread(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        "min": float(arr.min()),
        "max": float(arr.max()),
    }


def _gap(value: float, gold_only: float, all_gold: float) -> float | None:
    span = all_gold - gold_only
    return None if abs(span) < 1e-12 else (value - gold_only) / span


def summarise(
    per_seed: list[dict[str, dict[str, Any]]], methods: tuple[str, ...]
) -> dict[str, Any]:
    metrics = ("value", "quality_at_equal_cost", "quality_lambda0", "label_mse")
    summary: dict[str, Any] = {
        m: {
            metric: _spread([s[m][metric] for s in per_seed])
            for metric in metrics
            if all(s[m][metric] is not None for s in per_seed)
        }
        for m in methods
    }
    for m in (m for m in methods if m in CORRECTED_METHODS):
        summary[m].update(_gaps(per_seed, m, summary))
        # Every method sees the same events each seed, so per-seed differences are paired:
        # their spread says more than the overlap of two value bands.
        for base in ("pooled", "preference_only"):
            if base in methods:
                diffs = [s[m]["value"] - s[base]["value"] for s in per_seed]
                summary[m][f"value_minus_{base}"] = _spread(diffs)
    return summary


def _gaps(
    per_seed: list[dict[str, dict[str, Any]]], method: str, summary: dict[str, Any]
) -> dict[str, Any]:
    if not {"gold_only", "all_gold"} <= set(summary):
        return {}
    lo, hi = summary["gold_only"]["value"]["mean"], summary["all_gold"]["value"]["mean"]
    per = [
        _gap(s[method]["value"], s["gold_only"]["value"], s["all_gold"]["value"]) for s in per_seed
    ]
    finite = [g for g in per if g is not None]
    return {
        "gap_closed": _gap(summary[method]["value"]["mean"], lo, hi),
        "gap_closed_by_seed": _spread(finite) if finite else None,
    }


def _verdict(summary: dict[str, Any]) -> dict[str, Any]:
    """The targets, checked on the seed-averaged values."""
    corrected = {m: summary[m] for m in CORRECTED_METHODS if m in summary}
    if not corrected or not {"pooled", "preference_only"} <= set(summary):
        return {}
    best = max(corrected, key=lambda m: corrected[m]["value"]["mean"])
    value = corrected[best]["value"]["mean"]
    gap = corrected[best].get("gap_closed")
    return {
        "best_corrected": best,
        "gap_closed": gap,
        "closes_half_the_gap": gap is not None and gap >= 0.5,
        "beats_pooled": value > summary["pooled"]["value"]["mean"],
        "beats_preference_only": value > summary["preference_only"]["value"]["mean"],
    }


def run_bias_bench_on(
    data: BenchData, opts: BiasBenchOptions, out: Path, source: str | None = None
) -> dict[str, Any]:
    """The benchmark on loaded data (embeddings included); writes result.json and plots."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    with threadpool_limits(limits=1):  # small BLAS problems: threads only contend on 2 cores
        world = build_world(data, opts)
        per_seed = [_logged(run_seed(world, opts, seed), seed) for seed in range(opts.seeds)]
    summary = summarise(per_seed, opts.methods)
    te = data.test
    result: dict[str, Any] = {
        "preference_feedback": world.judge.statement(),
        "simulation": world.judge.summary(),
        "data": {
            "gold": source,
            "prompts": int(len(data.scores)),
            "train": int(len(data.train)),
            "test": int(len(te)),
            "models": data.models,
            "notes": data.notes,
        },
        "options": asdict(opts),
        "audit_probability": max(opts.audit_rate, AUDIT_FLOOR),
        "events_per_seed": int(max(2, round(opts.events_per_prompt * len(data.train)))),
        "value_definition": (
            "mean over lambdas of (true quality - lambda * cost / cost_norm) of the decisions "
            "argmax_k q_hat_k(x) - lambda * cost_k(x) / cost_norm on test prompts; cost_norm = "
            "the priciest model's mean test cost"
        ),
        "reference": {
            "oracle_value": _reference_value(data.scores[te], world, opts.lambdas),
            "random": M.random_point(data.scores[te], data.costs[te])._asdict(),
        },
        "summary": summary,
        "targets": _verdict(summary),
        "per_seed": per_seed,
        "machine": machine(),
    }
    result["seconds"] = round(time.perf_counter() - started, 1)
    (out / "result.json").write_text(json.dumps(result, indent=2, default=_json_default))
    bias_plots(result, out)
    return result


def _reference_value(truth: np.ndarray, world: World, lambdas: tuple[float, ...]) -> float:
    return evaluate(truth, world, lambdas)["value"]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def run_bias_bench(
    settings: Settings,
    gold: Path,
    prices: Path | None,
    out: Path,
    opts: BiasBenchOptions,
    cache_dir: Path,
) -> dict[str, Any]:
    data = load_bench_data(
        settings, gold, prices, cache_dir, opts.test_fraction, 0, opts.max_prompts
    )
    return run_bias_bench_on(data, opts, out, str(gold))


# --------------------------------------------------------------------------- plots


COLOURS = {"gold_only": "tab:grey", "all_gold": "tab:green", "pooled": "tab:orange"}


def bias_plots(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result["summary"]
    methods = list(summary)
    colours = ["tab:blue" if m in CORRECTED_METHODS else COLOURS.get(m, "tab:red") for m in methods]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, metric in zip(axes, ("value", "quality_at_equal_cost"), strict=True):
        stats = [summary[m][metric] for m in methods]
        mean = np.array([s["mean"] for s in stats])
        ax.bar(methods, mean, yerr=[s["std"] for s in stats], capsize=4, color=colours)
        ax.scatter(methods, [s["min"] for s in stats], marker="_", color="black", zorder=3)
        ax.scatter(methods, [s["max"] for s in stats], marker="_", color="black", zorder=3)
        span = mean.max() - mean.min()
        ax.set_ylim(mean.min() - 1.5 * span - 1e-3, mean.max() + 0.8 * span + 1e-3)
        ax.set_title(f"{metric} (mean ± std, min/max over seeds)", fontsize=10)
        ax.tick_params(axis="x", rotation=35)
    for i, m in enumerate(methods):
        gap = summary[m].get("gap_closed")
        if gap is not None:
            top = summary[m]["value"]["max"]
            axes[0].annotate(f"gap {gap:.2f}", (i, top), ha="center", va="bottom", fontsize=8)
    fig.suptitle(
        f"{result['data'].get('gold', '')}: audit probability {result['audit_probability']:g}, "
        f"{len(result['per_seed'])} seeds. Preference feedback SIMULATED "
        f"(JudgeBench/AlpacaEval-calibrated judge), gold = real labels",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out / "value_by_method.png", dpi=110)
    plt.close(fig)
