"""`bandit-router bench jobs`: wall time and peak memory of the learning jobs against the size of
the log.

A fresh SQLite store gets N synthetic decisions of the shape the service writes (the example
pool, a 384-d unit embedding stored as float32 bytes, the full candidate list with qualities,
costs and probabilities, one thumbs feedback each, 2 % of them audited and graded), written with
bulk inserts. Then `update` and `retrain` each run as their own process (`bandit-router update
<kind>`), so the peak RSS measured is that job's alone.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bandit_router.config import Settings
from bandit_router.policy.pool import ModelSpec
from bandit_router.runtime import prepare_database
from bandit_router.store import repository as repo
from bandit_router.store.db import make_engine
from bandit_router.store.records import ModelRecord

DIM = 384
BATCH = 10_000  # rows per bulk insert: bounded memory while filling any N
AUDIT_RATE = 0.02
LAMBDA = 0.2
WINDOW_DAYS = 20.0  # inside the default 30-day retraining window
# What a thumbs up means per model: the synthetic "true" quality (example pool order).
QUALITY = {
    "gpt-4o": 0.80,
    "gpt-4o-mini": 0.65,
    "claude-3-5-sonnet": 0.78,
    "mixtral-8x7b-instruct": 0.55,
    "llama-3.1-8b-instruct": 0.45,
}


def _unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _costs(models: list[ModelRecord]) -> dict[str, float]:
    """Normalised expected cost of a 50-token query per model, as the router computes it."""
    usd = {m.name: ModelSpec.from_row(m).expected_cost(50) for m in models}
    top = max(usd.values())
    return {k: v / top for k, v in usd.items()}


def _batch(
    rng: np.random.Generator,
    start: int,
    n: int,
    t0: datetime,
    step: timedelta,
    cost: dict[str, float],
    version: int,
    audit_rate: float,
    prompts: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Decisions, their thumbs and their graded audits for ids start .. start + n."""
    names = list(cost)
    emb = _unit_vectors(rng, n)
    noise = rng.normal(0.0, 0.05, (n, len(names)))
    base = np.array([QUALITY.get(m, 0.5) for m in names])
    norm = np.array([cost[m] for m in names])
    decisions, feedback, audits = [], [], []
    for i in range(n):
        did = f"{start + i:032x}"
        quality = base + noise[i]
        score = quality - LAMBDA * norm
        pmf = np.full(len(names), 0.05)
        pmf[int(np.argmax(score))] += 1.0 - pmf.sum()
        a = int(rng.choice(len(names), p=pmf))
        audited = bool(rng.random() < audit_rate)
        decisions.append(
            {
                "id": did,
                "created_at": t0 + step * (start + i),
                "prompt_hash": did * 2,
                "prompt": f"synthetic query {start + i}" if prompts else None,
                "embedding": emb[i].tobytes(),
                "input_tokens": 50,
                "lam": LAMBDA,
                "preset": "balanced",
                "candidates": [
                    {
                        "model": m,
                        "quality": round(float(quality[j]), 6),
                        "cost_usd": float(norm[j]) * 0.01,
                        "cost_norm": round(float(norm[j]), 6),
                        "score": round(float(score[j]), 6),
                        "probability": float(pmf[j]),
                    }
                    for j, m in enumerate(names)
                ],
                "chosen_model": names[a],
                "probability": float(pmf[a]),
                "exploration": "squarecb",
                "policy_version": version,
                "audit_probability": audit_rate,
                "audit_selected": audited,
            }
        )
        up = bool(rng.random() < base[a])
        feedback.append(
            {
                "decision_id": did,
                "type": "thumbs",
                "value": {"value": "up" if up else "down"},
                "reward": float(up),
                "source": "user",
                "idempotency_key": "bench",
            }
        )
        if audited:
            grade = float(np.clip(base[a] + rng.normal(0.0, 0.1), 0.0, 1.0))
            audits.append({"decision_id": did, "status": "graded", "score": grade})
    return decisions, feedback, audits


