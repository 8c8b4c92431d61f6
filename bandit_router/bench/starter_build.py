"""`bandit-router build-starter`: train the packaged starter policy from public data.

Recipe (README, Warm start):
1. MMLU-Pro gold (`<shared data>/mmlu_pro`, through the `mmlu_pro` importer), one column per
   pool model: the model's own answers where MMLU-Pro has them, else a named stand-in
   (POOL_SOURCES below). Held-out questions (offline/starter.py, `is_heldout`) are left out.
2. A GoldRegressionRouter (one logistic regression per model on the query embedding) fitted on
   the rest, embedded with the configured encoder through the data-set cache.
3. `publish_warm_start` (the production path) pretrains VW on the router's predictions under the
   settings' VW_ARGS into a temporary SQLite store; that policy-version row is exported.
4. The exported policy routes the held-out questions greedily at λ = 0 and at the balanced
   preset, beside every single pool model; the numbers go into the artifact's JSON.

Because every step is the current production code and settings, running it again after a change
to VW_ARGS or policy/features.py rebuilds a starter that loads under them.
"""

from __future__ import annotations

import logging
import os
import platform
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bandit_router.config import Settings, UserError
from bandit_router.offline.formats import GoldMatrix
from bandit_router.offline.starter import SOURCE, is_heldout, sha256, write_starter
from bandit_router.policy.pool import ModelSpec
from bandit_router.store.records import columns

if TYPE_CHECKING:
    from bandit_router.offline.routers import GoldRegressionRouter
    from bandit_router.store.models import PolicyVersion

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """Whose MMLU-Pro answers stand for a pool model."""

    answers: str  # model name in correctness_long.parquet, as the mmlu_pro importer cleans it
    stand_in: str | None = None  # why another model's answers are used (None: the model itself)


# Of the example pool, MMLU-Pro has gpt-4o, Mixtral-8x7B-Instruct and Llama-3.1-8B-Instruct;
# arena_bench_v1 has only Mixtral, and no data set in ../shared/data has gpt-4o-mini or any
# Claude 3 model. Each missing one gets the answers of an MMLU-Pro model of its class (a
# frontier lab's small-and-cheap, or large, model of mid-2024), so what the starter predicts for
# it is that model's quality, not its own, until feedback corrects it.
POOL_SOURCES: dict[str, Source] = {
    "gpt-4o": Source("gpt-4o-2024-05-13"),
    "gpt-4o-mini": Source(
        "gemini-1.5-flash-002",
        "not in the data; stand-in: Google's small, cheap model of the same period",
    ),
    "claude-3-5-sonnet": Source(
        "gemini-1.5-pro-002",
        "not in the data; stand-in: Google's large model of the same period",
    ),
    "mixtral-8x7b-instruct": Source("Mixtral-8x7B-Instruct-v0.1"),
    "llama-3.1-8b-instruct": Source("Meta-Llama-3_1-8B-Instruct"),
}
MMLU_PRO = "mmlu_pro"


def pool_sources(pool: list[ModelSpec]) -> dict[str, Source]:
    unknown = [m.name for m in pool if m.name not in POOL_SOURCES]
    if unknown:
        raise UserError(
            f"no public data is mapped to pool model(s) {', '.join(unknown)}: the starter covers "
            f"{', '.join(POOL_SOURCES)} (bench/starter_build.py, POOL_SOURCES)"
        )
    return {m.name: POOL_SOURCES[m.name] for m in pool}


def mmlu_pro_gold(shared_data: Path, sources: dict[str, Source]) -> GoldMatrix:
    """Questions x pool models, each cell the source model's 0/1 correctness."""
    from bandit_router.offline.formats import gold_matrix
    from bandit_router.offline.importers import import_mmlu_pro

    gold = import_mmlu_pro(shared_data / MMLU_PRO)
    by_answers = {s.answers: name for name, s in sources.items()}
    gold = gold[gold["model"].isin(by_answers)]
    gold = gold.assign(model=gold["model"].map(by_answers))
    return gold_matrix(gold, models=list(sources), validate=False)


def _machine() -> str:
    from importlib.metadata import version

    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, vowpalwabbit {version('vowpalwabbit')}"
    )


