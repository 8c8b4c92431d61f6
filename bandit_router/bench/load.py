"""`bandit-router bench load`: sustained load and failure drills against the real service.

The service runs as a subprocess (the same start-up as `bench latency`) and is driven over HTTP on
loopback by an open-loop client: routes at a fixed rate whatever the answers do, each followed by a
feedback on the decision it got. The client keeps a ledger of every write the service acknowledged
with a 2xx; afterwards the store is read directly and every acknowledged id must be there.

Scenarios:
- `load`: the rate for the whole duration; zero errors expected.
- `kill`: kill -9 of the service (and its workers) 40 % into the run, then an immediate restart on
  the same database; requests fail while it is down, nothing acknowledged may be missing.
- `pg-restart`: the PostgreSQL server is stopped 40 % into the run and started again a few seconds
  later; meanwhile the service must answer 503 + Retry-After at once (not hang), recover by itself,
  and lose nothing acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select, tuple_
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from bandit_router.bench.client import BenchClient
from bandit_router.bench.latency import (
    _free_port,
    _start_server,
    distinct_prompts,
    machine,
    summary,
)
from bandit_router.config import Settings

SCENARIOS = ("load", "kill", "pg-restart")
OUTAGE_AT = 0.4  # share of the run after which the fault is injected


@dataclass
class Outcome:
    sent_at: float  # seconds since the run started
    kind: str  # route | feedback
    status: str  # the HTTP status, or "connection" / "timeout" when there was no answer
    latency_s: float
    retry_after: bool

    @property
    def done_at(self) -> float:
        """When the answer came: under load a request waits in the service's queues, so what the
        fault did to it depends on when it finished, not when it was sent."""
        return self.sent_at + self.latency_s


@dataclass
class Ledger:
    """What the service acknowledged (2xx), and how every request ended."""

    decisions: list[str] = field(default_factory=list)
    feedback: list[tuple[str, str]] = field(default_factory=list)  # (decision id, idempotency key)
    outcomes: list[Outcome] = field(default_factory=list)


@dataclass
class Run:
    """Everything a scenario needs: the service, the load to apply and where to record it."""

    service: Service
    duration_s: float
    rate: float
    timeout_s: float
    pg_ctl: list[str]
    pg_down_s: float
    ledger: Ledger = field(default_factory=Ledger)
    t0: float = field(default_factory=time.perf_counter)

    def now(self) -> float:
        return time.perf_counter() - self.t0


class Service:
    """The service as a subprocess tree that can be started, killed -9 and started again."""

    def __init__(self, settings: Settings, db_url: str, workers: int) -> None:
        self.settings = settings
        self.db_url = db_url
        self.workers = workers
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        # _start_server passes this process's environment on: the worker count travels with it.
        with _env(BANDIT_ROUTER_SERVE_WORKERS=str(self.workers)):
            self.proc = _start_server(self.settings, self.db_url, self.port)

    def kill(self) -> None:
        """kill -9 of the parent and of every uvicorn worker: a worker that outlived its parent
        would go on answering on the shared socket."""
        assert self.proc is not None
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def descendants(pid: int) -> list[int]:
    """All processes below `pid`, from /proc (children first-level first)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(0), []):
            out.append(child)
            todo.append(child)
    return out


def default_pg_ctl() -> list[str]:
    """The local cluster (Debian layout): pg_ctlcluster VERSION main."""
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    version = versions[-1] if versions else "15"
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]


# --- the client ---------------------------------------------------------------------------------


async def _call(
    client: BenchClient, run: Run, kind: str, path: str, body: dict[str, Any]
) -> dict[str, Any] | None:
    sent = run.now()
    answer: dict[str, Any] | None = None
    try:
        r = await client.post(path, body)
        status, retry_after = str(r.status), "retry-after" in r.headers
        if r.is_success:
            answer = r.json()
    except TimeoutError:
        status, retry_after = "timeout", False
    except (OSError, asyncio.IncompleteReadError):
        status, retry_after = "connection", False
    run.ledger.outcomes.append(Outcome(sent, kind, status, run.now() - sent, retry_after))
    return answer


async def _route_then_feedback(
    client: BenchClient, run: Run, key: str, i: int, prompt: str
) -> None:
    routed = await _call(client, run, "route", "/v1/route", {"prompt": prompt})
    if routed is None:
        return
    decision_id = routed["decision_id"]
    run.ledger.decisions.append(decision_id)
    fb = {"decision_id": decision_id, "type": "rating", "value": 1 + i % 5, "idempotency_key": key}
    if await _call(client, run, "feedback", "/v1/feedback", fb) is not None:
        run.ledger.feedback.append((decision_id, key))


