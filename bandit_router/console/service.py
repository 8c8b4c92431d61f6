"""What the console shows and does, as plain functions over the runtime: pages call these.

Changes (promote, roll back, enable, re-price, claim, grade) call the very functions behind the
admin and audits API, so the console cannot drift from what the API enforces."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
from pydantic import ValidationError

from bandit_router import telemetry as metrics
from bandit_router.api import audits
from bandit_router.api.schemas import ModelPatch
from bandit_router.console import charts
from bandit_router.runtime import Runtime
from bandit_router.services import audits as audit_service
from bandit_router.services.errors import DomainError
from bandit_router.store import aggregates as agg
from bandit_router.store import proxy_log
from bandit_router.store import repository as repo
from bandit_router.store.models import PolicyVersion
from bandit_router.store.records import MeanBucket, TrafficBucket, columns

# window name -> (length, bucket size), both in seconds: ~24-30 points per chart.
WINDOWS = {
    "1h": (3600, 120),
    "6h": (6 * 3600, 900),
    "24h": (86400, 3600),
    "7d": (7 * 86400, 6 * 3600),
    "30d": (30 * 86400, 86400),
}
DEFAULT_WINDOW = "24h"


class ActionError(Exception):
    """A change the service refused, with the API's own message."""


def window(name: str) -> tuple[str, datetime, int]:
    """(name, start, bucket seconds); an unknown name falls back to the default."""
    if name not in WINDOWS:
        name = DEFAULT_WINDOW
    length, bucket = WINDOWS[name]
    # On a bucket boundary: the first bucket is whole, and a cached audited report (keyed by its
    # start) serves every page view within a bucket.
    start = int(datetime.now(UTC).timestamp()) - length
    return name, datetime.fromtimestamp(start // bucket * bucket, UTC), bucket


def _run(action: Any, *args: Any) -> Any:
    """Call a service (or validate with an API request model); its refusal becomes an
    ActionError carrying the message a client of the API would have read."""
    try:
        return action(*args)
    except DomainError as exc:
        raise ActionError(str(exc)) from None
    except ValidationError as exc:
        raise ActionError("; ".join(e["msg"] for e in exc.errors())) from None


# --- overview ---------------------------------------------------------------------------------


def _buckets(start: datetime, seconds: int) -> list[int]:
    first = int(start.timestamp()) // seconds * seconds
    last = int(datetime.now(UTC).timestamp()) // seconds * seconds
    return list(range(first, last + 1, seconds))


def _share_series(rows: list[TrafficBucket], buckets: list[int]) -> dict[str, list[float | None]]:
    totals: dict[int, int] = defaultdict(int)
    counts: dict[str, dict[int, int]] = defaultdict(dict)
    for r in rows:
        totals[int(r.bucket)] += int(r.n)
        counts[r.model][int(r.bucket)] = int(r.n)
    return {
        model: [by.get(b, 0) / totals[b] if totals.get(b) else None for b in buckets]
        for model, by in sorted(counts.items())
    }


def _mean_series(rows: list[MeanBucket], buckets: list[int]) -> list[float | None]:
    by = {int(r.bucket): float(r.mean) for r in rows if r.mean is not None}
    return [by.get(b) for b in buckets]


def _weighted_mean(rows: list[MeanBucket]) -> float | None:
    known = [(float(r.mean), int(r.n)) for r in rows if r.mean is not None]
    n = sum(k for _, k in known)
    return sum(mean * k for mean, k in known) / n if n else None


def overview(rt: Runtime, name: str) -> dict[str, Any]:
    name, start, seconds = window(name)
    buckets = _buckets(start, seconds)
    with rt.engine.connect() as conn:
        traffic = agg.traffic_by_bucket(conn, start, seconds)
        reward = agg.reward_by_bucket(conn, start, seconds)
        cost = agg.cost_by_bucket(conn, start, seconds)
        explore, sampled = agg.exploration_share(conn, start)
        active = repo.active_policy(conn)
        audits_by_status = repo.audit_counts(conn)
    shares = _share_series(traffic, buckets)
    return {
        "window": name,
        "windows": list(WINDOWS),
        "decisions": sum(int(r.n) for r in traffic),
        "feedback": sum(int(r.n) for r in reward),
        "mean_reward": _weighted_mean(reward),
        "cost_per_query": _weighted_mean(cost),
        "exploration": explore,
        "exploration_sample": sampled,
        "policy": active,
        "audits": audits_by_status,
        "latency": latency_quantiles(),
        "report": audited_report(rt, start),
        "models": [(m, charts.color(i)) for i, m in enumerate(shares)],
        "traffic_chart": charts.lines(
            "traffic share per model", buckets, shares, seconds, ".0%", (0.0, 1.0)
        ),
        "reward_chart": charts.lines(
            "mean preference reward", buckets, {"reward": _mean_series(reward, buckets)}, seconds
        ),
        "cost_chart": charts.lines(
            "cost per query (USD)", buckets, {"cost": _mean_series(cost, buckets)}, seconds, ".5f"
        ),
    }


def audited_report(rt: Runtime, start: datetime) -> Any:
    """The audits' report over the window (quality, cost and saving against the reference, with
    PPI++ intervals), as GET /v1/admin/report gives it; cached by the audit service."""
    try:
        return audit_service.report(rt.engine, rt.settings, since=start)
    except DomainError:
        return None


# --- latency from the service's own metrics ---------------------------------------------------


def _registry() -> Any:
    """This process's metrics, or every worker's in multiprocess mode (as /metrics does)."""
    directory = os.environ.get(metrics.MULTIPROC_ENV)
    if not directory:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return registry


def _route_buckets() -> dict[float, float]:
    """Cumulative request counts per latency bound, summed over the API's routes (the console's
    own pages and /metrics scrapes would skew what callers see)."""
    cumulative: dict[float, float] = defaultdict(float)
    for family in _registry().collect():
        if family.name != "bandit_router_request_duration_seconds":
            continue
        for s in family.samples:
            if s.name.endswith("_bucket") and s.labels.get("route", "").startswith("/v1/"):
                cumulative[float(s.labels["le"])] += s.value
    return cumulative


def _quantile(cumulative: dict[float, float], q: float) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket that holds q."""
    bounds = sorted(cumulative)
    total = cumulative[bounds[-1]] if bounds else 0.0
    if not total:
        return None
    rank, prev_bound, prev_count = q * total, 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            share = (rank - prev_count) / (count - prev_count) if count > prev_count else 1.0
            return prev_bound + (bound - prev_bound) * share
        prev_bound, prev_count = bound, count
    return prev_bound


def latency_quantiles() -> dict[str, Any]:
    cumulative = _route_buckets()
    count = max(cumulative.values()) if cumulative else 0.0
    return {"p50": _quantile(cumulative, 0.5), "p99": _quantile(cumulative, 0.99), "n": count}


# --- policies ---------------------------------------------------------------------------------


def ope_summary(metrics_: dict[str, Any]) -> dict[str, Any] | None:
    """The off-policy comparison a version was published with, against the policy then active:
    a retrain's OPE difference, or an update's gate (mean difference and its lower bound)."""
    ope = metrics_.get("ope")
    if isinstance(ope, dict) and isinstance(ope.get("difference"), dict):
        d = ope["difference"]
        return {
            "kind": "OPE",
            "value": d["value"],
            "lo": d["lo"],
            "hi": d.get("hi"),
            "n": ope.get("evaluated_events"),
            "promote": ope.get("promote"),
        }
    if "gate_mean_difference" in metrics_:
        return {
            "kind": "gate",
            "value": metrics_["gate_mean_difference"],
            "lo": metrics_.get("gate_lower_bound"),
            "hi": None,
            "n": metrics_.get("events"),
            "promote": metrics_.get("promoted"),
        }
    return None


def policies(rt: Runtime) -> list[dict[str, Any]]:
    with rt.engine.connect() as conn:
        rows = repo.list_policies(conn)
    active = next((p.id for p in rows if p.active), 0)
    return [
        {
            **columns(p),
            "ope": ope_summary(p.metrics or {}),
            "action": "Promote" if p.id > active else "Roll back",
        }
        for p in rows
    ]


def activate(rt: Runtime, version: int) -> PolicyVersion:
    return _run(rt.admin.activate_policy, version)


# --- bias -------------------------------------------------------------------------------------


def bias(rt: Runtime) -> dict[str, Any]:
    with rt.engine.connect() as conn:
        runs = agg.bias_runs(conn)
    labels = [f"#{run.id}" for run in runs]
    models = sorted({m for run in runs for m in run.result["bias"]})
    out = {}
    for model in models:
        # One column per run, empty where a run had no estimate for this model.
        points = [run.result["bias"].get(model) for run in runs]
        known = [e for e in points if e is not None]
        rows = [(e["estimate"], e["lo"], e["hi"]) if e else None for e in points]
        out[model] = {
            "latest": known[-1],
            "alerts": sum(1 for e in known if e.get("alert")),
            "chart": charts.intervals(f"bias of {model}", labels, rows),
        }
    return {"runs": runs, "models": out}


# --- models -----------------------------------------------------------------------------------


def models(rt: Runtime, name: str) -> dict[str, Any]:
    name, start, _ = window(name)
    with rt.engine.connect() as conn:
        rows = [rt.admin.model_view(m) for m in repo.list_models(conn)]
        traffic = agg.model_traffic(conn, start)
    total = sum(traffic.values())
    for m in rows:
        m["traffic"] = traffic.get(m["name"], 0)
        m["share"] = m["traffic"] / total if total else None
    return {"window": name, "windows": list(WINDOWS), "models": rows, "total": total}


def change_model(rt: Runtime, name: str, changes: dict[str, Any]) -> dict[str, Any]:
    patch = _run(ModelPatch.model_validate, changes)
    return _run(rt.admin.change_model, name, patch.model_dump(exclude_unset=True))


# --- one decision -----------------------------------------------------------------------------


def decision(rt: Runtime, decision_id: str) -> dict[str, Any] | None:
    with rt.engine.connect() as conn:
        row = repo.get_decision(conn, decision_id)
        if row is None:
            return None
        feedback = repo.list_feedback(conn, decision_id)
        audit = repo.get_audit(conn, decision_id)
        grades = agg.grades_of(conn, decision_id)
        proxied = proxy_log.get_answer(conn, decision_id)
    return {
        "decision": row,
        "feedback": feedback,
        "audit": audit,
        "grades": grades,
        "proxy": proxied,
    }


# --- audit workbench --------------------------------------------------------------------------


def grader(key_prefix: str, key_name: str | None) -> audit_service.Grader:
    """Who grades, as the audits API sees a request with this key: the key owns the claims."""
    return audit_service.Grader.of(key_name or key_prefix, key_prefix)


def workbench(rt: Runtime, who: audit_service.Grader) -> dict[str, Any]:
    now = datetime.now(UTC)
    with rt.engine.connect() as conn:
        # Each item as the audits API gives it (prompt, answer; a second grader does not see
        # the first grade), so the workbench shows what any grader client sees.
        batch = [audit_service.item(conn, a) for a in agg.claimed_by(conn, who.identity, now)]
        counts = repo.audit_counts(conn)
        hour = agg.grader_throughput(conn, who.identity, now - timedelta(hours=1))
        day = agg.grader_throughput(conn, who.identity, now - timedelta(days=1))
    return {
        "batch": batch,
        "queue": counts.get("pending", 0),
        "claimed": counts.get("claimed", 0),
        "graded_hour": hour,
        "graded_day": day,
    }


def claim(rt: Runtime, who: audit_service.Grader, limit: int) -> int:
    items = _run(audit_service.claim, rt.engine, rt.settings, who, max(1, min(limit, 500)))
    for _ in items:
        metrics.record_audit("claimed")
    return len(items)


def grade(
    rt: Runtime,
    who: audit_service.Grader,
    decision_id: str,
    verdict: tuple[float | None, bool | None],
    rubric: str | None = None,
    comment: str | None = None,
) -> str:
    """Checked by the audits API's own request model (score range, rubric id, comment length),
    then stored by the audit service: claims, double grading and text deletion included."""
    score, passed = verdict
    body: dict[str, Any] = {"decision_id": decision_id, "grader_id": who.name}
    body.update({"score": score} if score is not None else {"pass": passed})
    body.update({k: v for k, v in (("rubric", rubric), ("comment", comment)) if v})
    req = _run(audits.GradeRequest.model_validate, body)
    out = _run(audit_service.grade, rt.engine, rt.settings, who, req.grade())
    if out.status == "graded":
        metrics.record_audit("graded" if out.round == 1 else "second_graded")
    return str(out.status)
