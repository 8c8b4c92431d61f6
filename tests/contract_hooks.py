"""Schemathesis hooks for tests/test_contract.py.

Two kinds of rule a JSON schema cannot state:
- rules against the service's state when a request arrives: which models are routable now (the run
  itself adds and disables models), and which model answered the decision a pairwise verdict is
  about. A positive case is brought within them, the smallest change that does, right before it
  is sent (Schemathesis re-checks the case against the schema after the change);
- where the proxy may send requests: a valid `base_url` becomes the fake upstream's, so nothing
  drawn at random makes the service call a host off this machine.
Everything else is generated and checked as the schema says."""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import quote

import httpx
import schemathesis

BASE = os.environ.get("BANDIT_ROUTER_CONTRACT_BASE", "")
HEADERS = {"Authorization": f"Bearer {os.environ.get('BANDIT_ROUTER_CONTRACT_KEY', '')}"}
UPSTREAM = os.environ.get("BANDIT_ROUTER_CONTRACT_UPSTREAM", "")
_URL = re.compile(r"^https?://[!-~]+$")


def _positive(case: Any) -> bool:
    meta = case.meta
    return meta is None or meta.generation.mode.is_positive


def _routable() -> list[str]:
    return sorted(httpx.get(f"{BASE}/healthz", timeout=10).json()["models"])


def _known() -> list[str]:
    models = httpx.get(f"{BASE}/v1/admin/models", headers=HEADERS, timeout=10).json()
    return sorted(m["name"] for m in models)


def _routable_choice(body: dict[str, Any]) -> None:
    """`models` names routable models, `exclude` known ones, and `models` (or the pool) minus
    `exclude` leaves one."""
    routable = _routable()
    if isinstance(body.get("exclude"), list):
        known = set(_known())
        body["exclude"] = [m for m in body["exclude"] if m in known]
    models = body.get("models")
    if isinstance(models, list):
        body["models"] = [m for m in models if m in routable] or routable[:1]
    allowed = set(body["models"]) if isinstance(body.get("models"), list) else set(routable)
    exclude = body.get("exclude")
    if isinstance(exclude, list) and not allowed - set(exclude):
        keep = sorted(allowed)[0]
        body["exclude"] = [m for m in exclude if m != keep]


def _real_other_model(body: dict[str, Any]) -> None:
    """A pairwise `other_model` is routable and not the decision's own model."""
    own = None
    decision_id = quote(str(body.get("decision_id")), safe="")
    r = httpx.get(f"{BASE}/v1/decisions/{decision_id}", headers=HEADERS, timeout=10)
    if r.status_code == 200:
        decision = r.json()
        own = (decision.get("proxy") or {}).get("served_model") or decision["chosen_model"]
    others = [m for m in _routable() if m != own]
    if body.get("other_model") not in others and others:
        body["other_model"] = others[0]


def _known_reference(case: Any) -> None:
    """The report's `reference` names a model of the pool (the run adds models as it goes)."""
    query = case.query
    if isinstance(query, dict) and "reference" in query and query["reference"] not in _known():
        query["reference"] = _known()[0]


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.operation.path == "/v1/admin/report" and _positive(case):
        _known_reference(case)
    body = case.body
    if not isinstance(body, dict):
        return
    path, method = case.operation.path, case.operation.method.upper()
    if path.startswith("/v1/admin/models"):
        url = body.get("base_url")
        if isinstance(url, str) and len(url) <= 500 and _URL.match(url) and UPSTREAM:
            body["base_url"] = UPSTREAM
    if not _positive(case) or method != "POST":
        return
    if path == "/v1/route":
        _routable_choice(body)
    elif path == "/v1/feedback" and body.get("type") == "pairwise":
        _real_other_model(body)