async def drive(run: Run, duration_s: float, seed: int = 7) -> None:
    """Open loop: request i leaves at i / rate whatever happened to the ones before it."""
    n = max(1, round(duration_s * run.rate))
    prompts = distinct_prompts(n, seed=seed)
    async with BenchClient(run.service.base, timeout=run.timeout_s) as c:
        start = run.now()
        tasks = []
        for i, prompt in enumerate(prompts):
            await asyncio.sleep(max(0.0, start + i / run.rate - run.now()))
            key = f"load-{seed}-{i}"
            tasks.append(asyncio.create_task(_route_then_feedback(c, run, key, i, prompt)))
        await asyncio.gather(*tasks)


# --- scenarios ----------------------------------------------------------------------------------


async def scenario_load(run: Run) -> dict[str, Any]:
    await drive(run, run.duration_s)
    return {}


async def _after_fault(run: Run, load: asyncio.Task[None], fault_over_at: float) -> None:
    """The fault may outlast the planned load (a restart loads the encoder again): keep loading
    until the share of the run meant to come after the fault has been applied after it."""
    await load
    left = run.duration_s * (1 - OUTAGE_AT) - (run.now() - fault_over_at)
    if left > 0.5:
        await drive(run, left, seed=8)


async def scenario_kill(run: Run) -> dict[str, Any]:
    load = asyncio.create_task(drive(run, run.duration_s))
    await asyncio.sleep(run.duration_s * OUTAGE_AT)
    killed_at = run.now()
    await asyncio.to_thread(run.service.kill)
    await asyncio.to_thread(run.service.start)
    back_at = run.now()
    await _after_fault(run, load, back_at)
    return {
        "killed_at_s": round(killed_at, 2),
        "healthy_again_after_s": round(back_at - killed_at, 2),
        "outage": outage_view(run.ledger.outcomes, killed_at, back_at),
        "failures_after_restart": _failures_since(run.ledger.outcomes, back_at),
    }


async def scenario_pg_restart(run: Run) -> dict[str, Any]:
    load = asyncio.create_task(drive(run, run.duration_s))
    await asyncio.sleep(run.duration_s * OUTAGE_AT)
    stopping_at = run.now()
    await asyncio.to_thread(_pg, run.pg_ctl, "stop", "-m", "fast")
    down_at = run.now()
    await asyncio.sleep(run.pg_down_s)
    starting_at = run.now()
    await asyncio.to_thread(_pg, run.pg_ctl, "start")
    up_at = run.now()
    await _after_fault(run, load, up_at)
    outcomes = run.ledger.outcomes
    recovered_at = _first_success_since(outcomes, up_at)
    return {
        "stop_began_at_s": round(stopping_at, 2),
        "stop_took_s": round(down_at - stopping_at, 2),
        "start_took_s": round(up_at - starting_at, 2),
        # Only between the stop returning and the start beginning is the server surely down:
        # every answer then must be a 503 (a write cannot have committed).
        "database_down_s": round(starting_at - down_at, 2),
        "outage": outage_view(outcomes, down_at, starting_at),
        "recovered_after_s": None if recovered_at is None else round(recovered_at - up_at, 2),
        "failures_after_recovery": _failures_since(outcomes, recovered_at or float("inf")),
    }


def _pg(pg_ctl: list[str], *action: str) -> None:
    subprocess.run([*pg_ctl, *action], check=True, capture_output=True, timeout=120)


SCENARIO_FNS: dict[str, Callable[[Run], Coroutine[Any, Any, dict[str, Any]]]] = {
    "load": scenario_load,
    "kill": scenario_kill,
    "pg-restart": scenario_pg_restart,
}


# --- analysis -----------------------------------------------------------------------------------


def outage_view(outcomes: list[Outcome], start: float, end: float) -> dict[str, Any]:
    """How the requests answered while the fault lasted ended, and how long they took."""
    during = [o for o in outcomes if start <= o.done_at <= end]
    failed = [o for o in during if not o.status.startswith("2")]
    return {
        "answered": len(during),
        "statuses": dict(Counter(o.status for o in during)),
        # Feedback does not wait for the encoder: its failures time the database path alone.
        "failed_ms": {kind: _p50_max(failed, kind) for kind in ("route", "feedback")},
        "503_without_retry_after": sum(o.status == "503" and not o.retry_after for o in during),
    }


def _p50_max(outcomes: list[Outcome], kind: str) -> dict[str, float] | None:
    ms = np.array([o.latency_s for o in outcomes if o.kind == kind]) * 1000
    if not len(ms):
        return None
    return {"p50": round(float(np.percentile(ms, 50)), 1), "max": round(float(ms.max()), 1)}


def _first_success_since(outcomes: list[Outcome], t: float) -> float | None:
    ok = [o.done_at for o in outcomes if o.done_at >= t and o.status.startswith("2")]
    return min(ok) if ok else None


def _failures_since(outcomes: list[Outcome], t: float) -> int:
    return sum(1 for o in outcomes if o.done_at > t and not o.status.startswith("2"))


def latency_view(outcomes: list[Outcome], kind: str, wall_s: float) -> dict[str, Any] | None:
    ok = [o.latency_s for o in outcomes if o.kind == kind and o.status.startswith("2")]
    return summary(ok, wall_s) if ok else None


