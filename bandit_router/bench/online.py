"""Online simulation on a gold table with the SERVICE'S OWN code: `decide` picks each model, the
decision and its simulated feedback are written to a real SQL store, and `run_update` (the update
job) turns them into new policy versions every `batch` rounds."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import Engine
from tqdm import tqdm

from bandit_router.bench.data import BenchData
from bandit_router.config import Settings
from bandit_router.jobs.update import run_update
from bandit_router.policy.decide import Policy, decide
from bandit_router.policy.exploration import ExplorationConfig
from bandit_router.policy.service import load_policy
from bandit_router.runtime import prepare_database
from bandit_router.store import repository as repo
from bandit_router.store.db import make_engine
from bandit_router.store.rows import decision_row, feedback_row

# (prompt row, model index, rng) -> the reward the simulated user/judge reports
FeedbackFn = Callable[[int, int, np.random.Generator], float]


@dataclass
class OnlineRun:
    quality: list[float] = field(default_factory=list)  # true score of the chosen model per round
    cost: list[float] = field(default_factory=list)  # USD per round
    reward: list[float] = field(default_factory=list)  # quality − λ·normalised cost per round
    explored: int = 0  # rounds where the chosen model was not the greedy one
    versions: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        return {
            "rounds": len(self.quality),
            "mean_quality": float(np.mean(self.quality)),
            "mean_cost_usd": float(np.mean(self.cost)),
            "mean_reward": float(np.mean(self.reward)),
            "explore_share": self.explored / max(1, len(self.quality)),
        }


def store_for(
    settings: Settings, folder: Path, name: str, pool_yaml: Path
) -> tuple[Engine, Settings]:
    """A fresh SQLite store with the benchmark's pool, set up like the service sets up its own."""
    db = folder / f"{name}.db"
    db.unlink(missing_ok=True)
    s = settings.model_copy(
        update={
            "database_url": f"sqlite:///{db}",
            "pool_file": pool_yaml,
            "reward_wait_seconds": 0.0,
            "no_feedback": "skip",
        }
    )
    engine = make_engine(s.database_url)
    prepare_database(engine, s)
    return engine, s


def exploration_config(settings: Settings) -> ExplorationConfig:
    return ExplorationConfig(
        kind=settings.exploration,
        gamma=settings.squarecb_gamma,
        epsilon=settings.epsilon,
        new_model_examples=settings.new_model_examples,
        new_model_min_probability=settings.new_model_min_probability,
    )


def decision_id(label: str, t: int) -> str:
    return hashlib.md5(f"{label}-{t}".encode()).hexdigest()  # 32 hex chars, like a uuid4().hex


def active_policy(engine: Engine) -> Policy:
    with engine.connect() as conn:
        version = repo.active_policy_id(conn)
    assert version is not None
    return load_policy(engine, version)


def simulate(
    engine: Engine,
    settings: Settings,
    data: BenchData,
    rounds: int,
    feedback: FeedbackFn,
    lam: float,
    seed: int,
    label: str,
    batch: int = 500,
    progress: bool = False,
) -> tuple[OnlineRun, Policy]:
    rng = np.random.default_rng(seed)
    cfg = exploration_config(settings)
    models = data.models
    col = {m: k for k, m in enumerate(models)}
    policy = active_policy(engine)
    run = OnlineRun(versions=[policy.version])
    decisions: list[dict[str, object]] = []
    feedbacks: list[dict[str, object]] = []
    for t in tqdm(range(rounds), desc=label, disable=not progress, mininterval=1.0):
        i = int(rng.choice(data.train))
        in_tok = int(data.input_tokens[i])
        expected = [m.expected_cost(in_tok) for m in data.pool]
        did = decision_id(label, t)
        choice = decide(policy, did, data.X[i], data.pool, in_tok, max(expected), lam, cfg)
        k = col[choice.model]
        run.quality.append(float(data.scores[i, k]))
        run.cost.append(float(data.costs[i, k]))
        run.reward.append(float(data.scores[i, k] - lam * choice.cost_norm[choice.chosen]))
        run.explored += int(choice.chosen != int(np.argmax(choice.score)))
        r = feedback(i, k, rng)
        decisions.append(
            decision_row(
                did,
                choice,
                data.X[i],
                lam=lam,
                input_tokens=in_tok,
                policy_version=policy.version,
                exploration=cfg.kind,
                prompt_hash=did,
            )
        )
        feedbacks.append(feedback_row(did, "reward", r, r, source="judge", idempotency_key="sim"))
        if len(decisions) == batch or t == rounds - 1:
            _flush(engine, decisions, feedbacks)
            decisions, feedbacks = [], []
            run_update(engine, settings)
            policy = active_policy(engine)
            run.versions.append(policy.version)
    return run, policy


def _flush(
    engine: Engine, decisions: list[dict[str, object]], feedbacks: list[dict[str, object]]
) -> None:
    with engine.begin() as conn:
        repo.insert_decisions(conn, decisions)
        for fb in feedbacks:
            repo.insert_feedback(conn, fb)


def predict_matrix(policy: Policy, X: np.ndarray, models: list[str]) -> np.ndarray:
    """The policy's predicted quality for every (prompt, model): what it would route on."""
    return np.stack([policy.model.predict(x, models) for x in X])
