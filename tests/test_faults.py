"""Failure drills, small and fast: the scenarios of `bandit-router bench load` with a few seconds
of load each, against the real service in a subprocess (see bandit_router/bench/load.py).

The PostgreSQL-restart drill stops and starts the shared local server for about two seconds, which
fails whatever else is using it at that moment: it is marked `pg_restart` (CI runs it; deselect it
with `-m "not pg_restart"` while other work shares the server).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from bandit_router.bench.load import default_pg_ctl, run_load_bench
from bandit_router.config import load_settings


def _assert_nothing_acknowledged_is_lost(report: dict[str, Any]) -> None:
    d = report["durability"]
    assert d["decisions_acknowledged"] > 0 and d["feedback_acknowledged"] > 0, report
    assert d["decisions_missing"] == 0, report
    assert d["feedback_missing"] == 0, report


def test_kill_9_under_load_keeps_every_acknowledged_write(pool_file: Path) -> None:
    settings = load_settings(pool_file=pool_file)
    report = run_load_bench(settings, "kill", duration_s=3.0, rate=10.0)

    _assert_nothing_acknowledged_is_lost(report)
    # The kill really cut requests off, and the restarted service answered everything after it.
    assert report["outage"]["statuses"].get("connection", 0) > 0, report
    assert report["failures_after_restart"] == 0, report
    assert report["ok"], report["problems"]


def _pg_is_up() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"]).returncode == 0


@pytest.mark.postgres
@pytest.mark.pg_restart
def test_postgres_restart_under_load_fails_fast_and_recovers(
    pool_file: Path,
    pg_url: str,
    pg_admin: Engine,
) -> None:
    settings = load_settings(pool_file=pool_file)
    try:
        report = run_load_bench(
            settings, "pg-restart", duration_s=3.0, rate=10.0, database_url=pg_url, pg_down_s=1.5
        )
    finally:
        if not _pg_is_up():  # never leave the shared server down, whatever failed above
            subprocess.run([*default_pg_ctl(), "start"], check=False, timeout=120)
        pg_admin.dispose()  # its pooled connections died with the restart

    _assert_nothing_acknowledged_is_lost(report)
    outage = report["outage"]
    # While the database was down the service answered 503 + Retry-After, never 500 or a hang.
    assert set(outage["statuses"]) == {"503"}, report
    assert outage["503_without_retry_after"] == 0, report
    assert report["statuses"].get("timeout", 0) == 0, report
    assert report["recovered_after_s"] is not None, report
    assert report["failures_after_recovery"] == 0, report
    assert report["ok"], report["problems"]
