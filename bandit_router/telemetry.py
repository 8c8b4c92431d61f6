"""Prometheus metrics (served at /metrics by api/metrics.py), correct with several worker
processes.

With several workers each process counts on its own, so a scrape (answered by any one worker)
must add up all of them: prometheus_client's multiprocess mode, where every process writes its
values to files under PROMETHEUS_MULTIPROC_DIR and a scrape reads them all.
`prepare_multiprocess(dir)` sets it up and must run in the parent before the workers start.

Metrics are built on first use, not at import: prometheus_client decides per metric, when it is
built, whether values live in memory or in those files.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from bandit_router.audit.report import Estimate, Report

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
JOB_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


@dataclass(frozen=True)
class _Bounded:
    """An estimate and its 95 % interval: three gauges, `<name>`, `<name>_lower`, `_upper`."""

    value: Gauge
    lower: Gauge
    upper: Gauge

    def set(self, labels: tuple[str, ...], estimate: Estimate | None) -> None:
        nan = float("nan")  # no estimate (yet): NaN, not a stale number
        self.value.labels(*labels).set(estimate.estimate if estimate else nan)
        self.lower.labels(*labels).set(estimate.lower if estimate else nan)
        self.upper.labels(*labels).set(estimate.upper if estimate else nan)


def _bounded(name: str, doc: str, labels: list[str]) -> _Bounded:
    # The value most recently set by any worker: the newest report wins.
    def gauge(suffix: str, what: str) -> Gauge:
        return Gauge(name + suffix, doc + what, labels, multiprocess_mode="mostrecent")

    return _Bounded(
        gauge("", ""), gauge("_lower", " (95 % lower bound)"), gauge("_upper", " (upper bound)")
    )


@dataclass(frozen=True)
class _Metrics:
    requests: Histogram
    decisions: Counter
    feedback: Counter
    audits: Counter
    policy_version: Gauge
    jobs: Histogram
    upstream: Counter
    rejected: Counter
    # The audited report (GET /v1/admin/report), with intervals.
    quality: _Bounded
    cost: _Bounded
    saving: _Bounded
    retained: _Bounded
    agreement: Gauge


def _build() -> _Metrics:
    return _Metrics(
        requests=Histogram(
            "bandit_router_request_duration_seconds",
            "HTTP request latency by route template, method and status",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
        ),
        decisions=Counter(
            "bandit_router_decisions", "Routing decisions by chosen model", ["model", "endpoint"]
        ),
        feedback=Counter(
            "bandit_router_feedback", "Feedback received by type and outcome", ["type", "status"]
        ),
        audits=Counter("bandit_router_audits", "Gold audits by kind", ["kind"]),
        # The value most recently set by any worker: after a rollback, "max" would be wrong.
        policy_version=Gauge(
            "bandit_router_policy_version",
            "Active policy version served",
            multiprocess_mode="mostrecent",
        ),
        jobs=Histogram(
            "bandit_router_job_duration_seconds",
            "Background job duration by kind and status",
            ["kind", "status"],
            buckets=JOB_BUCKETS,
        ),
        upstream=Counter(
            "bandit_router_upstream_attempts",
            "Proxy calls to upstream models by outcome (answered, failed)",
            ["model", "outcome"],
        ),
        rejected=Counter(
            "bandit_router_rejected_requests",
            "Requests refused before the endpoint, by reason",
            ["reason"],
        ),
        quality=_bounded(
            "bandit_router_audited_quality",
            "Audited quality of routed answers (PPI++), by model ('all': overall)",
            ["model"],
        ),
        cost=_bounded(
            "bandit_router_cost_per_query_usd", "Expected cost per query in USD", ["model"]
        ),
        saving=_bounded(
            "bandit_router_saving_per_query_usd",
            "Saving per query in USD against the reference model",
            ["model", "reference"],
        ),
        retained=_bounded(
            "bandit_router_quality_retained",
            "Audited quality over the reference model's estimated quality",
            ["reference"],
        ),
        agreement=Gauge(
            "bandit_router_grader_agreement",
            "Agreement of two graders on the same answer (pairs, mean_abs_difference, "
            "share_within_0_25)",
            ["stat"],
            multiprocess_mode="mostrecent",
        ),
    )


@functools.cache
def _m() -> _Metrics:
    return _build()


# --- what other code calls --------------------------------------------------------------------


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    _m().requests.labels(route, method, str(status)).observe(seconds)


def record_decision(model: str, endpoint: str = "route") -> None:
    _m().decisions.labels(model, endpoint).inc()


def record_feedback(feedback_type: str, status: str) -> None:
    _m().feedback.labels(feedback_type, status).inc()


def record_audit(kind: str = "grade") -> None:
    """For the audit code: count one gold audit (e.g. kind="selected" or "graded")."""
    _m().audits.labels(kind).inc()


def set_policy_version(version: int | None) -> None:
    if version is not None:
        _m().policy_version.set(version)


def observe_job(kind: str, seconds: float, status: str) -> None:
    """For the jobs code: one finished run (status "succeeded" or "failed")."""
    _m().jobs.labels(kind, status).observe(seconds)


def record_upstream(model: str, outcome: str) -> None:
    _m().upstream.labels(model, outcome).inc()


def record_rejection(reason: str) -> None:
    _m().rejected.labels(reason).inc()


def set_report(report: Report) -> None:
    """Export the audited report's numbers (api/admin.py and the `audits` job compute it)."""
    gauges = _m()
    for row in [report.overall, *report.models]:
        gauges.quality.set((row.model,), row.quality)
        gauges.cost.set((row.model,), row.cost_per_query_usd)
        gauges.saving.set((row.model, report.reference or ""), row.saving_per_query_usd)
    gauges.retained.set((report.reference or "",), report.quality_retained)
    agreement = report.agreement
    gauges.agreement.labels("pairs").set(agreement.pairs)
    for stat, value in (
        ("mean_abs_difference", agreement.mean_abs_difference),
        ("share_within_0_25", agreement.share_within_0_25),
    ):
        gauges.agreement.labels(stat).set(float("nan") if value is None else value)