def fill_store(
    settings: Settings,
    n: int,
    seed: int = 0,
    audit_rate: float = AUDIT_RATE,
    prompts: bool = False,
) -> dict[str, Any]:
    """Migrate a fresh store, seed the pool and starter policy, then write n events in bulk."""
    engine = make_engine(settings.database_url)
    started = time.perf_counter()
    try:
        prepare_database(engine, settings)
        with engine.connect() as conn:
            cost = _costs(repo.list_models(conn))
            version = repo.active_policy_id(conn)
        assert version is not None
        rng = np.random.default_rng(seed)
        step = timedelta(days=WINDOW_DAYS) / max(n, 1)
        t0 = datetime.now(UTC) - timedelta(days=WINDOW_DAYS) - timedelta(minutes=5)
        for start in range(0, n, BATCH):
            rows = _batch(
                rng, start, min(BATCH, n - start), t0, step, cost, version, audit_rate, prompts
            )
            with engine.begin() as conn:
                repo.insert_decisions(conn, rows[0])
                repo.insert_feedback_rows(conn, rows[1])
                repo.insert_audit_rows(conn, rows[2])
    finally:
        engine.dispose()
    return {"events": n, "fill_s": round(time.perf_counter() - started, 2), "served_by": version}


def run_job(kind: str, database_url: str, workdir: Path) -> dict[str, Any]:
    """One job as its own process: wall time, its own peak RSS, its summary. Output goes to
    files, not pipes, so the parent can wait4() the child (rusage of that child alone) without
    the child blocking on a full pipe."""
    env = {**os.environ, "BANDIT_ROUTER_DATABASE_URL": database_url}
    cmd = [sys.executable, "-m", "bandit_router.cli", "update", kind]
    out_path, err_path = workdir / f"{kind}.out", workdir / f"{kind}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    row = _job_row(out_path.read_bytes())
    return {
        "rc": proc.returncode,
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
        "status": row.get("status"),
        "summary": _summary(kind, row.get("result") or {}),
        "stderr_tail": err_path.read_text(errors="replace").strip().splitlines()[-3:],
    }


def _job_row(stdout: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(stdout)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


JOB_ORDER = ("retrain", "update")


def _reactivate(database_url: str, version: int) -> None:
    """Put the policy that decided the synthetic events back in service: a job that promoted its
    candidate would otherwise leave the next one no event to evaluate, and the measurement would
    miss off-policy evaluation's cost."""
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            repo.activate_policy(conn, version)
    finally:
        engine.dispose()


def _summary(kind: str, result: dict[str, Any]) -> dict[str, Any]:
    keys = ["events", "learned_events", "closed_without_label", "published", "candidate"]
    out = {k: result[k] for k in keys if k in result}
    out["promoted"] = result.get("promoted")
    out["job_duration_s"] = result.get("duration_s")
    if kind == "retrain":
        out["evaluated_events"] = (result.get("ope") or {}).get("evaluated_events")
    else:  # the gate's events valued in this run (pooled with earlier runs' in `gate`)
        out["evaluated_events"] = (result.get("gate") or {}).get("traffic", {}).get("n")
    return out


def run_jobs_bench(
    settings: Settings, sizes: list[int], out: Path, seed: int = 0
) -> dict[str, Any]:
    """For each N: fill a fresh SQLite store, run `update` then `retrain`, write jobs-<N>.json."""
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "runs": [],
    }
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'store.db'}"
            run = fill_store(settings.model_copy(update={"database_url": url}), n, seed)
            run["store_mb"] = round(_store_bytes(Path(tmp)) / 2**20, 1)
            run["jobs"] = {}
            for kind in JOB_ORDER:
                run["jobs"][kind] = run_job(kind, url, Path(tmp))
                _reactivate(url, run["served_by"])
        (out / f"jobs-{n}.json").write_text(json.dumps(run, indent=2))
        report["runs"].append(run)
    (out / "result.json").write_text(json.dumps(report, indent=2))
    return report


def _store_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("store.db*"))
