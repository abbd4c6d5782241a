"""Faults during a night: SMTP down, lost database connections, SIGTERM mid-write, hostile data."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from click.testing import CliRunner
from pydantic import SecretStr
from sqlalchemy import select, text

from prcrs_batch.app import pipeline
from prcrs_batch.app.cli import main
from prcrs_batch.devdata.cohort import load_cohort
from prcrs_batch.results import nights
from prcrs_batch.results.engines import make_engine
from prcrs_batch.results.tables import crs_risk_scores, data_quality_issues, scoring_runs
from tests.support.nightly import AS_OF, COHORT, count_rows, patient_with_labs_on_as_of, run_night
from tests.support.smtp import SMTP_PASSWORD, SMTP_USER, free_port


def _mail(settings, sink, **extra):
    return settings.model_copy(
        update={
            "smtp_host": sink.host,
            "smtp_port": sink.port,
            "smtp_starttls": False,
            "alert_to": ["oncall@hospital.example"],
            **extra,
        }
    )


def test_smtp_down_keeps_scores_and_the_next_night_sees_to_the_kept_mail(
    settings, warehouse, smtp_sink
):
    down = _mail(settings, smtp_sink, smtp_port=free_port())
    first = run_night(down, warehouse)
    assert first.status == "succeeded"
    assert first.email.startswith("failed")
    assert not first.ok  # the CLI exits non-zero
    assert count_rows(warehouse, crs_risk_scores, as_of=AS_OF) == first.n_scores
    assert first.report_path.exists()
    assert first.report_path.with_suffix(".eml").exists()

    up = _mail(settings, smtp_sink)
    tomorrow = AS_OF + timedelta(days=1)
    second = run_night(up, warehouse, as_of=tomorrow)
    assert second.ok, second.email
    # the tiny cohort's nights are years old: the kept mail is far past PRCRS_MAX_RESEND_HOURS
    # (counted from its night's data cut-off), so it is recorded and never mailed
    assert [m["Subject"][6:16] for m in smtp_sink.messages] == [tomorrow.isoformat()]
    with warehouse.connect() as connection:
        statuses = dict(
            connection.execute(select(scoring_runs.c.as_of, scoring_runs.c.report_status)).all()
        )
    assert statuses == {AS_OF: "expired", tomorrow: "sent"}
    assert not first.report_path.with_suffix(".eml").exists()


def test_a_backfill_mails_nothing_unless_asked(
    settings, warehouse, smtp_sink, monkeypatch, db_url, quick_models, tmp_path
):
    """With an SMTP server set, `backfill` writes the nights' reports and mails none of them,
    nor does a later night; `--email` mails each."""
    for name, value in {
        "WAREHOUSE_URL": db_url,
        "MODEL_DIR": str(quick_models),
        "REPORT_DIR": str(tmp_path / "backfill"),
        "DEVICE": "cpu",
        "SMTP_HOST": smtp_sink.host,
        "SMTP_PORT": str(smtp_sink.port),
        "SMTP_STARTTLS": "false",
        "ALERT_TO": "oncall@hospital.example",
    }.items():
        monkeypatch.setenv(f"PRCRS_{name}", value)
    dates = ["--start", str(AS_OF - timedelta(days=1)), "--end", str(AS_OF)]
    outcome = CliRunner().invoke(main, ["backfill", *dates])
    assert outcome.exit_code == 0, outcome.output
    assert smtp_sink.handler.received == []
    with warehouse.connect() as connection:
        statuses = connection.execute(select(scoring_runs.c.report_status)).scalars().all()
    assert statuses == ["written_only", "written_only"]
    later = run_night(_mail(settings, smtp_sink), warehouse, as_of=AS_OF + timedelta(days=1))
    assert later.ok and len(smtp_sink.messages) == 1  # that night's own mail only

    outcome = CliRunner().invoke(main, ["backfill", *dates, "--email"])
    assert outcome.exit_code == 0, outcome.output
    assert len(smtp_sink.messages) == 3


def test_smtp_refusing_then_recovering(settings, warehouse, smtp_sink):
    smtp_sink.handler.refuse_next = 1  # one 451, then the retry goes through
    summary = run_night(_mail(settings, smtp_sink), warehouse)
    assert summary.ok, summary.email
    assert len(smtp_sink.messages) == 1


def test_failed_night_sends_a_failure_notice(settings, engine, smtp_sink):
    dead = make_engine("postgresql://nobody:hunter2-secret@127.0.0.1:1/none")
    summary = pipeline.run_nightly(
        _mail(settings, smtp_sink), as_of=AS_OF, warehouse=dead, results_db=engine
    )
    assert summary.status == "failed"
    assert "hunter2-secret" not in summary.error
    assert len(smtp_sink.messages) == 1
    notice = smtp_sink.messages[0]
    assert "FAILED" in notice["Subject"]
    assert "hunter2-secret" not in notice.as_string()


def test_secrets_never_reach_logs_or_mail(settings, warehouse, smtp_auth_sink, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = _mail(
        settings,
        smtp_auth_sink,
        smtp_user=SMTP_USER,
        smtp_password=SecretStr("not-" + SMTP_PASSWORD),
    )
    summary = run_night(wrong, warehouse)
    assert summary.email.startswith("failed")
    assert "not-" + SMTP_PASSWORD not in caplog.text
    assert "not-" + SMTP_PASSWORD not in summary.email
    right = _mail(
        settings, smtp_auth_sink, smtp_user=SMTP_USER, smtp_password=SecretStr(SMTP_PASSWORD)
    )
    assert run_night(right, warehouse).ok
    assert SMTP_PASSWORD not in caplog.text


def test_hostile_patient_id_is_escaped_in_the_report(settings, engine):
    hostile = COHORT.copy()
    first = patient_with_labs_on_as_of()
    hostile.loc[hostile["patient_id"] == first, "patient_id"] = "<script>alert(1)</script>"
    load_cohort(engine, hostile)
    summary = run_night(settings, engine)
    assert summary.status == "succeeded"
    html = summary.report_path.read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_bad_values_are_recorded_and_do_not_stop_other_patients(settings, engine):
    dirty = COHORT.copy()
    victim = patient_with_labs_on_as_of()
    mask = dirty["patient_id"] == victim
    for code in ("il6", "crp", "ldh", "sodium"):
        dirty[code] = dirty[code].astype("object")
        dirty.loc[mask, code] = "hemolyzed"
    load_cohort(engine, dirty)
    summary = run_night(settings, engine)
    assert summary.status == "succeeded"
    assert summary.data_issue_counts.get("no_number", 0) > 0
    with engine.connect() as connection:
        reasons = connection.execute(
            select(data_quality_issues.c.reason, data_quality_issues.c.patient_id)
        ).all()
        run_issues = connection.execute(select(scoring_runs.c.n_data_issues)).scalar_one()
    assert run_issues == len(reasons) == summary.n_data_issues
    assert summary.n_patients > 1


def _postgres_only(db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL locks and backends")


def _wait_for_lock_waiter(admin, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with admin.connect() as connection:
            pid = connection.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' LIMIT 1"
                )
            ).scalar()
        if pid:
            return pid
        time.sleep(0.2)
    raise AssertionError("the job never reached the write")


def test_connection_killed_mid_write_is_retried(settings, warehouse, db_url):
    """The results connection dies inside the write transaction: rolled back, retried, complete."""
    _postgres_only(db_url)
    locker = make_engine(db_url).connect()
    transaction = locker.begin()
    locker.execute(text("LOCK TABLE data_quality_issues IN ACCESS EXCLUSIVE MODE"))
    outcome = {}
    worker = threading.Thread(
        target=lambda: outcome.setdefault("summary", run_night(settings, warehouse))
    )
    worker.start()
    admin = make_engine(db_url)
    victim = _wait_for_lock_waiter(admin)
    with admin.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": victim})
    transaction.rollback()
    locker.close()
    worker.join(timeout=120)
    summary = outcome["summary"]
    assert summary.status == "succeeded", summary.error
    assert count_rows(warehouse, crs_risk_scores, as_of=AS_OF) == summary.n_scores
    assert count_rows(warehouse, scoring_runs) == 1
    admin.dispose()


def test_sigterm_during_the_write_leaves_the_previous_night_whole(
    settings, warehouse, db_url, tmp_path
):
    _postgres_only(db_url)
    before = run_night(settings, warehouse)
    assert before.status == "succeeded"
    with warehouse.connect() as connection:
        stored_before = nights.stored_scores(connection=connection, as_of=AS_OF)

    locker = make_engine(db_url).connect()
    transaction = locker.begin()
    locker.execute(text("LOCK TABLE data_quality_issues IN ACCESS EXCLUSIVE MODE"))
    env = {
        **os.environ,
        "PRCRS_WAREHOUSE_URL": db_url,
        "PRCRS_MODEL_DIR": str(settings.model_dir),
        "PRCRS_REPORT_DIR": str(tmp_path / "killed"),
        "PRCRS_DEVICE": "cpu",
    }
    job = subprocess.Popen(
        [sys.executable, "-m", "prcrs_batch", "run", "--as-of", AS_OF.isoformat()],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    admin = make_engine(db_url)
    _wait_for_lock_waiter(admin, timeout=120)
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=60) != 0
    transaction.rollback()
    locker.close()

    with warehouse.connect() as connection:
        stored_after = nights.stored_scores(connection=connection, as_of=AS_OF)
        runs = connection.execute(select(scoring_runs.c.run_id)).scalars().all()
    assert runs == [before.run_id]
    assert stored_after.equals(stored_before)

    again = run_night(settings, warehouse)
    assert again.status == "succeeded"
    assert count_rows(warehouse, crs_risk_scores, as_of=AS_OF) == again.n_scores
    admin.dispose()
