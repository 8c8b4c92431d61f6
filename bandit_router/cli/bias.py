"""`bandit-router bench bias`: the bias-corrected preference feedback benchmark."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bandit_router.cli.common import bench_group, gold_bench_arguments, options_from
from bandit_router.config import Settings, UserError


def cmd_bench_bias(args: argparse.Namespace, settings: Settings) -> int:
    from bandit_router.bench.bias import BENCH_METHODS, BiasBenchOptions, run_bias_bench

    methods = tuple(args.methods) if args.methods else BENCH_METHODS
    opts = options_from(
        BiasBenchOptions,
        args,
        pref_scale=(args.pref_scale[0], args.pref_scale[1]),
        n_components=args.components,
        length_feature=not args.no_length_feature,
        lambdas=tuple(args.lambdas) if args.lambdas else BiasBenchOptions().lambdas,
        methods=methods,
    )
    try:
        result = run_bias_bench(
            settings,
            Path(args.gold),
            Path(args.prices) if args.prices else None,
            Path(args.out),
            opts,
            Path(args.cache_dir),
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    brief = {
        m: {
            "value": round(s["value"]["mean"], 4),
            "value_std": round(s["value"]["std"], 4),
            "gap_closed": s.get("gap_closed"),
        }
        for m, s in result["summary"].items()
    }
    print(json.dumps({"preference_feedback": result["preference_feedback"]}, indent=2))
    print(json.dumps({"methods": brief, "targets": result["targets"]}, indent=2))
    print(f"seconds: {result['seconds']}; wrote {Path(args.out) / 'result.json'}")
    return 0


def register(sub: Any) -> None:
    from bandit_router.bench.bias import BENCH_METHODS
    from bandit_router.bench.judges import DEFAULT_JUDGE, DEFAULT_SCALE

    s = bench_group(sub).add_parser(
        "bias",
        help="bias-corrected preference feedback vs gold audits (preference side simulated)",
    )
    gold_bench_arguments(s)
    s.add_argument("--audit-rate", type=float, default=0.05, help="audit probability (floor 2%%)")
    s.add_argument("--seeds", type=int, default=5)
    s.add_argument("--events-per-prompt", type=float, default=2.0)
    s.add_argument("--test-fraction", type=float, default=0.5)
    s.add_argument("--max-prompts", type=int, default=None)
    s.add_argument("--cache-dir", default="./var/cache")
    s.add_argument("--methods", nargs="+", choices=BENCH_METHODS, default=None)
    s.add_argument("--lambdas", nargs="+", type=float, default=None, help="value grid")
    bias = s.add_argument_group("simulated preference feedback")
    bias.add_argument("--judge", default=DEFAULT_JUDGE, help="a JudgeBench judge")
    bias.add_argument(
        "--pref-scale",
        nargs=2,
        type=float,
        default=DEFAULT_SCALE,
        metavar=("LO", "HI"),
        help="preference score of a bad / good verdict (a tie is the midpoint)",
    )
    bias.add_argument(
        "--length-slope", type=float, default=None, help="default: fitted on AlpacaEval"
    )
    bias.add_argument("--shared-data", default=None, help="calibration data (judgebench/ ...)")
    est = s.add_argument_group("estimators")
    est.add_argument(
        "--normaliser", choices=["variance", "wasserstein", "none"], default="variance"
    )
    est.add_argument("--components", type=int, default=32, help="PCA width of the embeddings")
    est.add_argument(
        "--no-length-feature",
        action="store_true",
        help="do not show the bias model each answer's log length",
    )
    s.set_defaults(func=cmd_bench_bias)
