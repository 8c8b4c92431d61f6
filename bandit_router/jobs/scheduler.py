"""APScheduler: runs the update job on an interval inside the process that owns scheduling."""

from __future__ import annotations

from apscheduler.schedulers.background import BackgroundScheduler

from bandit_router.jobs.runner import JobRunner


def start_scheduler(runner: JobRunner, interval_seconds: float) -> BackgroundScheduler:
    sched = BackgroundScheduler(daemon=True)
    sched.add_job(
        runner.submit,
        "interval",
        args=["update", "schedule"],
        seconds=interval_seconds,
        id="update",
        coalesce=True,
        max_instances=1,
    )
    sched.start()
    return sched
