"""`bandit-router bench loop`: does the whole learning loop make routing better?

Per seed the prompts of a gold table are split three ways: an OFFLINE part trains the warm start
(a supervised router on its gold labels, or RouteLLM's MF router on battles derived from them),
an ONLINE part is the stream of queries the service routes, and a TEST part is only ever used to
value policies. Every learning policy runs the service's own code (bench/online.py: the routing
decision /v1/route makes, the SQL store, audits drawn with the service's π and graded with gold,
the update job every `update_every` rounds, the retraining job every `retrain_every` rounds with
its real promotion rule). At checkpoints the ACTIVE policy's greedy choice is valued on test at
every λ of a grid: the mean of gold quality − λ·cost normalised by the priciest model's expected
cost for that query (the trade-off the router itself makes).

Policies valued in one run: the cheapest and the best single model; the warm start, frozen; a
full-information learner (the production learner from the warm start, fed every model's gold
label on each streamed prompt: what the same learner could reach); and per simulated judge
(noisy: thumbs with P(up) = σ(2.5·(gold − ½)); biased: bench/judges.py's JudgeBench- and
AlpacaEval-calibrated judge; gold: the grade itself, the ceiling of any correction) the warm start
learning the loop, the cold start learning the loop, and the warm start learning the judge's raw
feedback with no audits. A last run adds a new model mid-stream that is the best for one category
of queries and unknown to the warm start (λ = 0).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.special import expit

from bandit_router.bench.data import BenchData, load_bench_data
from bandit_router.bench.judges import (
    PreferenceModel,
    answer_log_lengths,
    calibrate,
    relative_log_length,
)
from bandit_router.bench.latency import machine
from bandit_router.bench.online import (
    Feedback,
    FeedbackFn,
    Stream,
    active_policy,
    predict_matrix,
    run_stream,
    store_for,
)
from bandit_router.bench.replay import battles_from_gold
from bandit_router.config import Settings
from bandit_router.offline.routers import BradleyTerryMFRouter, GoldRegressionRouter
from bandit_router.policy.decide import Policy
from bandit_router.policy.learner import QualityModel
from bandit_router.policy.pool import ModelSpec
from bandit_router.services.policies import load_policy
from bandit_router.services.warm_start import publish_warm_start

log = logging.getLogger(__name__)

JUDGES = ("noisy", "biased", "gold")
NEW_MODEL = "newcomer"


@dataclass
class LoopOptions:
    seeds: int = 5
    rounds: int = 4000
    online_lambda: float = 0.2
    lambdas: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0)
    offline_fraction: float = 0.2
    test_fraction: float = 0.3
    warm: str = "gold"  # gold | battles
    judges: tuple[str, ...] = JUDGES
    cold: bool = True
    update_every: int = 500
    retrain_every: int = 2000
    checkpoint_every: int = 500
    audit_floor: float | None = None  # None: the service's AUDIT_RATE_FLOOR
    new_model: bool = True
    new_model_at: int = 1000
    new_model_window: int = 2000
    max_prompts: int | None = None
    progress: bool = False


@dataclass
class Split:
    offline: np.ndarray
    online: np.ndarray
    test: np.ndarray


def split_prompts(data: BenchData, opts: LoopOptions, seed: int) -> Split:
    """Offline / online / test. A gold table's own test split stays the test part."""
    rng = np.random.default_rng(seed)
    gm = data.gold
    n = gm.n_prompts
    if gm.split is not None and set(np.unique(gm.split)) >= {"train", "test"}:
        test = np.flatnonzero(gm.split == "test")
        rest = rng.permutation(np.flatnonzero(gm.split != "test"))
    else:
        perm = rng.permutation(n)
        n_test = max(1, round(opts.test_fraction * n))
        test, rest = np.sort(perm[:n_test]), perm[n_test:]
    n_off = max(1, round(opts.offline_fraction * n))
    return Split(np.sort(rest[:n_off]), rest[n_off:], test)


