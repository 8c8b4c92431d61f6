"""`bandit-router demo fill`: a store with traffic, feedback, audits and policy versions, made
through the API as clients would, so the console has something to show.

Answers are simulated: each model has a hidden quality per topic (dearer models are better at
maths; all are alike at writing), thumbs follow it, and graders' gold grades follow it too."""

from __future__ import annotations

import argparse
import logging
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bandit_router.config import Settings

MATHS = [
    "What is {a} times {b}?",
    "Solve for x: {a}x + {b} = 0",
    "What is the derivative of x^{a} + {b}x?",
    "Find the greatest common divisor of {a} and {b}.",
    "Is {a}{b} a prime number? Show the factorisation.",
]
WRITING = [
    "Write a short poem about the {w} at dawn.",
    "Compose a haiku about a {w} in winter.",
    "Write a limerick about a {w} who loved to dance.",
    "Draft a friendly e-mail inviting the team to see the {w}.",
]
WORDS = ["river", "lighthouse", "fox", "harbour", "mountain", "violin", "garden", "comet"]
# An httpx.Client on a served URL, or Starlette's TestClient in-process (not an httpx.Client
# subclass in every Starlette version): anything with httpx-style get and post.
Http = Any
PRESETS = ["quality", "balanced", "balanced", "cost"]
# A demo store needs audits to grade and to estimate the bias from: far more than production's 2 %.
DEMO_AUDIT_RATE = 0.15


def prompt(rng: random.Random) -> tuple[str, str]:
    """(topic, prompt)."""
    if rng.random() < 0.5:
        return "maths", rng.choice(MATHS).format(a=rng.randint(2, 99), b=rng.randint(2, 99))
    return "writing", rng.choice(WRITING).format(w=rng.choice(WORDS))


