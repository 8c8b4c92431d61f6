"""The `bandit-router` command: serve the router, manage its keys and store, train and benchmark
offline. Paths are relative to the directory it is run from."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from bandit_router.cli.common import Handler
from bandit_router.config import ConfigError, Settings, UserError, load_settings
from bandit_router.policy.pool import PoolFileError

SQLITE_ONE_PROCESS = (
    "--workers > 1 needs PostgreSQL (BANDIT_ROUTER_DATABASE_URL=postgresql://...): SQLite lets one "
    "process write at a time, so several workers would queue on its file lock instead of "
    "group-committing together; on SQLite run one process, which also runs the scheduler"
)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from bandit_router.api.server import uvicorn_options
    from bandit_router.app import create_app
    from bandit_router.runtime import checked_pool_file

    workers = args.workers or settings.serve_workers
    if workers > 1 and settings.database_url.startswith("sqlite"):
        print(f"bandit-router: {SQLITE_ONE_PROCESS}", file=sys.stderr)
        return 2
    checked_pool_file(settings)  # a bad pool file: one line now, not a traceback at start-up
    refused = _bind_refused(settings, args.host)
    if refused:
        print(f"bandit-router: {refused}", file=sys.stderr)
        return 2
    if settings.database_url.startswith("sqlite") and settings.database_url.endswith(
        "bandit-router.db"
    ):
        logging.getLogger("bandit_router").info("database: %s", settings.database_url)
    common = {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        **uvicorn_options(settings),
    }
    if workers == 1:
        uvicorn.run(create_app(settings), **common)
    else:
        _prepare_worker_metrics()
        # Each worker is a new process that builds its own app (and Runtime) from the environment.
        uvicorn.run("bandit_router.app:app_from_env", factory=True, workers=workers, **common)
    return 0


def _bind_refused(settings: Settings, host: str) -> str | None:
    """An open service (no API key) may listen on loopback only; see api/auth.py."""
    from bandit_router.api.auth import BindRefused, check_bind_allowed, is_loopback
    from bandit_router.services.keys import has_api_keys

    try:
        has_keys = not is_loopback(host) and has_api_keys(settings.database_url)
        check_bind_allowed(settings, host, has_keys)
    except (BindRefused, ConfigError) as exc:
        return str(exc)
    return None


def _prepare_worker_metrics() -> None:
    """Each worker writes its Prometheus values to files that every scrape adds up; an operator's
    PROMETHEUS_MULTIPROC_DIR is kept, otherwise a fresh temporary folder."""
    import os
    import tempfile

    from bandit_router.telemetry import MULTIPROC_ENV, prepare_multiprocess

    directory = os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="bandit-router-metrics-")
    prepare_multiprocess(directory)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    import signal
    import threading

    from bandit_router.runtime import run_worker

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run_worker(settings, stop)
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from bandit_router.store.db import migrate

    url = args.database_url or settings.database_url
    migrate(url)
    print(f"database at the newest schema: {url.split('@')[-1]}")
    return 0


def cmd_update(args: argparse.Namespace, settings: Settings) -> int:
    from bandit_router.jobs.runner import JobRunner
    from bandit_router.runtime import prepare_database
    from bandit_router.store.db import make_engine
    from bandit_router.store.models import JobStatus

    engine = make_engine(settings.database_url)
    prepare_database(engine, settings)
    runner = JobRunner(engine, settings)
    try:
        row = runner.run(args.kind)
    finally:
        runner.close()
    print(json.dumps(asdict(row), default=str, indent=2))
    return 0 if row.status == JobStatus.SUCCEEDED else 1


def cmd_prepare_encoder(args: argparse.Namespace, settings: Settings) -> int:
    """Build the configured encoder once, exporting its ONNX file if the cache lacks it: a
    container build or a deploy step pays that cost instead of every replica's first start."""
    from bandit_router.embed.encoder import load_encoder

    enc = load_encoder(settings)
    dim = enc.encode(["hello"]).shape[1]
    where = settings.model_cache_dir.resolve()
    print(f"{enc.name}: {dim}-d vectors, backend {settings.embedding_backend}, files in {where}")
    return 0


