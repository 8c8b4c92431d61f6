"""One routing decision, from a query to the committed row that logs it: the rules /v1/route, the
OpenAI-compatible proxy and the benchmarks share.

The serving state a request reads is one immutable `Snapshot` (policy + pool + enabled models),
replaced whole by `Runtime.refresh`: a request never sees a policy of one version and a pool of
another."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sqlalchemy import Connection, Engine

from bandit_router import telemetry
from bandit_router.audit.sampling import audit_probability, selected_for_audit
from bandit_router.config import Settings
from bandit_router.embed.service import EmbeddingService, EncoderOverloaded, text_hash
from bandit_router.policy.decide import Choice, Policy, decide
from bandit_router.policy.exploration import ExplorationConfig
from bandit_router.policy.pool import ModelSpec
from bandit_router.services.errors import Invalid, NotFound, excerpt, names_excerpt
from bandit_router.store import proxy_log
from bandit_router.store import repository as repo
from bandit_router.store.models import utcnow
from bandit_router.store.records import columns
from bandit_router.store.writer import GroupCommitWriter

# What the HTTP layer names without importing the layers below the services.
__all__ = ["Choice", "EncoderOverloaded", "ModelSpec", "Policy", "Query", "Routed", "Snapshot"]


@dataclass(frozen=True)
class Snapshot:
    """What a request routes with. `enabled` leaves out disabled models and any whose numbers
    cannot price a query (services/pool.py), derived once per change, not per request."""

    policy: Policy
    pool: Mapping[str, ModelSpec]
    enabled: tuple[ModelSpec, ...]


class Query(Protocol):
    """A request to route, as the API or the proxy parsed it (api/schemas.py: RouteRequest).
    Methods, not fields: the texts are built only when a decision needs them (the transcript
    only for an audited one)."""

    @property
    def lam(self) -> float | None: ...

    @property
    def preset(self) -> str | None: ...

    def query_text(self) -> str:
        """What the policy embeds: the prompt or the last user message."""
        ...

    def full_text(self) -> str:
        """What the upstream model reads: the input-token estimate, a stored prompt."""
        ...

    def transcript(self) -> str:
        """What a grader reads."""
        ...


@dataclass(frozen=True)
class Routed:
    """A committed decision: what /v1/route returns and what the proxy forwards on."""

    decision_id: str
    choice: Choice
    lam: float
    policy_version: int
    audited: bool = False  # drawn for a gold audit: the proxy keeps the answer for graders


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


def decision_row(
    decision_id: str,
    choice: Choice,
    emb: np.ndarray,
    *,
    lam: float,
    input_tokens: int,
    policy_version: int,
    exploration: str,
    prompt_hash: str,
    prompt: str | None = None,
    preset: str | None = None,
    audit_probability: float = 0.0,
    audit_selected: bool = False,
) -> dict[str, Any]:
    return {
        "id": decision_id,
        "created_at": utcnow(),
        "prompt_hash": prompt_hash,
        "prompt": prompt,
        "embedding": np.asarray(emb, dtype=np.float32).tobytes(),
        "input_tokens": input_tokens,
        "lam": lam,
        "preset": preset,
        "candidates": choice.candidates(),
        "chosen_model": choice.model,
        "probability": choice.probability,
        "exploration": exploration,
        "policy_version": policy_version,
        "audit_probability": audit_probability,
        "audit_selected": audit_selected,
    }


def select_candidates(
    snapshot: Snapshot, models: Sequence[str] | None, exclude: Sequence[str] | None
) -> list[ModelSpec]:
    """The allow-list minus the exclusions, in pool order; unknown or disabled names are errors
    (a model whose prices cannot be used counts as disabled: it is never routed)."""
    for field, names in (("models", models), ("exclude", exclude)):
        unknown = {n for n in names or [] if n not in snapshot.pool}
        if unknown:
            raise Invalid(f"'{field}' names unknown models: {names_excerpt(unknown)}")
    enabled = {m.name for m in snapshot.enabled}
    disabled = {n for n in models or [] if n not in enabled}
    if disabled:
        raise Invalid(f"'models' names disabled models: {names_excerpt(disabled)}")
    allowed = set(models) if models is not None else None
    excluded = set(exclude or [])
    out = [
        m
        for m in snapshot.enabled
        if (allowed is None or m.name in allowed) and m.name not in excluded
    ]
    if not out:
        raise Invalid("no candidate model is left after 'models' and 'exclude'")
    return out


class RoutingService:
    """The one routing code path (/v1/route and the proxy): embed, decide, draw the audit, commit
    the decision before returning it."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        embedder: EmbeddingService,
        writer: GroupCommitWriter,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.embedder = embedder
        self.writer = writer
        self.exploration = exploration_config(settings)

    def decision_record(self, decision_id: str) -> dict[str, Any]:
        """A decision as logged (without its embedding), its feedback, and who answered it if it
        was proxied: what GET /v1/decisions/{id} shows."""
        with self.engine.connect() as conn:
            row = repo.get_decision(conn, decision_id)
            if row is None:
                raise NotFound(f"decision {excerpt(decision_id, 64)} does not exist")
            feedback = repo.list_feedback(conn, decision_id)
            proxy = proxy_log.get_answer(conn, decision_id)
        out = columns(row)
        del out["embedding"]
        out["feedback"] = [columns(f) for f in feedback]
        out["proxy"] = columns(proxy) if proxy is not None else None
        return out

    def lam_of(self, query: Query) -> float:
        if query.lam is not None:
            return query.lam
        return self.settings.preset_lambda(query.preset or self.settings.default_preset)

    async def route(
        self,
        query: Query,
        candidates: Sequence[ModelSpec],
        snapshot: Snapshot,
        endpoint: str = "route",
        record: Callable[[Connection, str], None] | None = None,
    ) -> Routed:
        """`record` writes more about the decision in the same transaction (the proxy: what
        identifies the request, for its retries)."""
        settings = self.settings
        lam = self.lam_of(query)
        text, full_text = query.query_text(), query.full_text()
        key = text_hash(text)
        emb, _ = await self.embedder.embed(text, key)
        input_tokens = max(1, round(len(full_text) / settings.chars_per_token))
        decision_id = uuid.uuid4().hex
        telemetry.bind_decision(decision_id)
        planned = plan_decision(
            snapshot.policy,
            decision_id,
            emb,
            candidates,
            snapshot.enabled,
            input_tokens,
            lam,
            settings,
            self.exploration,
            prompt_hash=key,
            prompt=full_text if settings.store_prompts else None,
            preset=query.preset,
        )
        # Kept for the grader even with STORE_PROMPTS=false (services/audits.py says what is kept).
        audit_prompt = query.transcript() if planned.audited else None

        def write(conn: Connection) -> None:
            repo.insert_decision(conn, planned.row, planned.audited, audit_prompt)
            if record is not None:
                record(conn, decision_id)

        await self.writer.write(write)
        telemetry.record_decision(planned.choice.model, endpoint)
        if planned.audited:
            telemetry.record_audit("selected")
        return Routed(decision_id, planned.choice, lam, snapshot.policy.version, planned.audited)