def qualities(models: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Hidden quality per model and topic, by price rank (cheapest first)."""
    ranked = sorted(models, key=lambda m: m["output_price"])
    top = max(len(ranked) - 1, 1)
    return {
        m["name"]: {"maths": 0.3 + 0.6 * i / top, "writing": 0.75} for i, m in enumerate(ranked)
    }


def _ok(response: httpx.Response) -> Any:
    response.raise_for_status()
    return response.json()


ANSWERS = {
    "maths": "Let us work it through.\n\n1. Restate the question: {q}\n2. Apply the rule step "
    "by step, checking each intermediate value.\n3. State the result and verify it.",
    "writing": "Here is a draft in response to: {q}\n\nMorning opens slowly on the water,\n"
    "light finds the edges of the quiet things,\nand everything that waited, wakes.",
}


def send_answer(client: Http, decision_id: str, topic: str, text: str) -> None:
    """What a /v1/route client does after calling its model: attach the answer. The service
    keeps it only for decisions drawn for an audit (409 otherwise, which is fine here)."""
    answer = {"answer": ANSWERS[topic].format(q=text)}
    response = client.post(f"/v1/decisions/{decision_id}/answer", json=answer)
    if response.status_code not in (200, 201, 409):
        response.raise_for_status()


def route_and_rate(
    client: Http, rng: random.Random, truth: dict[str, dict[str, float]]
) -> tuple[str, str, str]:
    """One query routed, and a thumb from a user who liked the answer with its hidden quality."""
    topic, text = prompt(rng)
    decision = _ok(client.post("/v1/route", json={"prompt": text, "preset": rng.choice(PRESETS)}))
    send_answer(client, decision["decision_id"], topic, text)
    up = rng.random() < truth[decision["model"]][topic]
    feedback = {
        "decision_id": decision["decision_id"],
        "type": "thumbs",
        "value": "up" if up else "down",
    }
    _ok(client.post("/v1/feedback", json=feedback))
    return decision["decision_id"], decision["model"], topic


def grade_audits(
    client: Http,
    rng: random.Random,
    truth: dict[str, dict[str, float]],
    topics: dict[str, tuple[str, str]],
    keep: int,
) -> int:
    """Grade all pending audits but `keep` (left for a person in the workbench)."""
    pending = _ok(client.get("/v1/audits/pending", params={"limit": 500}))
    todo = max(len(pending) - keep, 0)
    if not todo:
        return 0
    items = _ok(client.post("/v1/audits/claim", json={"grader_id": "demo", "limit": todo}))
    for item in items:
        model, topic = topics[item["decision_id"]]
        passed = rng.random() < truth[model][topic]
        body = {"decision_id": item["decision_id"], "pass": passed, "grader_id": "demo"}
        _ok(client.post("/v1/audits", json=body))
    return len(items)


def run_job(client: Http, kind: str, timeout: float = 300.0) -> dict[str, Any]:
    job = _ok(client.post(f"/v1/admin/jobs/{kind}"))
    deadline = time.monotonic() + timeout
    while job["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.3)
        job = _ok(client.get(f"/v1/admin/jobs/{job['id']}"))
    return dict(job)


def fill(
    client: Http, queries: int, seed: int = 0, keep_audits: int = 5, rounds: int = 2
) -> dict[str, Any]:
    """In `rounds` rounds: route and rate a share of `queries`, grade the audits, then learn
    (update) and retrain, so the console shows several policy versions and bias estimates."""
    rng = random.Random(seed)
    models = [m for m in _ok(client.get("/v1/admin/models")) if m["enabled"]]
    truth = qualities(models)
    topics: dict[str, tuple[str, str]] = {}
    jobs = []
    for r in range(rounds):
        for _ in range(queries // rounds + (r < queries % rounds)):
            decision_id, model, topic = route_and_rate(client, rng, truth)
            topics[decision_id] = (model, topic)
        last = r == rounds - 1
        grade_audits(client, rng, truth, topics, keep_audits if last else 0)
        jobs += [run_job(client, "update")["status"], run_job(client, "retrain")["status"]]
    return {"decisions": list(topics), "jobs": jobs}


def spread(engine: Any, decision_ids: list[str], hours: float) -> None:
    """Spread the decisions evenly over the past `hours` so the console's charts have a shape
    (a fill takes a minute; real traffic takes days)."""
    from bandit_router.store import aggregates

    now = datetime.now(UTC)
    step = timedelta(hours=hours) / max(len(decision_ids), 1)
    with engine.begin() as conn:
        for i, decision_id in enumerate(decision_ids):
            aggregates.move_decision(conn, decision_id, now - step * (len(decision_ids) - i))


# --- the CLI ----------------------------------------------------------------------------------


def register(sub: Any) -> None:
    demo = sub.add_parser("demo", help="demo data for the console")
    actions = demo.add_subparsers(dest="demo_action", required=True)
    s = actions.add_parser(
        "fill", help="route and rate simulated queries through the API, grade audits, learn; twice"
    )
    s.add_argument("--queries", type=int, default=400)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--hours", type=float, default=24.0, help="spread the decisions over this")
    s.set_defaults(func=cmd_demo_fill)


def cmd_demo_fill(args: argparse.Namespace, settings: Settings) -> int:
    """In-process (no port is opened), with the app's own authentication off for that reason."""
    from fastapi.testclient import TestClient

    from bandit_router.app import create_app

    # No port is opened, so "authentication is disabled" would be a false alarm here.
    logging.getLogger("bandit_router.api.auth").setLevel(logging.ERROR)
    demo = {"auth_disabled": True, "scheduler_enabled": False, "audit_rate_floor": DEMO_AUDIT_RATE}
    app = create_app(settings.model_copy(update=demo))
    with TestClient(app) as client:
        report = fill(client, args.queries, args.seed)
        if args.hours > 0:
            spread(app.state.runtime.engine, report["decisions"], args.hours)
    print(
        f"filled {settings.database_url.split('@')[-1]}: {args.queries} decisions with feedback "
        f"and their audits graded (but 5); update, retrain jobs: {', '.join(report['jobs'])}. "
        "Open the console at /console"
    )
    return 0
