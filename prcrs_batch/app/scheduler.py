"""The long-running scheduler: one cron job that runs the nightly pipeline.

Coalesced, one instance at a time, with a misfire grace; a claim row in the results
database stops two schedulers on two hosts from scoring the same night twice.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from prcrs_batch.app import pipeline
from prcrs_batch.settings import Settings

log = logging.getLogger(__name__)
MISFIRE_GRACE_SECONDS = 3 * 3600


def build_scheduler(
    settings: Settings, job: Callable[[], object] | None = None, host: str | None = None
) -> BackgroundScheduler:
    """A scheduler with the nightly cron job (tests pass their own `job`); not started."""
    host = host or socket.gethostname()
    scheduler = BackgroundScheduler(
        timezone=settings.zone,
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": MISFIRE_GRACE_SECONDS,
        },
    )
    trigger = CronTrigger.from_crontab(settings.schedule_cron, timezone=settings.zone)
    scheduler.add_job(
        job or (lambda: pipeline.run_claimed_night(settings, host)),
        trigger,
        id="prcrs-nightly",
        name="PrCRS nightly scoring",
    )
    return scheduler


def serve(settings: Settings) -> None:
    """Run the scheduler until SIGTERM or SIGINT; a night in progress is allowed to finish."""
    scheduler = build_scheduler(settings)
    received: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        received.append(signum)  # only a flag: the main loop below does the work

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("scheduler starting: cron '%s' in %s", settings.schedule_cron, settings.timezone)
    scheduler.start()  # APScheduler logs "Scheduler started", then each run
    while not received:
        # Wake every second: a signal delivered to another thread is handled only when
        # the main thread runs Python code again.
        time.sleep(1.0)
    log.info(
        "received %s: finishing any running night, then stopping", signal.Signals(received[0]).name
    )
    scheduler.shutdown(wait=True)
    log.info("scheduler stopped")
