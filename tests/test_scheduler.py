"""The scheduler fires the nightly job on its cron, never twice a night, and stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import datetime, time, timedelta

from prcrs_batch.app import pipeline, scheduler
from prcrs_batch.results.migrations import migrate
from prcrs_batch.results.tables import crs_risk_scores, night_claims
from prcrs_batch.settings import load_settings
from tests.support.nightly import AS_OF, count_rows


def test_cron_job_fires(settings_env):
    cron_settings = load_settings(schedule_cron="* * * * *", timezone="Europe/Paris")
    fired = threading.Event()
    sched = scheduler.build_scheduler(cron_settings, job=fired.set, host="test")
    job = sched.get_jobs()[0]
    assert job.trigger.timezone.key == "Europe/Paris"
    assert sched._job_defaults["coalesce"] is True
    assert sched._job_defaults["max_instances"] == 1
    sched.start()
    try:
        # The next crontab minute may be up to 60 s away: bring it forward by two seconds.
        job.modify(next_run_time=datetime.now(cron_settings.zone) + timedelta(seconds=2))
        sched.wakeup()
        assert fired.wait(timeout=20)
    finally:
        sched.shutdown(wait=True)


def test_second_scheduler_does_not_score_the_same_night(settings, warehouse):
    at_2am = datetime.combine(AS_OF + timedelta(days=1), time(2, 0))
    first = pipeline.run_claimed_night(settings, host="host-a", now=at_2am)
    second = pipeline.run_claimed_night(settings, host="host-b", now=at_2am + timedelta(hours=1))
    assert first is not None and first.status == "succeeded"
    assert second is None
    assert count_rows(warehouse, night_claims) == 1
    assert count_rows(warehouse, crs_risk_scores, as_of=AS_OF) == first.n_scores


def test_schedule_command_stops_cleanly_on_sigterm(settings_env, tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    migrate(url)  # `schedule` refuses to start without the results schema
    env = {**os.environ, "PRCRS_WAREHOUSE_URL": url}
    process = subprocess.Popen(
        [sys.executable, "-m", "prcrs_batch", "schedule"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(60, process.kill)  # a hang fails the test, never the whole run
    watchdog.start()
    for line in process.stderr:
        if "Scheduler started" in line:  # APScheduler's own line, once it is running
            break
    process.send_signal(signal.SIGTERM)
    rest = process.stderr.read()
    watchdog.cancel()
    assert process.wait(timeout=30) == 0
    assert "scheduler stopped" in rest
