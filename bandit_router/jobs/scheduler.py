"""APScheduler: runs the periodic jobs inside the one process that owns scheduling."""

from __future__ import annotations

import logging
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler

from bandit_router.config import Settings
from bandit_router.jobs.runner import SCHEDULE, JobRunner

log = logging.getLogger(__name__)


def start_scheduler(
    runner: JobRunner, settings: Settings, guard: Callable[[], bool] | None = None
) -> BackgroundScheduler:
    """`guard` is asked right before each run: a process that has just lost scheduler ownership
    (see jobs/ownership.py) must not fire one more run in parallel with the new owner."""
    sched = BackgroundScheduler(daemon=True)
    for kind, interval_field in SCHEDULE.items():
        sched.add_job(
            _fire,
            "interval",
            args=[runner, kind, guard],
            seconds=float(getattr(settings, interval_field)),
            id=kind,
            coalesce=True,
            max_instances=1,
        )
    sched.start()
    return sched


def _fire(runner: JobRunner, kind: str, guard: Callable[[], bool] | None) -> None:
    if guard is not None and not guard():
        log.warning("skipping scheduled %s: this process no longer owns the scheduler", kind)
        return
    runner.submit(kind, "schedule")
