"""`bandit-router bench replay`: the router on real gold data, against the baselines that matter.

Train prompts feed the offline routers and the online simulation (service code, simulated feedback
= the gold score of the chosen model, optionally flipped); test prompts are only ever used to
evaluate. Every policy is scored by the quality–cost curve it traces as λ sweeps.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bandit_router.bench.data import BenchData, load_bench_data
from bandit_router.bench.latency import machine
from bandit_router.bench.online import Feedback, Stream, predict_matrix, run_stream, store_for
from bandit_router.config import Settings
from bandit_router.offline import scores as M
from bandit_router.offline.routers import BradleyTerryMFRouter, GoldRegressionRouter
from bandit_router.services.warm_start import publish_warm_start

log = logging.getLogger(__name__)

LAMBDAS = np.concatenate([[0.0], np.geomspace(1e-3, 100, 41)])


@dataclass
class ReplayOptions:
    rounds: int = 10_000
    seed: int = 0
    test_fraction: float = 0.5
    batch: int = 500  # the update job runs every `batch` rounds
    online_lambda: float = 0.1
    feedback_noise: float = 0.0  # probability that a simulated 0/1 reward is flipped
    max_prompts: int | None = None
    battles_per_prompt: int = 20
    mf_epochs: int = 30
    warm_passes: int = 1
    progress: bool = True


def battles_from_gold(
    scores: np.ndarray, rows: np.ndarray, per_prompt: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise battles on each prompt between models whose gold scores differ (ties dropped, as
    RouteLLM does); at most `per_prompt` random pairs per prompt."""
    k = scores.shape[1]
    pairs = np.array([(a, b) for a in range(k) for b in range(a + 1, k)])
    out_rows, out_a, out_b, out_w = [], [], [], []
    for i in rows:
        diff = scores[i, pairs[:, 0]] != scores[i, pairs[:, 1]]
        cand = pairs[diff]
        if len(cand) > per_prompt:
            cand = cand[rng.choice(len(cand), per_prompt, replace=False)]
        for a, b in cand:
            out_rows.append(i)
            out_a.append(a)
            out_b.append(b)
            out_w.append("model_a" if scores[i, a] > scores[i, b] else "model_b")
    return np.array(out_rows), np.array(out_a), np.array(out_b), np.array(out_w)


def _curve_report(name: str, pred: np.ndarray, data: BenchData, cost_norm: float) -> dict[str, Any]:
    te = data.test
    points = M.quality_cost_curve(pred, data.scores[te], data.costs[te], LAMBDAS, cost_norm)
    return {"policy": name, "curve": [p._asdict() for p in points]}


def _two_model(pred: np.ndarray, data: BenchData, strong: int) -> dict[str, float | None]:
    te, weak = data.test, 1 - strong
    s = pred[:, strong] - pred[:, weak]
    cs, cw = data.scores[te, strong], data.scores[te, weak]
    return {
        "apgr": M.apgr(s, cs, cw),
        "cpt50": M.cpt(s, cs, cw, 0.5),
        "cpt80": M.cpt(s, cs, cw, 0.8),
    }


def _summaries(reports: list[dict[str, Any]], data: BenchData) -> None:
    te = data.test
    singles = M.single_model_points(data.scores[te], data.costs[te], data.models)
    best_name = max(singles, key=lambda m: (singles[m].quality, -singles[m].cost))
    best = singles[best_name]
    lo = min(p.cost for p in singles.values())
    hi = max(p.cost for p in singles.values())
    for rep in reports:
        points = [M.CurvePoint(**p) for p in rep["curve"]]
        hull = M.monotone_hull(points)
        rep["area"] = M.curve_area(points, (lo, hi))
        rep["cost_share_to_match_best_single"] = M.cost_to_match(points, best.quality, best.cost)
        at_cost = {
            m: float(np.interp(p.cost, hull[:, 0], hull[:, 1], left=0.0))
            for m, p in singles.items()
        }
        rep["quality_gain_at_single_costs"] = {m: at_cost[m] - singles[m].quality for m in singles}
        gains = rep["quality_gain_at_single_costs"].values()
        # At the cheapest model's cost the router can at best be that model, so "matched" counts.
        rep["single_models_beaten"] = sum(g > 1e-9 for g in gains)
        rep["single_models_matched_or_beaten"] = sum(g > -1e-9 for g in gains)
        rep["max_quality"] = float(hull[:, 1].max())