@dataclass
class World:
    """A gold table as the benchmark's simulated users, judges and graders see it."""

    data: BenchData
    scores: np.ndarray  # (n, K') gold; K' = K + 1 with the new model's column
    costs: np.ndarray  # (n, K') USD
    models: list[str]
    pool: list[ModelSpec]  # the pool the service starts with (without the new model)
    newcomer: ModelSpec | None
    new_category: str | None
    tokens: np.ndarray  # (n, K') output tokens a client reports with its feedback
    ell: np.ndarray  # (n, K') relative log answer length (the biased judge's verbosity cue)
    accuracy: np.ndarray  # (n,) the biased judge's accuracy on each query
    judge: PreferenceModel
    cost_norm: np.ndarray  # (n, K') expected cost / the priciest pool model's, per query


def _newcomer(data: BenchData, category: np.ndarray) -> tuple[str, np.ndarray, ModelSpec] | None:
    """The best model for one category and the weakest elsewhere: a category of 3-15% of the
    prompts, where the pool's best is weakest, becomes its specialty."""
    cats, counts = np.unique(category.astype(str), return_counts=True)
    share = counts / counts.sum()
    eligible = [c for c, s in zip(cats, share, strict=True) if 0.03 <= s <= 0.15]
    if not eligible:
        return None
    best = data.scores.mean(axis=0)

    def pool_best(c: str) -> float:
        return float(data.scores[category == c].mean(axis=0).max())

    specialty = min(eligible, key=pool_best)
    weakest = int(np.argmin(best))
    scores = np.where(category == specialty, 1.0, data.scores[:, weakest])
    median = sorted(data.pool, key=lambda m: m.expected_cost(500))[len(data.pool) // 2]
    spec = ModelSpec(
        NEW_MODEL, median.input_price, median.output_price, median.expected_output_tokens
    )
    return specialty, scores, spec


def build_world(data: BenchData, settings: Settings) -> World:
    judge = PreferenceModel(calibrate())
    gm = data.gold
    n, K = data.scores.shape
    category = np.asarray(gm.category if gm.category is not None else np.full(n, "all"))
    found = _newcomer(data, category)
    scores, costs, models, pool = data.scores, data.costs, list(data.models), list(data.pool)
    newcomer, specialty = None, None
    if found is not None:
        specialty, column, newcomer = found
        median = models.index(sorted(pool, key=lambda m: m.expected_cost(500))[K // 2].name)
        scores = np.column_stack([scores, column])
        costs = np.column_stack([costs, costs[:, median]])
        models.append(NEW_MODEL)
    log_len = answer_log_lengths(gm.output_tokens, data.models, n, judge.calibration)
    if found is not None:
        log_len = np.column_stack([log_len, log_len[:, median]])
    specs = [*pool, *([newcomer] if newcomer else [])]
    expected = np.array([[m.expected_cost(int(t)) for m in specs] for t in data.input_tokens])
    cost_norm = expected / expected[:, :K].max(axis=1, keepdims=True)
    return World(
        data=data,
        scores=scores,
        costs=costs,
        models=models,
        pool=pool,
        newcomer=newcomer,
        new_category=specialty,
        tokens=np.maximum(1, np.round(np.exp(log_len) / settings.chars_per_token)),
        ell=relative_log_length(log_len),
        accuracy=judge.query_accuracy(gm.category, n),
        judge=judge,
        cost_norm=cost_norm,
    )


def feedback_fn(world: World, judge: str) -> FeedbackFn:
    """The simulated feedback on model k's answer to prompt i (a client also reports the
    answer's length, as /v1/route clients may)."""

    def send(i: int, k: int, kind: str, value: Any) -> Feedback:
        return Feedback(kind, value, int(world.tokens[i, k]))

    def gold(i: int, k: int, rng: np.random.Generator) -> Feedback:
        return send(i, k, "reward", float(world.scores[i, k]))

    def noisy(i: int, k: int, rng: np.random.Generator) -> Feedback:
        up = rng.random() < expit(2.5 * (world.scores[i, k] - 0.5))
        return send(i, k, "thumbs", "up" if up else "down")

    def biased(i: int, k: int, rng: np.random.Generator) -> Feedback:
        g = np.array([world.scores[i, k]])
        y = world.judge.sample(g, world.ell[[i], k], world.accuracy[[i]], rng)
        return send(i, k, "reward", float(y[0]))

    return {"gold": gold, "noisy": noisy, "biased": biased}[judge]


def values(
    pred: np.ndarray, world: World, rows: np.ndarray, lambdas: tuple[float, ...]
) -> dict[str, float]:
    """Greedy value on `rows` at each λ: gold − λ·normalised cost of argmax(pred − λ·cost)."""
    K = pred.shape[1]
    cn, g = world.cost_norm[rows, :K], world.scores[rows, :K]
    out = {}
    for lam in lambdas:
        a = np.argmax(pred - lam * cn, axis=1)
        r = np.arange(len(rows))
        out[f"{lam:g}"] = float(np.mean(g[r, a] - lam * cn[r, a]))
    return out


def _pool_yaml(folder: Path, pool: list[ModelSpec]) -> Path:
    path = folder / "pool.yaml"
    keys = ("name", "input_price", "output_price", "expected_output_tokens")
    path.write_text(yaml.safe_dump({"models": [{k: getattr(m, k) for k in keys} for m in pool]}))
    return path


def warm_router(world: World, split: Split, opts: LoopOptions, seed: int) -> Any:
    data = world.data
    off = split.offline
    if opts.warm == "gold":
        return GoldRegressionRouter(models=data.models).fit(data.X[off], data.scores[off])
    rows, a, b, w = battles_from_gold(data.scores, off, 20, np.random.default_rng(seed))
    mf = BradleyTerryMFRouter(models=data.models, seed=seed)
    return mf.fit(data.X, [data.models[i] for i in a], [data.models[i] for i in b], w, rows=rows)


@dataclass
class Trace:
    """Value on test at each checkpoint: {round: {λ: value}}."""

    points: dict[int, dict[str, float]] = field(default_factory=dict)


def _checkpointer(
    world: World, split: Split, opts: LoopOptions, trace: Trace
) -> Callable[[int, Policy], None]:
    names = [m.name for m in world.pool]

    def check(t: int, policy: Policy) -> None:
        pred = predict_matrix(policy, world.data.X[split.test], names)
        trace.points[t] = values(pred, world, split.test, opts.lambdas)

    return check


class SeedRun:
    """Every policy of one seed, each in a store of its own under `scratch`."""

    def __init__(
        self, world: World, settings: Settings, opts: LoopOptions, seed: int, scratch: Path
    ) -> None:
        self.world, self.settings, self.opts, self.seed = world, settings, opts, seed
        self.scratch = scratch
        self.split = split_prompts(world.data, opts, seed)
        self.stream = np.resize(
            np.random.default_rng(seed + 1).permutation(self.split.online), opts.rounds
        )
        self.pool_yaml = _pool_yaml(scratch, world.pool)
        t0 = time.perf_counter()
        router = warm_router(world, self.split, opts, seed)
        self.warm_quality = router.predict_quality(world.data.X[self.split.offline])
        self.warm_training_s = time.perf_counter() - t0
        self.promotions: list[dict[str, Any]] = []

    def store(self, name: str, warm: bool, **overrides: Any) -> tuple[Any, Settings]:
        if self.opts.audit_floor is not None:
            overrides.setdefault("audit_rate_floor", self.opts.audit_floor)
        engine, s = store_for(
            self.settings, self.scratch, f"s{self.seed}-{name}", self.pool_yaml, **overrides
        )
        if warm:
            publish_warm_start(
                engine, s.vw_args, self.world.data.X[self.split.offline], self.world.data.models,
                self.warm_quality, seed=self.seed, n_regions=s.exploration_regions,
            )  # fmt: skip
        return engine, s

    def constants(self) -> dict[str, dict[str, float]]:
        te, K = self.split.test, len(self.world.pool)
        cheapest = int(np.argmin(self.world.costs[self.split.online, :K].mean(axis=0)))
        singles = {
            k: values(np.tile(np.eye(K)[k], (len(te), 1)), self.world, te, self.opts.lambdas)
            for k in range(K)
        }
        lam = f"{self.opts.online_lambda:g}"
        best = max(singles, key=lambda k: singles[k][lam])
        return {"cheapest_model": singles[cheapest], "best_single_model": singles[best]}

    def learn_loop(self, name: str, judge: str, *, warm: bool, audits: bool) -> dict[str, Any]:
        overrides: dict[str, Any] = {}
        if not audits:
            overrides = {"audit_rate_floor": 0.0, "audit_uncertainty_boost": 0.0}
        engine, s = self.store(name, warm, **overrides)
        trace = Trace()
        stream = Stream(
            self.stream, self.opts.online_lambda, update_every=self.opts.update_every,
            retrain_every=self.opts.retrain_every if audits else None, grade_audits=audits,
            checkpoint_every=self.opts.checkpoint_every,
        )  # fmt: skip
        t0 = time.perf_counter()
        run, _ = run_stream(
            engine, s, self.world.scores, self.world.models, self.world.data.X,
            self.world.data.input_tokens, self.world.costs, stream,
            feedback_fn(self.world, judge), f"{name}-{self.seed}", seed=self.seed,
            on_checkpoint=_checkpointer(self.world, self.split, self.opts, trace),
            progress=self.opts.progress,
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        for r in run.retrains:
            self.promotions.append(self._promotion(engine, name, r))
        engine.dispose()
        return {"trace": trace.points, "online": run.summary(), "seconds": round(seconds, 1)}

    def _promotion(self, engine: Any, name: str, result: dict[str, Any]) -> dict[str, Any]:
        """A retraining's decision next to the truth: both policies valued on test."""
        lam = f"{self.opts.online_lambda:g}"
        names = [m.name for m in self.world.pool]
        X = self.world.data.X[self.split.test]
        true = {}
        for side, version in (
            ("candidate", result.get("candidate")),
            ("active", result.get("active_before")),
        ):
            if version is None:
                return {"run": name, "round": result["round"], "skipped": result.get("skipped")}
            policy = load_policy(engine, version)
            true[side] = values(
                predict_matrix(policy, X, names),
                self.world,
                self.split.test,
                (self.opts.online_lambda,),
            )[lam]
            policy.model.close()
        ope = result["ope"]
        return {
            "run": name,
            "round": result["round"],
            "promoted": bool(result["promoted"]),
            "true_difference": true["candidate"] - true["active"],
            "estimated_difference": ope.get("difference", {}).get("value"),
            "lo": ope.get("difference", {}).get("lo"),
            "evaluated_events": ope.get("evaluated_events"),
        }

    def frozen(self) -> dict[str, Any]:
        engine, _ = self.store("frozen", warm=True)
        trace = Trace()
        check = _checkpointer(self.world, self.split, self.opts, trace)
        policy = active_policy(engine)
        for t in range(0, self.opts.rounds + 1, self.opts.checkpoint_every):
            if t == 0:
                check(0, policy)
            else:
                trace.points[t] = trace.points[0]
        policy.model.close()
        engine.dispose()
        return {"trace": trace.points}

    def full_information(self) -> dict[str, Any]:
        """The production learner from the warm start, taught every model's gold label on each
        streamed prompt, at the same cadence as the loop's updates."""
        engine, _ = self.store("full-information", warm=True)
        policy = active_policy(engine)
        model = QualityModel(policy.model.vw_args, policy.model.to_bytes())
        policy.model.close()
        names = [m.name for m in self.world.pool]
        trace = Trace()
        check = _checkpointer(self.world, self.split, self.opts, trace)
        view = Policy(version=0, model=model, model_counts={})
        check(0, view)
        for t, i in enumerate(self.stream, start=1):
            for k in range(len(names)):
                model.learn(self.world.data.X[i], names, k, float(self.world.scores[i, k]))
            if t % self.opts.checkpoint_every == 0 or t == self.opts.rounds:
                check(t, view)
        model.close()
        engine.dispose()
        return {"trace": trace.points}

    def new_model(self) -> dict[str, Any] | None:
        """λ = 0, noisy judge, audits on: the new model joins at `new_model_at`."""
        w, opts = self.world, self.opts
        if w.newcomer is None:
            return None
        engine, s = self.store("new-model", warm=True)
        at, window = opts.new_model_at, opts.new_model_window
        rounds = at + window
        prompts = np.resize(self.stream, rounds)
        stream = Stream(
            prompts, 0.0, update_every=opts.update_every, retrain_every=opts.retrain_every,
            added={at: w.newcomer},
        )  # fmt: skip
        run, policy = run_stream(
            engine, s, w.scores, w.models, w.data.X, w.data.input_tokens, w.costs, stream,
            feedback_fn(w, "noisy"), f"new-model-{self.seed}", seed=self.seed,
            progress=opts.progress,
        )  # fmt: skip
        newcol = w.models.index(NEW_MODEL)
        cat = np.asarray(w.data.gold.category).astype(str)
        in_cat = cat[np.array(run.prompt)] == w.new_category
        chose = np.array(run.model) == newcol
        last = np.arange(rounds) >= rounds - window // 4
        test_cat = self.split.test[cat[self.split.test] == w.new_category]
        names = [m.name for m in w.pool] + [NEW_MODEL]
        greedy = predict_matrix(policy, w.data.X[test_cat], names).argmax(axis=1)
        frozen = self._frozen_new_model_share(test_cat, names)
        engine.dispose()
        return {
            "category": w.new_category,
            "joined_at_round": at,
            "share_of_category_traffic_last_quarter": float(chose[in_cat & last].mean()),
            "share_of_category_traffic_by_500_rounds": [
                float(
                    chose[in_cat & (np.arange(rounds) >= a) & (np.arange(rounds) < a + 500)].mean()
                )
                for a in range(at, rounds, 500)
            ],
            "greedy_share_on_test_category": float(np.mean(greedy == len(names) - 1)),
            "frozen_greedy_share_on_test_category": frozen,
        }

    def _frozen_new_model_share(self, rows: np.ndarray, names: list[str]) -> float:
        engine, _ = self.store("new-model-frozen", warm=True)
        policy = active_policy(engine)
        greedy = predict_matrix(policy, self.world.data.X[rows], names).argmax(axis=1)
        policy.model.close()
        engine.dispose()
        return float(np.mean(greedy == len(names) - 1))


def run_seed(
    world: World, settings: Settings, opts: LoopOptions, seed: int, scratch: Path
) -> dict[str, Any]:
    sr = SeedRun(world, settings, opts, seed, scratch)
    out: dict[str, Any] = {"constants": sr.constants(), "policies": {}}
    policies = out["policies"]
    policies["warm_frozen"] = sr.frozen()
    policies["full_information"] = sr.full_information()
    for judge in opts.judges:
        policies[f"warm/{judge}"] = sr.learn_loop(f"warm-{judge}", judge, warm=True, audits=True)
        if opts.cold:
            policies[f"cold/{judge}"] = sr.learn_loop(
                f"cold-{judge}", judge, warm=False, audits=True
            )
        if judge != "gold":
            policies[f"warm/{judge}/no_audits"] = sr.learn_loop(
                f"raw-{judge}", judge, warm=True, audits=False
            )
    if opts.new_model:
        out["new_model"] = sr.new_model()
    out["promotions"] = sr.promotions
    out["warm_training_s"] = round(sr.warm_training_s, 2)
    return out


# --------------------------------------------------------------------------- summary


def _mean_trace(runs: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    rounds = sorted(set.intersection(*(set(r["trace"]) for r in runs)))
    lams = list(runs[0]["trace"][rounds[0]])
    return {
        t: {lam: float(np.mean([r["trace"][t][lam] for r in runs])) for lam in lams} for t in rounds
    }


def summarise(seeds: list[dict[str, Any]], opts: LoopOptions) -> dict[str, Any]:
    """Seed means per policy, and each target of the issue checked against them."""
    lam = f"{opts.online_lambda:g}"
    names = list(seeds[0]["policies"])
    mean = {n: _mean_trace([s["policies"][n] for s in seeds]) for n in names}
    policies = {}
    for n, tr in mean.items():
        rounds = sorted(tr)
        start, end = tr[rounds[0]], tr[rounds[-1]]
        finals = [s["policies"][n]["trace"][rounds[-1]][lam] for s in seeds]
        policies[n] = {
            "start": start,
            "final": end,
            "change": {k: end[k] - start[k] for k in end},
            "worst_change": min(end[k] - start[k] for k in end),
            "final_sd_at_online_lambda": float(np.std(finals, ddof=1)) if len(finals) > 1 else None,
        }
    constants = {
        c: {
            k: float(np.mean([s["constants"][c][k] for s in seeds]))
            for k in seeds[0]["constants"][c]
        }
        for c in seeds[0]["constants"]
    }
    return {
        "policies": policies,
        "constants": constants,
        "targets": _targets(policies, seeds, opts),
        "curves_at_online_lambda": {
            n: {t: v[lam] for t, v in tr.items()} for n, tr in mean.items()
        },
    }


def _closure(policies: dict[str, Any], learned: str, low: str, high: str, lam: str) -> float | None:
    if not all(p in policies for p in (learned, low, high)):
        return None
    lo, hi = policies[low]["final"][lam], policies[high]["final"][lam]
    if hi - lo <= 1e-9:
        return None  # no gap to close
    return float((policies[learned]["final"][lam] - lo) / (hi - lo))


def _targets(
    policies: dict[str, Any], seeds: list[dict[str, Any]], opts: LoopOptions
) -> dict[str, Any]:
    lam = f"{opts.online_lambda:g}"
    out: dict[str, Any] = {}
    for judge in opts.judges:
        for start in ("warm", "cold"):
            name = f"{start}/{judge}"
            if name in policies:
                worst = policies[name]["worst_change"]
                out[f"{name}: never below its start (worst change over λ ≥ −0.005)"] = {
                    "worst_change": worst,
                    "met": bool(worst >= -0.005),
                }
    gap = _closure(policies, "warm/noisy", "warm_frozen", "full_information", lam)
    if gap is not None or "warm/noisy" in policies:
        out["noisy: closes ≥ 30% of the frozen → full-information gap"] = {
            "closed": gap,
            "gap": policies["full_information"]["final"][lam]
            - policies["warm_frozen"]["final"][lam],
            "met": gap is not None and gap >= 0.3,
        }
    gap = _closure(policies, "warm/biased", "warm/biased/no_audits", "warm/gold", lam)
    if "warm/biased" in policies:
        out["biased: closes ≥ 50% of the raw → gold-feedback gap"] = {
            "closed": gap,
            "met": gap is not None and gap >= 0.5,
        }
    promos = [p for s in seeds for p in s["promotions"] if "promoted" in p]
    worse = [p for p in promos if p["true_difference"] < 0]
    better = [p for p in promos if p["true_difference"] >= 0.01]
    out["promotion: truly worse promoted ≤ 5%"] = {
        "n": len(worse),
        "rate": float(np.mean([p["promoted"] for p in worse])) if worse else None,
        "met": bool(not worse or np.mean([p["promoted"] for p in worse]) <= 0.05),
    }
    out["promotion: truly better by ≥ 0.01 promoted ≥ 80%"] = {
        "n": len(better),
        "rate": float(np.mean([p["promoted"] for p in better])) if better else None,
        "met": bool(better and np.mean([p["promoted"] for p in better]) >= 0.8),
    }
    shares = [
        s["new_model"]["share_of_category_traffic_last_quarter"]
        for s in seeds
        if s.get("new_model")
    ]
    if shares:
        out["new model: ≥ 50% of its category's traffic within 2,000 rounds (λ = 0)"] = {
            "share": float(np.mean(shares)),
            "frozen_greedy_share": float(
                np.mean(
                    [
                        s["new_model"]["frozen_greedy_share_on_test_category"]
                        for s in seeds
                        if s.get("new_model")
                    ]
                )
            ),
            "met": float(np.mean(shares)) >= 0.5,
        }
    return out


def run_loop(
    settings: Settings,
    gold: Path,
    prices: Path | None,
    out: Path,
    opts: LoopOptions,
    cache_dir: Path,
) -> dict[str, Any]:
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    data = load_bench_data(settings, gold, prices, cache_dir, 0.5, 0, opts.max_prompts)
    world = build_world(data, settings)
    scratch = Path(tempfile.mkdtemp(prefix="loop-"))
    seeds = []
    try:
        for seed in range(opts.seeds):
            t0 = time.perf_counter()
            seeds.append(run_seed(world, settings, opts, seed, scratch))
            log.info("bench loop: seed %s done in %.0f s", seed, time.perf_counter() - t0)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "data": {
            "gold": str(gold),
            "prompts": int(data.gold.n_prompts),
            "models": data.models,
            "notes": data.notes,
            "new_model_category": world.new_category,
        },
        "options": asdict(opts),
        "machine": machine(),
        "feedback": {
            "noisy": "thumbs up with probability σ(2.5·(gold − ½))",
            "biased": world.judge.statement(),
            "gold": "the gold score itself",
        },
        "summary": summarise(seeds, opts),
        "seeds": seeds,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "result.json").write_text(json.dumps(result, indent=2, default=_json))
    (out / "summary.md").write_text(markdown(result))
    from bandit_router.bench.plots import loop_plot

    loop_plot(result, out / "value_over_rounds.png")
    return result


def markdown(result: dict[str, Any]) -> str:
    """The seed means as the README shows them: value at the online λ, start → end, the worst
    change over the λ grid, then each target."""
    summary, opts = result["summary"], result["options"]
    lam = f"{opts['online_lambda']:g}"
    lines = [
        f"{result['data']['prompts']} prompts, {len(result['data']['models'])} models, "
        f"{opts['seeds']} seeds, {opts['rounds']} rounds at λ = {lam}, warm start from "
        f"{opts['warm']}; {result['machine']['date']}, {result['seconds'] / 60:.0f} min",
        "",
        f"| policy | value at λ = {lam}: start → end (sd) | worst change over λ ∈ "
        f"{{{', '.join(f'{x:g}' for x in opts['lambdas'])}}} |",
        "|---|---|---|",
    ]
    for name, p in summary["policies"].items():
        sd = p["final_sd_at_online_lambda"]
        lines.append(
            f"| {name} | {p['start'][lam]:.3f} → {p['final'][lam]:.3f}"
            f"{f' ({sd:.3f})' if sd is not None else ''} | {p['worst_change']:+.3f} |"
        )
    for name, v in summary["constants"].items():
        lines.append(f"| {name} | {v[lam]:.3f} | |")
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for name, t in summary["targets"].items():
        shown = {k: v for k, v in t.items() if k != "met"}
        measured = ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items()
        )
        lines.append(f"| {name} | {measured} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def _json(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj)}")
