"""What the OpenAI-compatible proxy records beyond the routing log, and its retries.

A retried proxy request reuses the decision of the request it repeats.

Clients retry: OpenAI's SDKs retry a 502 twice by themselves, and each try used to log a decision
of its own, three decisions for one question with no answer. A request names what it repeats by
an `Idempotency-Key` header (the same key for the same body; another body is a 409, as in
Stripe's API), or, without a key, by the SDK's `x-stainless-retry-count` header (1, 2, ...): then
the newest keyless request of the same caller with the same body within RETRY_WINDOW is the one
retried. The retry runs the upstream attempts again on the earlier decision's candidates, in the
earlier order; no answer is cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine

from bandit_router.config import Settings
from bandit_router.policy.decide import Choice
from bandit_router.services import audits
from bandit_router.services.errors import excerpt
from bandit_router.services.routing import Routed
from bandit_router.store import proxy_log
from bandit_router.store import repository as repo
from bandit_router.store.models import Decision, utcnow
from bandit_router.store.writer import GroupCommitWriter

log = logging.getLogger(__name__)

RETRY_HEADER = "x-stainless-retry-count"
# OpenAI's SDKs wait at most 8 s between tries, but each try may run to the client's timeout.
RETRY_WINDOW = timedelta(minutes=15)


class KeyReused(Exception):
    """The same Idempotency-Key with another body."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"Idempotency-Key {excerpt(key, 60)} was already used for a different request body; "
            "use a new key for a new request"
        )


@dataclass(frozen=True)
class ProxyCall:
    caller: str  # the API key's prefix, "" when auth is off: keys are per caller
    key: str | None
    body_hash: str
    retried: bool

    def row(self, decision_id: str) -> dict[str, Any]:
        return {
            "decision_id": decision_id,
            "created_at": utcnow(),
            "caller": self.caller,
            "idempotency_key": self.key,
            "body_hash": self.body_hash,
        }


def body_hash(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def proxy_call(caller: str, key: str | None, body: Any, retry_count: str | None) -> ProxyCall:
    retried = retry_count is not None and retry_count.strip().isdigit() and int(retry_count) > 0
    return ProxyCall(caller, key or None, body_hash(body), retried)


def earlier_decision(conn: Connection, call: ProxyCall) -> Decision | None:
    """The logged decision this call repeats, if any. Raises KeyReused."""
    if call.key is not None:
        found = proxy_log.request_by_key(conn, call.caller, call.key)
        if found is not None and found.body_hash != call.body_hash:
            raise KeyReused(call.key)
    elif call.retried:
        found = proxy_log.request_by_body(
            conn, call.caller, call.body_hash, utcnow() - RETRY_WINDOW
        )
    else:
        return None
    return repo.get_decision(conn, found.decision_id) if found else None


def routed_again(decision: Decision) -> Routed:
    """The logged decision as the proxy holds a fresh one: its candidates, scores and choice."""
    cands = decision.candidates

    def column(name: str) -> np.ndarray:
        return np.array([float(c[name]) for c in cands])

    models = [c["model"] for c in cands]
    choice = Choice(
        models=models,
        quality=column("quality"),
        cost_usd=column("cost_usd"),
        cost_norm=column("cost_norm"),
        score=column("score"),
        pmf=column("probability"),
        chosen=models.index(decision.chosen_model),
    )
    return Routed(
        decision.id, choice, decision.lam, decision.policy_version, decision.audit_selected
    )


class ProxyRecords:
    """The proxy's writes: a request's identity (with its decision), who answered, and an
    audited answer's text for its grader. None of them may fail an answer already paid for."""

    def __init__(self, engine: Engine, writer: GroupCommitWriter, settings: Settings) -> None:
        self.engine = engine
        self.writer = writer
        self.settings = settings

    def earlier(self, call: ProxyCall) -> Routed | None:
        """The decision a retried request repeats (KeyReused: its key came with another body)."""
        with self.engine.connect() as conn:
            found = earlier_decision(conn, call)
        return routed_again(found) if found is not None else None

    @staticmethod
    def request_recorder(call: ProxyCall) -> Callable[[Connection, str], None]:
        """Writes the request's identity in its decision's transaction."""
        return lambda conn, decision_id: proxy_log.record_request(conn, call.row(decision_id))

    async def record_answer(
        self,
        decision_id: str,
        served: str | None,
        status: int,
        attempts: list[dict[str, Any]],
        output_tokens: int | None = None,
    ) -> None:
        row = {
            "decision_id": decision_id,
            "served_model": served,
            "status": status,
            "attempts": attempts,
            "output_tokens": output_tokens,
        }
        try:
            await self.writer.write(lambda conn: proxy_log.record_answer(conn, row))
        except Exception as exc:  # the upstream answer is already paid for: never lose it here
            log.warning("could not record which model answered: %s", exc)

    def keeps_text(self, routed: Routed) -> bool:
        return audits.keeps_text(routed.audited, self.settings)

    async def keep_answer(self, routed: Routed, text: str) -> None:
        """Keep an audited decision's whole answer for its grader."""
        if not self.keeps_text(routed):
            return
        decision_id, settings = routed.decision_id, self.settings
        try:
            await self.writer.write(
                lambda conn: audits.store_answer(conn, decision_id, text, settings)
            )
        except Exception as exc:  # the answer is paid for and the client waits: never fail it
            log.warning("could not keep the audited answer: %s", exc)

    def stream_ended(self, decision_id: str, tokens: int, text: str | None) -> None:
        """After a stream went out: nobody waits for this write, and losing it loses a bias
        feature (or an audit's answer, which a client can still attach)."""
        settings = self.settings

        def write(conn: Connection) -> None:
            proxy_log.set_output_tokens(conn, decision_id, tokens)
            if text is not None:
                audits.store_answer(conn, decision_id, text, settings)

        self.writer.submit(write)