JobFn = TypeVar("JobFn", bound=Callable[..., Any])


def timed_job(kind: str, fn: JobFn) -> JobFn:
    """Wrap a job function so each run is observed, whichever way it ends."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        started, status = time.perf_counter(), "failed"
        try:
            result = fn(*args, **kwargs)
            status = "succeeded"
            return result
        finally:
            observe_job(kind, time.perf_counter() - started, status)

    return run  # type: ignore[return-value]


def instrument_jobs(jobs: dict[str, JobFn]) -> dict[str, JobFn]:
    """A copy of a job table (kind -> function) whose runs are observed; see `JobRunner(jobs=)`."""
    return {kind: timed_job(kind, fn) for kind, fn in jobs.items()}


# --- multiprocess set-up and exposition -------------------------------------------------------


def prepare_multiprocess(directory: str | Path) -> Path:
    """Call once in the parent process before worker processes start (they inherit the setting).

    Empties the folder: files left by a previous run would otherwise be added to this one's."""
    if _m.cache_info().currsize:
        raise RuntimeError("prepare_multiprocess must run before any metric is recorded")
    path = Path(directory).resolve()
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)
    # prometheus_client picks file-backed values when it is imported; it may have been already.
    values.ValueClass = values.get_value_class()
    return path


def render() -> tuple[bytes, str]:
    """The exposition text: this process's metrics, or all workers' in multiprocess mode."""
    _m()  # a scrape before any request still lists every metric
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return generate_latest(registry), CONTENT_TYPE_LATEST


# --- the current request, for log lines ------------------------------------------------------


@dataclass
class RequestContext:
    """Mutable on purpose: set by the middleware, filled in by the endpoint (which may run in a
    thread with a copied context) and read back by the access log."""

    request_id: str
    decision_id: str | None = None
    key_prefix: str | None = None


request_context: ContextVar[RequestContext | None] = ContextVar(
    "bandit_router_request", default=None
)


def current_request() -> RequestContext | None:
    return request_context.get()


def bind_decision(decision_id: str) -> None:
    """Tag the current request (and its log lines) with the decision it made."""
    ctx = request_context.get()
    if ctx is not None:
        ctx.decision_id = decision_id


def bind_key(prefix: str) -> None:
    ctx = request_context.get()
    if ctx is not None:
        ctx.key_prefix = prefix
