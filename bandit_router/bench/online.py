"""The service's own loop on a gold table, as benchmarks drive it.

Each round `plan_decision` (the code /v1/route runs) picks a model for one prompt; the decision,
the simulated feedback on the answer and, for decisions drawn for an audit, a grader's gold grade
go into a real SQL store through the repository functions the API uses; the update job
(`run_update`) and the retraining job (`run_retrain`, with its real promotion rule) run at the
given cadence, and the active policy is reloaded after each, as a serving process does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine
from tqdm import tqdm

from bandit_router.config import Settings
from bandit_router.jobs.retrain import run_retrain
from bandit_router.jobs.update import run_update
from bandit_router.policy.decide import Policy
from bandit_router.policy.pool import ModelSpec
from bandit_router.policy.rewards import to_reward
from bandit_router.runtime import prepare_database
from bandit_router.services.feedback import feedback_row
from bandit_router.services.policies import load_policy
from bandit_router.services.routing import exploration_config, plan_decision
from bandit_router.store import repository as repo
from bandit_router.store.db import make_engine


@dataclass(frozen=True)
class Feedback:
    """What a simulated user or judge sends about one answer: a /v1/feedback body's fields."""

    kind: str  # thumbs | rating | reward
    value: Any
    output_tokens: int | None = None


# (prompt row, model column, rng) -> the feedback on that model's answer to that prompt
FeedbackFn = Callable[[int, int, np.random.Generator], Feedback]


@dataclass
class Stream:
    """A stream of rounds and the service's cadence for it."""

    prompts: np.ndarray  # the prompt row of each round
    lam: float
    update_every: int = 500
    retrain_every: int | None = None  # None: no retraining
    grade_audits: bool = True  # a grader grades every drawn audit with the gold score
    added: dict[int, ModelSpec] = field(default_factory=dict)  # round -> model added then
    checkpoint_every: int | None = None


@dataclass
class OnlineRun:
    """What happened, round by round."""

    prompt: list[int] = field(default_factory=list)
    model: list[int] = field(default_factory=list)  # column of the chosen model
    quality: list[float] = field(default_factory=list)  # its gold score
    cost: list[float] = field(default_factory=list)  # USD
    reward: list[float] = field(default_factory=list)  # gold − λ·normalised cost
    explored: int = 0  # rounds where the chosen model was not the greedy one
    audits: int = 0
    versions: list[int] = field(default_factory=list)
    retrains: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        return {
            "rounds": len(self.quality),
            "mean_quality": float(np.mean(self.quality)),
            "mean_cost_usd": float(np.mean(self.cost)),
            "mean_reward": float(np.mean(self.reward)),
            "explore_share": self.explored / max(1, len(self.quality)),
            "audits": self.audits,
        }


def store_for(
    settings: Settings, folder: Path, name: str, pool_yaml: Path, **overrides: Any
) -> tuple[Engine, Settings]:
    """A fresh SQLite store with the benchmark's pool, set up like the service sets up its own."""
    db = folder / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    s = settings.model_copy(
        update={
            "database_url": f"sqlite:///{db}",
            "pool_file": pool_yaml,
            "reward_wait_seconds": 0.0,
            "no_feedback": "skip",
            **overrides,
        }
    )
    engine = make_engine(s.database_url)
    prepare_database(engine, s)
    return engine, s


def decision_id(label: str, t: int) -> str:
    return hashlib.md5(f"{label}-{t}".encode()).hexdigest()  # 32 hex chars, like a uuid4().hex


def active_policy(engine: Engine) -> Policy:
    with engine.connect() as conn:
        version = repo.active_policy_id(conn)
    assert version is not None
    return load_policy(engine, version)


def enabled_pool(engine: Engine) -> list[ModelSpec]:
    with engine.connect() as conn:
        return [ModelSpec.from_row(r) for r in repo.list_models(conn, enabled_only=True)]