def cmd_bench_latency(args: argparse.Namespace, settings: Settings) -> int:
    from bandit_router.bench.latency import run_latency_bench

    report = run_latency_bench(
        settings,
        requests=args.requests,
        concurrency=args.concurrency,
        rate=args.rate,
        out=args.out,
    )
    print(json.dumps(report, indent=2))
    return 0


def cmd_bench_load(args: argparse.Namespace, settings: Settings) -> int:
    from bandit_router.bench.load import run_load_bench

    try:
        report = run_load_bench(
            settings,
            args.scenario,
            duration_s=args.duration,
            rate=args.rate,
            workers=args.workers,
            database_url=args.database_url,
            pg_ctl=args.pg_ctl.split() if args.pg_ctl else None,
            pg_down_s=args.pg_down_seconds,
            out=args.out,
        )
    except ValueError as exc:
        print(f"bandit-router: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


def cmd_bench_jobs(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from bandit_router.bench.jobs import run_jobs_bench

    report = run_jobs_bench(settings, args.events, Path(args.out), seed=args.seed)
    print(json.dumps(report, indent=2))
    failed = [r for r in report["runs"] for j in r["jobs"].values() if j["rc"] != 0]
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bandit-router", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command")

    s = sub.add_parser("serve", help="run the HTTP service")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--log-level", default="info")
    s.add_argument(
        "--workers",
        type=int,
        default=None,
        help="HTTP worker processes (PostgreSQL only; default BANDIT_ROUTER_SERVE_WORKERS or 1)",
    )
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser(
        "worker", help="run only the scheduled jobs, no HTTP (pair with API replicas)"
    )
    s.set_defaults(func=cmd_worker)

    s = sub.add_parser("migrate", help="upgrade a database to the newest schema")
    s.add_argument("--database-url", help="defaults to BANDIT_ROUTER_DATABASE_URL")
    s.set_defaults(func=cmd_migrate)

    s = sub.add_parser("update", help="run a learning job now and wait for it")
    s.add_argument("kind", nargs="?", default="update")
    s.set_defaults(func=cmd_update)

    s = sub.add_parser(
        "prepare-encoder", help="export the embedding model for its backend now (e.g. in an image)"
    )
    s.set_defaults(func=cmd_prepare_encoder)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench", required=True)
    s = bench.add_parser("latency", help="route/feedback latency and throughput over HTTP")
    s.add_argument("--requests", type=int, default=1000)
    s.add_argument("--concurrency", type=int, default=8)
    s.add_argument("--rate", type=float, default=None, help="open-loop requests/s (default: max)")
    s.add_argument("--out", default=None, help="write the JSON report here too")
    s.set_defaults(func=cmd_bench_latency)
    s = bench.add_parser("load", help="sustained load, kill -9 and PostgreSQL-restart drills")
    s.add_argument("--scenario", choices=["load", "kill", "pg-restart"], default="load")
    s.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    s.add_argument("--rate", type=float, default=50.0, help="routes/s, each followed by feedback")
    s.add_argument("--workers", type=int, default=1, help="serve --workers (PostgreSQL only)")
    s.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    s.add_argument("--pg-ctl", default=None, help="pg-restart: command that takes stop / start")
    s.add_argument("--pg-down-seconds", type=float, default=3.0)
    s.add_argument("--out", default=None, help="write the JSON report here too")
    s.set_defaults(func=cmd_bench_load)
    s = bench.add_parser("jobs", help="time and peak RSS of update and retrain against log size")
    s.add_argument("--events", nargs="+", type=int, default=[10_000, 100_000], help="N per run")
    s.add_argument("--out", required=True, help="folder for jobs-<N>.json and result.json")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_bench_jobs)
    for register in _extensions():
        register(sub)
    return p


def _extensions() -> list[Callable[[Any], None]]:
    """Sub-commands kept in their own modules: offline data and training, bias, keys, demo."""
    from bandit_router.cli import bias, demo, keys, offline

    return [offline.register, bias.register, keys.register, demo.register]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # "Running upgrade ..." lines on every command that opens the store
        logging.getLogger("alembic").setLevel(logging.WARNING)
    handler: Handler = args.func
    try:
        return handler(args, load_settings())
    except (UserError, PoolFileError) as exc:
        print(f"bandit-router: {exc}", file=sys.stderr)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        print(f"bandit-router: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
    return 2
