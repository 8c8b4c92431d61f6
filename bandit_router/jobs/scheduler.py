"""APScheduler: runs the periodic jobs inside the one process that owns scheduling."""

from __future__ import annotations

from apscheduler.schedulers.background import BackgroundScheduler

from bandit_router.config import Settings
from bandit_router.jobs.runner import SCHEDULE, JobRunner


def start_scheduler(runner: JobRunner, settings: Settings) -> BackgroundScheduler:
    sched = BackgroundScheduler(daemon=True)
    for kind, interval_field in SCHEDULE.items():
        sched.add_job(
            runner.submit,
            "interval",
            args=[kind, "schedule"],
            seconds=float(getattr(settings, interval_field)),
            id=kind,
            coalesce=True,
            max_instances=1,
        )
    sched.start()
    return sched
