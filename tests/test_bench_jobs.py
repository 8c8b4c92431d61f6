"""`bandit-router bench jobs` at a small N: a fresh store, both jobs as their own processes,
a report with their time and peak memory."""

from __future__ import annotations

import json
from pathlib import Path

from bandit_router.cli import main


def test_bench_jobs_runs_both_jobs_and_reports_them(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    assert main(["bench", "jobs", "--events", "300", "--out", str(out)]) == 0
    run = json.loads((out / "jobs-300.json").read_text())
    assert run["events"] == 300 and run["store_mb"] > 0
    assert set(run["jobs"]) == {"update", "retrain"}
    for kind, job in run["jobs"].items():
        assert job["rc"] == 0 and job["status"] == "succeeded", (kind, job["stderr_tail"])
        assert job["wall_s"] > 0 and job["peak_rss_mb"] > 50  # a Python process with VW loaded
    update, retrain = run["jobs"]["update"]["summary"], run["jobs"]["retrain"]["summary"]
    assert update["events"] == 300 and isinstance(update["published"], int)
    assert retrain["learned_events"] == 300 and isinstance(retrain["candidate"], int)
    assert retrain["evaluated_events"] > 0  # the holdout was valued off-policy
    report = json.loads((out / "result.json").read_text())
    assert report["machine"]["cpus"] and report["runs"] == [run]