def build_starter(
    settings: Settings,
    shared_data: Path,
    out: Path,
    cache_dir: Path,
    *,
    passes: int = 1,
    command: str = "bandit-router build-starter",
) -> dict[str, Any]:
    """Build, export and evaluate the starter for the settings' pool; returns the JSON written."""
    from bandit_router.bench.data import embed_prompts
    from bandit_router.offline.routers import GoldRegressionRouter
    from bandit_router.policy.pool import load_pool_file
    from bandit_router.services.warm_start import publish_warm_start
    from bandit_router.store import repository as repo
    from bandit_router.store.db import make_engine, migrate

    pool = [ModelSpec(**s.model_dump()) for s in load_pool_file(settings.pool_file)]
    sources = pool_sources(pool)
    gm = mmlu_pro_gold(shared_data, sources)
    heldout = np.array([is_heldout(q) for q in gm.prompt_ids])
    train, test = gm.take(np.flatnonzero(~heldout)), gm.take(np.flatnonzero(heldout))
    X = embed_prompts(settings, [str(p) for p in gm.prompts], cache_dir)
    X_train, X_test = X[~heldout], X[heldout]

    router = GoldRegressionRouter(models=train.models).fit(X_train, train.scores)
    data_files = {
        f"{MMLU_PRO}/{name}": sha256((shared_data / MMLU_PRO / name).read_bytes())
        for name in ("questions.parquet", "correctness_long.parquet")
    }
    provenance = {
        "data": "MMLU-Pro (TIGER-AI-Lab) questions and per-model correctness",
        "data_files_sha256": data_files,
        "answers": {m: s.answers for m, s in sources.items()},
        "stand_ins": {m: s.stand_in for m, s in sources.items() if s.stand_in},
        "router": {"kind": router.kind, "C": router.C},
        "train_questions": train.n_prompts,
        "heldout_questions": test.n_prompts,
        "heldout_rule": "offline/starter.py is_heldout: sha256('starter-heldout:<question_id>'),"
        " first 8 bytes mod 5 == 0",
        "encoder_backend": settings.embedding_backend,
    }
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/starter.db"
        migrate(url)
        engine = make_engine(url)
        try:
            version = publish_warm_start(
                engine,
                settings.vw_args,
                X_train,
                train.models,
                router.predict_quality(X_train),
                passes=passes,
                n_regions=settings.exploration_regions,
                source=SOURCE,
                metrics={"starter": provenance},
            )
            with engine.connect() as conn:
                row = repo.get_full_policy(conn, version)
        finally:
            engine.dispose()
    assert row is not None
    evaluation = evaluate(settings, row, router, X_test, test, pool, sources)
    metrics = {**row.metrics, "evaluation": evaluation}
    meta = {
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": _machine(),
        "models": train.models,
    }
    return write_starter(out, {**columns(row), "metrics": metrics}, meta)


def evaluate(
    settings: Settings,
    row: PolicyVersion,
    router: GoldRegressionRouter,
    X: np.ndarray,
    gm: GoldMatrix,
    pool: list[ModelSpec],
    sources: dict[str, Source],
) -> dict[str, Any]:
    """The exported policy's greedy choice on held-out questions, as the service would make it
    (policy/decide.py: predicted quality − λ · cost / the priciest model's cost), at λ = 0 and
    the balanced preset; every single model, random and the oracle beside it. Quality is the
    gold correctness of the answering model (a stand-in's for a stand-in); cost is the pool's
    expected cost of the query, the estimate the router itself uses."""
    from bandit_router.offline.scores import oracle_point, random_point, single_model_points
    from bandit_router.policy.decide import Policy, decide
    from bandit_router.policy.exploration import ExplorationConfig
    from bandit_router.policy.learner import QualityModel
    from bandit_router.services.policies import tally_of

    specs = [next(m for m in pool if m.name == name) for name in gm.models]
    tokens = [max(1, round(len(str(p)) / settings.chars_per_token)) for p in gm.prompts]
    costs = np.array([[m.expected_cost(t) for m in specs] for t in tokens])
    tally = tally_of(row)
    model = QualityModel(row.vw_args, row.model_bytes)
    policy = Policy(0, model, tally.totals, tally.regions, tally.by_region)
    greedy = ExplorationConfig(kind="greedy")
    rows = np.arange(gm.n_prompts)
    predicted = np.zeros_like(gm.scores)
    results: dict[str, Any] = {}
    try:
        for preset in ("quality", "balanced"):
            lam = settings.preset_lambda(preset)
            chosen = np.empty(gm.n_prompts, dtype=int)
            for i in rows:
                choice = decide(policy, "", X[i], specs, tokens[i], costs[i].max(), lam, greedy)
                chosen[i], predicted[i] = choice.chosen, choice.quality
            results[f"starter, preset {preset}"] = _point(
                gm.scores[rows, chosen].mean(),
                costs[rows, chosen].mean(),
                **{"lambda": lam},
                share={m: round(float((chosen == k).mean()), 4) for k, m in enumerate(gm.models)},
            )
    finally:
        model.close()
    by_router = router.predict_quality(X).mean(axis=0)
    for k, (name, p) in enumerate(single_model_points(gm.scores, costs, gm.models).items()):
        results[name] = _point(
            p.quality,
            p.cost,
            answers_from=sources[name].answers,
            predicted_quality=round(float(predicted[:, k].mean()), 4),
            router_predicted_quality=round(float(by_router[k]), 4),
        )
    results["random"] = _point(*random_point(gm.scores, costs)[1:])
    results["oracle"] = _point(*oracle_point(gm.scores, costs)[1:])
    return {"heldout_questions": gm.n_prompts, "results": results}


def _point(quality: float, cost: float, **extra: Any) -> dict[str, Any]:
    return {
        "quality": round(float(quality), 4),
        "usd_per_1k_queries": round(float(cost) * 1000, 4),
        **extra,
    }