def missing_acknowledged(db_url: str, ledger: Ledger) -> dict[str, int]:
    """Read the store directly: every write the client saw acknowledged must be there."""
    from bandit_router.store.db import make_engine
    from bandit_router.store.models import Decision, Feedback

    engine = make_engine(db_url)
    found_dec: set[str] = set()
    found_fb: set[tuple[str, str]] = set()
    with engine.connect() as conn:
        for chunk in _chunks(ledger.decisions):
            found_dec.update(
                conn.execute(select(Decision.id).where(Decision.id.in_(chunk))).scalars()
            )
        for chunk in _chunks(ledger.feedback):
            pair = tuple_(Feedback.decision_id, Feedback.idempotency_key)
            rows = conn.execute(
                select(Feedback.decision_id, Feedback.idempotency_key).where(pair.in_(chunk))
            )
            found_fb.update((r[0], r[1]) for r in rows)
    engine.dispose()
    return {
        "decisions_acknowledged": len(ledger.decisions),
        "decisions_missing": len(set(ledger.decisions) - found_dec),
        "feedback_acknowledged": len(ledger.feedback),
        "feedback_missing": len(set(ledger.feedback) - found_fb),
    }


def _chunks(items: list[Any], size: int = 500) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def problems(scenario: str, report: dict[str, Any]) -> list[str]:
    """What the scenario promises, checked: an empty list means the run passed."""
    out = []
    d = report["durability"]
    if d["decisions_missing"] or d["feedback_missing"]:
        out.append("acknowledged writes are missing from the store")
    statuses = report["statuses"]
    server_errors = {s: n for s, n in statuses.items() if s.startswith("5") and s != "503"}
    if server_errors:
        out.append(f"server errors other than 503: {server_errors}")
    if statuses.get("timeout"):
        out.append(f"{statuses['timeout']} requests got no answer in time (overload or a hang)")
    if scenario == "load" and report["errors"]:
        out.append(f"{report['errors']} failed requests under plain load")
    if scenario == "kill" and report["failures_after_restart"]:
        out.append("requests still failed after the restart")
    if scenario == "pg-restart":
        if report["recovered_after_s"] is None:
            out.append("the service did not recover after the database came back")
        if report["outage"]["503_without_retry_after"]:
            out.append("503 answers without Retry-After")
        if set(report["outage"]["statuses"]) != {"503"}:
            out.append(f"answers other than 503 while the database was down: {report['outage']}")
    return out


# --- entry point --------------------------------------------------------------------------------


@contextlib.contextmanager
def _database(database_url: str | None, scenario: str) -> Iterator[str]:
    """The given database (migrated here: the service refuses an old PostgreSQL schema), or a
    temporary SQLite file."""
    if database_url is None:
        if scenario == "pg-restart":
            raise ValueError("the pg-restart scenario needs --database-url postgresql://...")
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'load.db'}"
        return
    from bandit_router.store.db import migrate

    if scenario == "pg-restart" and make_url(database_url).get_backend_name() != "postgresql":
        raise ValueError("the pg-restart scenario needs a postgresql:// database URL")
    try:
        migrate(database_url)
    except OperationalError as exc:
        raise ValueError(f"cannot use {database_url}: {exc.orig}") from None
    yield database_url


def run_load_bench(
    settings: Settings,
    scenario: str,
    duration_s: float = 60.0,
    rate: float = 50.0,
    workers: int = 1,
    database_url: str | None = None,
    pg_ctl: list[str] | None = None,
    pg_down_s: float = 3.0,
    timeout_s: float = 30.0,
    out: str | None = None,
) -> dict[str, Any]:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    with _database(database_url, scenario) as db_url:
        service = Service(settings, db_url, workers)
        service.start()
        run = Run(service, duration_s, rate, timeout_s, pg_ctl or default_pg_ctl(), pg_down_s)
        try:
            details = asyncio.run(SCENARIO_FNS[scenario](run))
            wall_s = run.now()
        finally:
            service.stop()
        report = _report(scenario, run, db_url, details, wall_s)
    if out:
        Path(out).write_text(json.dumps(report, indent=2))
    return report


def _report(
    scenario: str, run: Run, db_url: str, details: dict[str, Any], wall_s: float
) -> dict[str, Any]:
    outcomes = run.ledger.outcomes
    report: dict[str, Any] = {
        "scenario": scenario,
        "machine": machine(),
        "database": make_url(db_url).get_backend_name(),
        "workers": run.service.workers,
        "duration_s": run.duration_s,
        "target_route_rate_per_s": run.rate,
        "route": latency_view(outcomes, "route", wall_s),
        "feedback": latency_view(outcomes, "feedback", wall_s),
        "statuses": dict(Counter(o.status for o in outcomes)),
        "errors": sum(1 for o in outcomes if not o.status.startswith("2")),
        **details,
        "durability": missing_acknowledged(db_url, run.ledger),
    }
    report["problems"] = problems(scenario, report)
    report["ok"] = not report["problems"]
    return report
