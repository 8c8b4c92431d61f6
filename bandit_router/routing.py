"""One routing decision, from an embedded query to the row that logs it: the rules that /v1/route,
the OpenAI-compatible proxy and the benchmarks share (the HTTP side embeds and commits)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bandit_router.audit.sampling import audit_probability, selected_for_audit
from bandit_router.config import Settings
from bandit_router.policy.decide import Choice, Policy, decide
from bandit_router.policy.exploration import ExplorationConfig
from bandit_router.policy.pool import ModelSpec
from bandit_router.store.rows import decision_row


def exploration_config(settings: Settings) -> ExplorationConfig:
    return ExplorationConfig(
        kind=settings.exploration,
        gamma=settings.squarecb_gamma,
        epsilon=settings.epsilon,
        new_model_examples=settings.new_model_examples,
        new_model_min_probability=settings.new_model_min_probability,
    )


@dataclass(frozen=True)
class Planned:
    """A decision ready to commit: the choice, its log row, and whether it is audited."""

    choice: Choice
    row: dict[str, Any]
    audited: bool


def plan_decision(
    policy: Policy,
    decision_id: str,
    emb: np.ndarray,
    candidates: Sequence[ModelSpec],
    enabled: Sequence[ModelSpec],
    input_tokens: int,
    lam: float,
    settings: Settings,
    exploration: ExplorationConfig,
    *,
    prompt_hash: str,
    prompt: str | None = None,
    preset: str | None = None,
) -> Planned:
    """Decide among `candidates` and draw the audit. Cost is normalised by the priciest ENABLED
    model for this query, so λ means the same whatever allow-list the request carries."""
    cost_ref = max(m.expected_cost(input_tokens) for m in enabled)
    choice = decide(policy, decision_id, emb, candidates, input_tokens, cost_ref, lam, exploration)
    audit_p = audit_probability(
        choice.pmf, settings.audit_rate_floor, settings.audit_uncertainty_boost,
        settings.audit_rate_max,
    )  # fmt: skip
    audited = selected_for_audit(decision_id, audit_p)
    row = decision_row(
        decision_id,
        choice,
        emb,
        lam=lam,
        input_tokens=input_tokens,
        policy_version=policy.version,
        exploration=exploration.kind,
        prompt_hash=prompt_hash,
        prompt=prompt,
        preset=preset,
        audit_probability=audit_p,
        audit_selected=audited,
    )
    return Planned(choice, row, audited)
