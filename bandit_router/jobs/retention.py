"""The retention purge: decisions older than RETENTION_DAYS go, with their feedback, audits and
proxy records, after their per-day, per-model aggregates are added to `daily_aggregates`; stored
prompt text goes after PROMPT_RETENTION_DAYS (the decision itself stays).

Work is done in batches of RETENTION_BATCH_ROWS, one short transaction each: on SQLite the
serving process's writes wait for at most one batch, and on PostgreSQL no long transaction holds
back vacuum. A batch's roll-up and its deletion commit together, so a killed purge neither loses
nor double-counts a day.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from bandit_router.config import Settings
from bandit_router.store import repository as repo
from bandit_router.store.models import utcnow
from bandit_router.store.repository import ExpiredDecision

log = logging.getLogger(__name__)

PAUSE_SECONDS = 0.01  # between batches: lets queued serving writes take the lock first


def _day(at: datetime) -> date:
    # SQLite hands back naive datetimes; the service stores UTC.
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).date()


def roll_up(expired: list[ExpiredDecision]) -> list[dict[str, Any]]:
    """Per (UTC day, chosen model): counts and sums, ready to be added to daily_aggregates."""
    out: dict[tuple[date, str], dict[str, Any]] = defaultdict(
        lambda: dict.fromkeys(
            ("decisions", "feedback", "reward_sum", "cost_usd", "audits", "gold_sum"), 0
        )
    )
    for d in expired:
        row = out[(_day(d.created_at), d.model)]
        row["decisions"] += 1
        row["feedback"] += len(d.rewards)
        row["reward_sum"] += sum(d.rewards)
        row["cost_usd"] += d.cost_usd
        if d.gold is not None:
            row["audits"] += 1
            row["gold_sum"] += d.gold
    return [{"day": day, "model": model, **row} for (day, model), row in sorted(out.items())]


def purge_decisions(engine: Engine, before: datetime, batch: int) -> dict[str, int]:
    """Roll up and delete every decision made before `before`, `batch` at a time."""
    deleted = batches = 0
    while True:
        with engine.begin() as conn:
            expired = repo.expired_decisions(conn, before, batch)
            repo.add_daily_aggregates(conn, roll_up(expired))
            deleted += repo.delete_decisions(conn, [d.id for d in expired])
        if not expired:
            return {"decisions_deleted": deleted, "batches": batches}
        batches += 1
        if len(expired) < batch:
            return {"decisions_deleted": deleted, "batches": batches}
        time.sleep(PAUSE_SECONDS)


def forget_prompts(engine: Engine, before: datetime, batch: int) -> int:
    """Clear the stored prompt text of decisions made before `before`, `batch` at a time."""
    cleared = 0
    while True:
        with engine.begin() as conn:
            ids = repo.expired_prompt_ids(conn, before, batch)
            cleared += repo.forget_prompts(conn, ids)
        if len(ids) < batch:
            return cleared
        time.sleep(PAUSE_SECONDS)


def run_retention(engine: Engine, settings: Settings) -> dict[str, Any]:
    """The scheduled job. A retention of 0 days keeps that data forever."""
    now = utcnow()
    batch = settings.retention_batch_rows
    result: dict[str, Any] = {
        "retention_days": settings.retention_days,
        "prompt_retention_days": settings.prompt_retention_days,
    }
    if settings.prompt_retention_days > 0:
        cutoff = now - timedelta(days=settings.prompt_retention_days)
        result["prompts_cleared"] = forget_prompts(engine, cutoff, batch)
    if settings.retention_days > 0:
        cutoff = now - timedelta(days=settings.retention_days)
        result |= purge_decisions(engine, cutoff, batch)
        result["cutoff"] = cutoff.isoformat()
    log.info("retention: %s", result)
    return result
