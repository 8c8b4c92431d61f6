"""CLI sub-commands for offline data, offline routers, warm start and the replay benchmark."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bandit_router.cli.common import bench_group, gold_bench_arguments, options_from
from bandit_router.config import Settings, UserError


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from bandit_router.offline.importers import import_data

    df = import_data(args.format, Path(args.path), Path(args.out))
    print(f"wrote {len(df)} rows to {args.out}")
    return 0


def _embed(settings: Settings, texts: list[str], cache_dir: Path) -> Any:
    from bandit_router.bench.data import embed_prompts

    return embed_prompts(settings, texts, cache_dir)


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    import numpy as np

    from bandit_router.offline import routers
    from bandit_router.offline.formats import gold_matrix, load_battles, load_gold

    cache = Path(args.cache_dir)
    if args.kind == "gold":
        gm = gold_matrix(load_gold(Path(args.data)))
        if gm.split is not None and args.train_split_only:
            gm = gm.take(np.flatnonzero(gm.split == "train"))
        X = _embed(settings, [str(p) for p in gm.prompts], cache)
        router: Any = routers.GoldRegressionRouter(models=gm.models).fit(X, gm.scores)
    else:
        battles = load_battles(Path(args.data))
        prompts = sorted(set(battles["prompt"]))
        index = {p: i for i, p in enumerate(prompts)}
        X = _embed(settings, prompts, cache)
        rows = battles["prompt"].map(index).to_numpy()
        cls = (
            routers.BradleyTerryMFRouter if args.kind == "mf" else routers.SimilarityWeightedRouter
        )
        router = cls().fit(X, battles["model_a"], battles["model_b"], battles["winner"], rows=rows)
    router.save(Path(args.out))
    print(f"trained {args.kind} router over {len(router.models)} models -> {args.out}")
    return 0


def cmd_warm_start(args: argparse.Namespace, settings: Settings) -> int:
    from bandit_router.offline.formats import read_table
    from bandit_router.offline.routers import load_router
    from bandit_router.runtime import prepare_database
    from bandit_router.services.warm_start import publish_warm_start
    from bandit_router.store import repository as repo
    from bandit_router.store.db import make_engine

    router = load_router(Path(args.router))
    rename = dict(item.split("=", 1) for item in args.model_map or [])
    engine = make_engine(settings.database_url)
    prepare_database(engine, settings)
    with engine.connect() as conn:
        pool = {m.name for m in repo.list_models(conn)}
    names = [rename.get(m, m) for m in router.models]
    keep = [k for k, m in enumerate(names) if m in pool]
    if not keep:
        raise UserError(
            f"none of the router's models {router.models} is in the pool {sorted(pool)}: "
            "map them with --model-map router_name=pool_name"
        )
    prompts = sorted(set(read_table(Path(args.prompts))["prompt"].astype(str)))[: args.limit]
    X = _embed(settings, prompts, Path(args.cache_dir))
    quality = router.predict_quality(X)[:, keep]
    version = publish_warm_start(
        engine,
        settings.vw_args,
        X,
        [names[k] for k in keep],
        quality,
        passes=args.passes,
        n_regions=settings.exploration_regions,
        metrics={"router": str(args.router)},
    )
    print(f"published warm-start policy {version}: {len(keep)} models, {len(prompts)} prompts")
    return 0


def cmd_build_starter(args: argparse.Namespace, settings: Settings) -> int:
    from bandit_router.bench.starter_build import build_starter

    shared = Path(args.shared_data) if args.shared_data else settings.shared_data
    command = f"bandit-router build-starter --shared-data {shared} --passes {args.passes}"
    doc = build_starter(
        settings, shared, Path(args.out), Path(args.cache_dir), passes=args.passes, command=command
    )
    results = doc["metrics"]["evaluation"]["results"]
    print(json.dumps(results, indent=2))
    print(f"wrote the starter policy ({', '.join(doc['models'])}) to {args.out}")
    return 0


def cmd_import_gold(args: argparse.Namespace, settings: Settings) -> int:
    """Offline gold labels (unpaired audits) into the store, for the bias estimators."""
    from bandit_router.embed.service import text_hash
    from bandit_router.offline.formats import load_gold
    from bandit_router.runtime import prepare_database
    from bandit_router.store import repository as repo
    from bandit_router.store.db import make_engine

    gold = load_gold(Path(args.path))
    prompts = sorted(set(gold["prompt"].astype(str)))
    X = _embed(settings, prompts, Path(args.cache_dir))
    emb = {p: X[i] for i, p in enumerate(prompts)}
    rows = [
        {
            "prompt_hash": text_hash(p),
            "embedding": emb[p].tobytes(),
            "model": m,
            "score": float(s),
            "source": args.source,
        }
        for p, m, s in zip(gold["prompt"].astype(str), gold["model"], gold["score"], strict=True)
    ]
    engine = make_engine(settings.database_url)
    prepare_database(engine, settings)
    with engine.begin() as conn:
        added = repo.insert_offline_gold(conn, rows)
    print(f"imported {added} new gold labels ({len(rows) - added} already present)")
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from bandit_router.bench.replay import ReplayOptions, run_replay

    opts = options_from(ReplayOptions, args, progress=not args.quiet)
    prices = Path(args.prices) if args.prices else None
    result = run_replay(
        settings, Path(args.gold), prices, Path(args.out), opts, Path(args.cache_dir)
    )
    brief = {
        p["policy"]: {
            k: p.get(k)
            for k in (
                "area",
                "cost_share_to_match_best_single",
                "apgr",
                "cpt50",
                "cpt80",
                "max_quality",
            )
        }
        for p in result["policies"]
    }
    print(
        json.dumps(
            {
                "best_single_model": result["best_single_model"],
                "policies": brief,
                "online": result["online"],
                "seconds": result["seconds"],
            },
            indent=2,
        )
    )
    return 0


def cmd_loop(args: argparse.Namespace, settings: Settings) -> int:
    from bandit_router.bench.loop import LoopOptions, run_loop

    opts = options_from(
        LoopOptions,
        args,
        judges=tuple(args.judges),
        cold=not args.no_cold,
        new_model=not args.no_new_model,
        progress=not args.quiet,
    )
    prices = Path(args.prices) if args.prices else None
    result = run_loop(settings, Path(args.gold), prices, Path(args.out), opts, Path(args.cache_dir))
    print(
        json.dumps(
            {"targets": result["summary"]["targets"], "seconds": result["seconds"]}, indent=2
        )
    )
    return 0


# What `data import <format> PATH` reads: the files as their publishers ship them.
IMPORT_PATHS = {
    "routellm": "lm-sys/RouteLLM routellm/evals/mmlu/responses: a folder of mmlu_<subject>.csv "
    "(or one file); gold",
    "routerbench": "RouterBench zero-shot <task>_train.csv / <task>_test.csv (or a folder of "
    "them); gold with cost_usd",
    "mmlu_pro": "a folder with questions.parquet and correctness_long.parquet; gold",
    "alpaca_eval": "a folder with annotations_compact.parquet and instructions.parquet; battles",
    "arena_bench": "arena-hard-auto's arena-bench: a folder with question.jsonl and "
    "judge_scores.parquet (answer_lengths.parquet optional); gold",
    "arena_bench_battles": "the same folder; battles derived from the judge scores",
    "judgebench": "ScalerLab/JudgeBench .jsonl files with 'judgments' (or a folder); verdicts",
}


def register(sub: Any) -> None:
    from bandit_router.offline.importers import IMPORTERS

    cache_default = "./var/cache"
    data = sub.add_parser("data", help="offline data sets").add_subparsers(
        dest="data", required=True
    )
    s = data.add_parser(
        "import",
        help="convert a published data set into our gold/battles format",
        description="Convert a published data set into a gold table or battles (README, Warm "
        "start). PATH is what the format's publisher ships:",
        epilog="\n".join(f"  {name:<20} {what}" for name, what in IMPORT_PATHS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("format", choices=sorted(IMPORTERS))
    s.add_argument("path", help="the data set's folder or file (see below)")
    s.add_argument("--out", required=True, help=".parquet, .csv or .jsonl")
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("train-offline", help="train an offline router (battles or gold labels)")
    s.add_argument("--kind", choices=["mf", "sw", "gold"], required=True)
    s.add_argument("--data", required=True, help="battles table (mf, sw) or gold table (gold)")
    s.add_argument("--out", required=True)
    s.add_argument("--cache-dir", default=cache_default)
    s.add_argument("--train-split-only", action="store_true")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("warm-start", help="publish an offline router as the active policy")
    s.add_argument("--router", required=True)
    s.add_argument("--prompts", required=True, help="a table with a 'prompt' column")
    s.add_argument("--limit", type=int, default=5000)
    s.add_argument("--passes", type=int, default=1)
    s.add_argument("--model-map", nargs="*", help="router_name=pool_name ...")
    s.add_argument("--cache-dir", default=cache_default)
    s.set_defaults(func=cmd_warm_start)

    from bandit_router.offline.starter import STARTER_DIR

    s = sub.add_parser(
        "build-starter",
        help="rebuild the packaged starter policy from public data (MMLU-Pro)",
        description="Train the starter policy a fresh store serves (README, Warm start) from "
        "MMLU-Pro under the current settings (VW_ARGS, encoder, pool file), evaluate it on "
        "held-out questions and write it as policy.vw + starter.json.",
    )
    s.add_argument(
        "--shared-data",
        help="folder holding mmlu_pro/ (default BANDIT_ROUTER_SHARED_DATA or ../shared/data)",
    )
    s.add_argument("--out", default=str(STARTER_DIR), help="default: the package's own copy")
    s.add_argument("--passes", type=int, default=1, help="VW pretraining passes")
    s.add_argument("--cache-dir", default=cache_default)
    s.set_defaults(func=cmd_build_starter)

    s = sub.add_parser("import-gold", help="store offline gold labels (a gold table) for auditing")
    s.add_argument("path")
    s.add_argument("--source", default="offline", help="where the labels come from")
    s.add_argument("--cache-dir", default=cache_default)
    s.set_defaults(func=cmd_import_gold)

    bench = bench_group(sub)
    s = bench.add_parser("replay", help="replay a gold table through the service's policy code")
    gold_bench_arguments(s)
    s.add_argument("--rounds", type=int, default=10_000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--test-fraction", type=float, default=0.5)
    s.add_argument("--batch", type=int, default=500, help="rounds between update jobs")
    s.add_argument("--online-lambda", type=float, default=0.1)
    s.add_argument("--feedback-noise", type=float, default=0.0)
    s.add_argument("--max-prompts", type=int, default=None)
    s.add_argument("--cache-dir", default=cache_default)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_replay)

    s = bench.add_parser(
        "loop", help="the whole learning loop (route, feedback, audits, update, retrain)"
    )
    gold_bench_arguments(s)
    s.add_argument("--seeds", type=int, default=5)
    s.add_argument("--rounds", type=int, default=4000)
    s.add_argument("--online-lambda", type=float, default=0.2)
    s.add_argument("--offline-fraction", type=float, default=0.2)
    s.add_argument("--test-fraction", type=float, default=0.3)
    s.add_argument("--warm", choices=["gold", "battles"], default="gold")
    s.add_argument("--judges", nargs="+", choices=["noisy", "biased", "gold"],
                   default=["noisy", "biased", "gold"])  # fmt: skip
    s.add_argument("--no-cold", action="store_true", help="skip the cold-start runs")
    s.add_argument("--update-every", type=int, default=500, help="rounds between update jobs")
    s.add_argument("--retrain-every", type=int, default=2000, help="rounds between retrainings")
    s.add_argument("--checkpoint-every", type=int, default=500)
    s.add_argument("--audit-floor", type=float, default=None, help="default: AUDIT_RATE_FLOOR")
    s.add_argument("--no-new-model", action="store_true")
    s.add_argument("--max-prompts", type=int, default=None)
    s.add_argument("--cache-dir", default=cache_default)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_loop)