class _Runner:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        scores: np.ndarray,
        models: list[str],
        label: str,
    ) -> None:
        self.engine, self.settings, self.scores, self.label = engine, settings, scores, label
        self.col = {m: k for k, m in enumerate(models)}
        self.decisions: list[tuple[dict[str, Any], bool]] = []
        self.feedbacks: list[dict[str, Any]] = []
        self.where: dict[str, tuple[int, int]] = {}  # decision id -> (prompt row, model column)

    def log(self, row: dict[str, Any], audited: bool, fb: dict[str, Any], i: int, k: int) -> None:
        self.decisions.append((row, audited))
        self.feedbacks.append(fb)
        self.where[row["id"]] = (i, k)

    def flush(self, grade: bool) -> int:
        """Commit the logged rounds; a grader then grades every audit waiting (gold score)."""
        with self.engine.begin() as conn:
            for row, audited in self.decisions:
                repo.insert_decision(conn, row, audited)
            for fb in self.feedbacks:
                repo.insert_feedback(conn, fb)
        self.decisions, self.feedbacks = [], []
        if not grade:
            return 0
        with self.engine.begin() as conn:
            ids = repo.claim_audits(conn, "bench-grader", 1_000_000, timedelta(hours=1))
            for audit in repo.audits_by_id(conn, ids):
                i, k = self.where[audit.decision_id]
                repo.grade_audit(conn, audit.decision_id, float(self.scores[i, k]), "bench")
        return len(ids)


def run_stream(
    engine: Engine,
    settings: Settings,
    scores: np.ndarray,
    models: list[str],
    X: np.ndarray,
    input_tokens: np.ndarray,
    costs: np.ndarray,
    stream: Stream,
    feedback: FeedbackFn,
    label: str,
    *,
    seed: int = 0,
    on_checkpoint: Callable[[int, Policy], None] | None = None,
    progress: bool = False,
) -> tuple[OnlineRun, Policy]:
    """Route `stream.prompts` one by one through the service's code (see the module docstring).
    `scores`/`costs` are (n, K) over `models`, the columns a stream may ever route to."""
    rng = np.random.default_rng(seed)
    cfg = exploration_config(settings)
    runner = _Runner(engine, settings, scores, models, label)
    policy, pool = active_policy(engine), enabled_pool(engine)
    run = OnlineRun(versions=[policy.version])
    if on_checkpoint is not None:
        on_checkpoint(0, policy)
    rounds = len(stream.prompts)
    for t in tqdm(range(rounds), desc=label, disable=not progress, mininterval=1.0):
        if t in stream.added:
            with engine.begin() as conn:
                repo.add_model(conn, _spec_row(stream.added[t]))
            pool = enabled_pool(engine)
        i = int(stream.prompts[t])
        in_tok = int(input_tokens[i])
        did = decision_id(label, t)
        planned = plan_decision(
            policy, did, X[i], pool, pool, in_tok, stream.lam, settings, cfg, prompt_hash=did
        )
        choice = planned.choice
        k = runner.col[choice.model]
        run.prompt.append(i)
        run.model.append(k)
        run.quality.append(float(scores[i, k]))
        run.cost.append(float(costs[i, k]))
        run.reward.append(float(scores[i, k] - stream.lam * choice.cost_norm[choice.chosen]))
        run.explored += int(choice.chosen != int(np.argmax(choice.score)))
        fb = feedback(i, k, rng)
        reward = to_reward(fb.kind, fb.value)
        row = feedback_row(
            did, fb.kind, fb.value, reward, source="judge", idempotency_key="sim",
            output_tokens=fb.output_tokens,
        )  # fmt: skip
        runner.log(planned.row, planned.audited, row, i, k)
        done = t + 1
        if done % stream.update_every == 0 or done == rounds:
            run.audits += runner.flush(stream.grade_audits)
            run_update(engine, settings)
            if stream.retrain_every and done % stream.retrain_every == 0:
                result = run_retrain(engine, settings)
                run.retrains.append({"round": done, **result})
            policy = active_policy(engine)
            run.versions.append(policy.version)
        if (
            on_checkpoint is not None
            and stream.checkpoint_every
            and (done % stream.checkpoint_every == 0 or done == rounds)
        ):
            on_checkpoint(done, policy)
    return run, policy


def _spec_row(spec: ModelSpec) -> dict[str, Any]:
    return {k: getattr(spec, k) for k in ModelSpec.__dataclass_fields__}


def predict_matrix(policy: Policy, X: np.ndarray, models: list[str]) -> np.ndarray:
    """The policy's predicted quality for every (prompt, model): what it would route on."""
    return np.stack([policy.model.predict(x, models) for x in X])
