"""GET /metrics: the Prometheus exposition of bandit_router/telemetry.py's metrics."""

from __future__ import annotations

from fastapi import Request, Response

from bandit_router.services.audits import latest_report
from bandit_router.telemetry import render, set_policy_version, set_report


def endpoint(request: Request) -> Response:
    """GET /metrics (sync: reading the workers' files is blocking I/O, so it runs in a thread)."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is not None and runtime.policy is not None:
        set_policy_version(runtime.policy.version)
    report = latest_report(runtime.settings) if runtime is not None else None
    if report is not None:  # computed by the `audits` job or GET /v1/admin/report, never here
        set_report(report)
    body, content_type = render()
    return Response(body, media_type=content_type)
