"""`bandit-router bench latency`: the real service over HTTP on loopback.

Phases, one after another so they do not compete for the 2 cores: the embedding alone (in this
process, same encoder and thread count as the server), routes at a fixed open-loop rate with
distinct prompts, routes at full speed (throughput), routes with repeated prompts (cache hits),
then feedback at full speed — and finally a check that every acknowledged write is in the store.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bandit_router.bench.client import BenchClient, Reply
from bandit_router.config import Settings
from bandit_router.embed.service import TextEncoder

SUBJECTS = [
    "a binary search tree",
    "photosynthesis",
    "the French revolution",
    "compound interest",
    "a REST API",
    "black holes",
    "the TCP handshake",
    "sourdough bread",
    "vaccines",
    "the Pythagorean theorem",
    "supply and demand",
    "a haiku",
    "quicksort",
    "inflation",
]
ASKS = [
    "Explain {s} to a {a}-year-old in {n} sentences.",
    "Write a short essay on {s}, focusing on point {n}.",
    "What are {n} common mistakes people make about {s}? I am {a}.",
    "Give me a step-by-step guide to {s} with {n} steps for a {a} year old student.",
    "Compare {s} with something a {a}-year-old knows, using {n} examples.",
]


def distinct_prompts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        rng.choice(ASKS).format(s=rng.choice(SUBJECTS), a=rng.randint(5, 90), n=rng.randint(2, 9))
        + f" (ref {seed}-{i})"
        for i in range(n)
    ]


def summary(latencies_s: list[float], wall_s: float) -> dict[str, float]:
    ms = np.array(latencies_s) * 1000
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "throughput_per_s": round(len(ms) / wall_s, 1),
    }


async def _closed_loop(
    client: BenchClient, path: str, bodies: list[dict[str, Any]], concurrency: int
) -> tuple[list[float], list[dict[str, Any]], float]:
    latencies: list[float] = []
    results: list[dict[str, Any]] = [{} for _ in bodies]
    it = iter(enumerate(bodies))

    async def worker() -> None:
        for i, body in it:
            t = time.perf_counter()
            r = await client.post(path, body)
            latencies.append(time.perf_counter() - t)
            results[i] = _checked(path, r)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, results, time.perf_counter() - start


async def _open_loop(
    client: BenchClient, path: str, bodies: list[dict[str, Any]], rate: float
) -> tuple[list[float], float]:
    """Send at a fixed rate whatever the answers do (a closed loop would hide queueing)."""
    latencies: list[float] = []

    async def one(body: dict[str, Any], at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        t = time.perf_counter()
        r = await client.post(path, body)
        latencies.append(time.perf_counter() - t)
        _checked(path, r)

    start = time.perf_counter()
    await asyncio.gather(*(one(b, start + i / rate) for i, b in enumerate(bodies)))
    return latencies, time.perf_counter() - start


def _checked(path: str, reply: Reply) -> Any:
    if not reply.is_success:
        raise RuntimeError(f"{path} answered {reply.status}: {reply.body[:300]!r}")
    return reply.json()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(settings: Settings, db_url: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BANDIT_ROUTER_DATABASE_URL": db_url,
        "BANDIT_ROUTER_SCHEDULER_ENABLED": "false",
        "BANDIT_ROUTER_POOL_FILE": str(settings.pool_file),
        # The encoder the in-process embedding phase measured, exported files shared with it.
        "BANDIT_ROUTER_EMBEDDING_BACKEND": settings.embedding_backend,
        "BANDIT_ROUTER_MODEL_CACHE_DIR": str(settings.model_cache_dir.resolve()),
    }
    cmd = [
        sys.executable,
        "-m",
        "bandit_router.cli",
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("the server exited during start-up")
        time.sleep(0.25)
    proc.kill()
    raise RuntimeError("the server did not become healthy within 120 s")


def _embedding_alone(
    enc: TextEncoder, prompts: list[str], rate: float | None = None
) -> dict[str, float]:
    """Back to back, or paced at `rate` like the routes: on this VM an encode after an idle gap
    is ~20 % slower than one right after another (caches gone cold), and routes arrive paced."""
    lat = []
    start = time.perf_counter()
    for i, p in enumerate(prompts):
        if rate:
            time.sleep(max(0.0, start + i / rate - time.perf_counter()))
        t = time.perf_counter()
        enc.encode([p])
        lat.append(time.perf_counter() - t)
    return summary(lat, time.perf_counter() - start)


async def _run_phases(
    base: str, requests: int, concurrency: int, rate: float
) -> tuple[dict[str, Any], list[str], int]:
    async with BenchClient(base, timeout=60) as client:
        await client.post("/v1/route", {"prompt": "warm up"})
        out: dict[str, Any] = {}
        bodies = [{"prompt": p} for p in distinct_prompts(requests, seed=1)]
        lat, wall = await _open_loop(client, "/v1/route", bodies, rate)
        out[f"route_distinct_at_{rate:g}_per_s"] = summary(lat, wall)
        bodies = [{"prompt": p} for p in distinct_prompts(requests, seed=2)]
        lat, routed, wall = await _closed_loop(client, "/v1/route", bodies, concurrency)
        out[f"route_distinct_max_c{concurrency}"] = summary(lat, wall)
        repeated = [{"prompt": p} for p in distinct_prompts(20, seed=2)] * (requests // 20)
        lat, _, wall = await _closed_loop(client, "/v1/route", repeated, 1)
        out["route_repeated_sequential"] = summary(lat, wall)
        lat, _, wall = await _closed_loop(client, "/v1/route", repeated, concurrency)
        out[f"route_repeated_max_c{concurrency}"] = summary(lat, wall)
        fbs = [
            {"decision_id": r["decision_id"], "type": "rating", "value": 1 + i % 5}
            for i, r in enumerate(routed * 3)
        ]
        for i, fb in enumerate(fbs):
            fb["idempotency_key"] = f"bench-{i}"
        lat, _, wall = await _closed_loop(client, "/v1/feedback", fbs, concurrency)
        out[f"feedback_max_c{concurrency}"] = summary(lat, wall)
        return out, [r["decision_id"] for r in routed], len(fbs)


def _count_rows(db_url: str) -> tuple[int, int]:
    from sqlalchemy import func, select

    from bandit_router.store.db import make_engine
    from bandit_router.store.models import Decision, Feedback

    engine = make_engine(db_url)
    with engine.connect() as conn:
        n_dec = conn.execute(select(func.count()).select_from(Decision)).scalar_one()
        n_fb = conn.execute(select(func.count()).select_from(Feedback)).scalar_one()
    engine.dispose()
    return int(n_dec), int(n_fb)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }


def run_latency_bench(
    settings: Settings, requests: int, concurrency: int, rate: float | None, out: str | None
) -> dict[str, Any]:
    rate = rate or 50.0
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        report: dict[str, Any] = {"machine": machine(), "database": "sqlite (temp file)"}
        from bandit_router.embed.encoder import load_encoder

        enc = load_encoder(settings)
        prompts = distinct_prompts(min(requests, 300), seed=3)
        report["embedding_alone_sequential"] = _embedding_alone(enc, prompts)
        report[f"embedding_alone_at_{rate:g}_per_s"] = _embedding_alone(enc, prompts, rate)
        del enc
        port = _free_port()
        proc = _start_server(settings, db_url, port)
        try:
            phases, _, n_fb = asyncio.run(
                _run_phases(f"http://127.0.0.1:{port}", requests, concurrency, rate)
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        report.update(phases)
        n_dec, n_fb_rows = _count_rows(db_url)
        expected_dec = 1 + requests * 2 + (requests // 20) * 20 * 2
        report["durability"] = {
            "decisions_acknowledged": expected_dec,
            "decisions_in_store": n_dec,
            "feedback_acknowledged": n_fb,
            "feedback_in_store": n_fb_rows,
        }
    route_p50 = report[f"route_distinct_at_{rate:g}_per_s"]["p50_ms"]
    report["route_vs_embedding_p50"] = round(
        route_p50 / report["embedding_alone_sequential"]["p50_ms"], 2
    )
    report["route_vs_embedding_paced_p50"] = round(
        route_p50 / report[f"embedding_alone_at_{rate:g}_per_s"]["p50_ms"], 2
    )
    if out:
        Path(out).write_text(json.dumps(report, indent=2))
    return report
