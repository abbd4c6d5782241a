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
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from prcrs_batch import pipeline, results
from prcrs_batch.db import make_engine
from prcrs_batch.settings import Settings

log = logging.getLogger(__name__)
MISFIRE_GRACE_SECONDS = 3 * 3600


def nightly_job(settings: Settings, host: str) -> pipeline.RunSummary | None:
    """Claim tonight, then run it; None when another scheduler already claimed it."""
    as_of = settings.today()
    warehouse = make_engine(settings.warehouse_url)
    results_db = make_engine(settings.results_database_url)
    try:
        with results_db.begin() as connection:
            claimed = results.claim_night(
                connection=connection, as_of=as_of, claimed_by=host, now=datetime.now(timezone.utc)
            )
        if not claimed:
            log.info("night %s already claimed by another scheduler; skipping", as_of.isoformat())
            return None
        summary = pipeline.run_nightly(
            settings, as_of=as_of, warehouse=warehouse, results_db=results_db
        )
        log.info("night %s: %s (%d alerts)", as_of.isoformat(), summary.status, summary.n_alerts)
        return summary
    finally:
        warehouse.dispose()
        results_db.dispose()


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
        job or (lambda: nightly_job(settings, host)),
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