def run_replay(
    settings: Settings,
    gold: Path,
    prices: Path | None,
    out: Path,
    opts: ReplayOptions,
    cache_dir: Path,
) -> dict[str, Any]:
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    data = load_bench_data(
        settings, gold, prices, cache_dir, opts.test_fraction, opts.seed, opts.max_prompts
    )
    rng = np.random.default_rng(opts.seed)
    tr, te = data.train, data.test
    K = len(data.models)
    cost_norm = M.default_cost_norm(data.costs[te])
    result: dict[str, Any] = {
        "data": {
            "gold": str(gold),
            "prompts": int(len(data.scores)),
            "train": int(len(tr)),
            "test": int(len(te)),
            "models": data.models,
            "notes": data.notes,
        },
        "options": asdict(opts),
        "machine": machine(),
        "feedback": "simulated: the gold score of the chosen model"
        + (f", flipped with probability {opts.feedback_noise}" if opts.feedback_noise else ""),
    }
    singles = M.single_model_points(data.scores[te], data.costs[te], data.models)
    result["single_models"] = {m: p._asdict() for m, p in singles.items()}
    best = max(singles, key=lambda m: (singles[m].quality, -singles[m].cost))
    result["best_single_model"] = {"model": best, **singles[best]._asdict()}
    result["random"] = M.random_point(data.scores[te], data.costs[te])._asdict()
    result["oracle"] = M.oracle_point(data.scores[te], data.costs[te])._asdict()

    reports: list[dict[str, Any]] = []
    preds: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    supervised = GoldRegressionRouter(models=data.models).fit(data.X[tr], data.scores[tr])
    preds["supervised_full_information"] = supervised.predict_quality(data.X[te])
    rows, a, b, w = battles_from_gold(data.scores, tr, opts.battles_per_prompt, rng)
    mf = BradleyTerryMFRouter(models=data.models, epochs=opts.mf_epochs, seed=opts.seed)
    mf.fit(data.X, [data.models[i] for i in a], [data.models[i] for i in b], w, rows=rows)
    preds["offline_mf_router"] = mf.predict_quality(data.X[te])
    result["offline_training_s"] = round(time.perf_counter() - t0, 2)
    result["battles"] = int(len(rows))

    pool_yaml = out / "pool.yaml"
    pool_yaml.write_text(
        yaml.safe_dump(
            {
                "models": [
                    {
                        "name": m.name,
                        "input_price": m.input_price,
                        "output_price": m.output_price,
                        "expected_output_tokens": m.expected_output_tokens,
                    }
                    for m in data.pool
                ]
            }
        )
    )

    def feedback(i: int, k: int, g: np.random.Generator) -> Feedback:
        r = float(data.scores[i, k])
        if opts.feedback_noise and g.random() < opts.feedback_noise:
            r = 1.0 - r
        return Feedback("reward", r)

    online: dict[str, Any] = {}
    rewards: dict[str, list[float]] = {}
    # Warm starts: from the RouteLLM-style router trained on battles, and from the supervised
    # router trained on the train split's gold labels.
    warm_sources = {"cold": None, "warm_mf": mf, "warm_supervised": supervised}
    scratch = tempfile.mkdtemp(prefix="replay-")  # the simulated stores: large, not results
    for start, router in warm_sources.items():
        engine, s = store_for(settings, Path(scratch), f"replay-{start}", pool_yaml)
        if router is not None:
            t0 = time.perf_counter()
            publish_warm_start(
                engine,
                s.vw_args,
                data.X[tr],
                data.models,
                router.predict_quality(data.X[tr]),
                passes=opts.warm_passes,
                n_regions=s.exploration_regions,
            )
            online[f"{start}_pretrain_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        prompts = np.random.default_rng(opts.seed + 1).choice(tr, opts.rounds)
        stream = Stream(prompts, opts.online_lambda, update_every=opts.batch, grade_audits=False)
        run, policy = run_stream(
            engine, s, data.scores, data.models, data.X, data.input_tokens, data.costs, stream,
            feedback, f"bandit-{start}", seed=opts.seed + 1, progress=opts.progress,
        )  # fmt: skip
        online[start] = {
            **run.summary(),
            "seconds": round(time.perf_counter() - t0, 2),
            "first_1000_mean_reward": float(np.mean(run.reward[:1000])),
        }
        rewards[start] = run.reward
        preds[f"bandit_{start}"] = predict_matrix(policy, data.X[te], data.models)
        engine.dispose()
    shutil.rmtree(scratch, ignore_errors=True)
    result["online"] = online

    for name, pred in preds.items():
        reports.append(_curve_report(name, pred, data, cost_norm))
    _summaries(reports, data)
    if K == 2:
        strong = int(np.argmax(data.scores[tr].mean(axis=0)))
        result["strong_model"] = data.models[strong]
        for rep in reports:
            rep.update(_two_model(preds[rep["policy"]], data, strong))
        noise = rng.random(len(te))
        result["random"].update(
            _two_model(
                np.stack([noise, -noise], 1) if strong == 0 else np.stack([-noise, noise], 1),
                data,
                strong,
            )
        )
    result["policies"] = reports
    result["seconds"] = round(time.perf_counter() - started, 1)
    (out / "result.json").write_text(json.dumps(result, indent=2, default=float))
    from bandit_router.bench.plots import replay_plots

    replay_plots(result, rewards, out, preds if K == 2 else None, data)
    return result
