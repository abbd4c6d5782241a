"""No stale alert mail: an undelivered report is resent by a later night, marked delayed,
only while it is younger than PRCRS_MAX_RESEND_HOURS; an older one is recorded and never
mailed; a night written without mail (a backfill) is never mailed later. Real databases and a
real SMTP server (aiosmtpd); only the clock is given."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select

from prcrs_batch.report import mailer, outbox
from prcrs_batch.report.render import Report
from prcrs_batch.results.nights import RunInfo
from prcrs_batch.results.tables import scoring_runs
from prcrs_batch.settings import Settings, load_settings
from tests.support.report_data import (
    EMPTY_HISTORY,
    make_data_issues,
    make_patients,
    make_run,
    make_scores,
)
from tests.support.report_data import render_report as render_night
from tests.support.smtp import SMTPSink, free_port

NOW = datetime(2026, 11, 27, 2, 0, tzinfo=timezone.utc)  # tonight's run: the clock of the tests
TONIGHT = date(2026, 11, 27)


@pytest.fixture(autouse=True)
def _one_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dead server fails at once (no retries, no backoff)."""
    monkeypatch.setattr(mailer, "ATTEMPTS", 1)


@pytest.fixture
def mail_settings(settings_env, db_url, tmp_path, smtp_sink) -> Settings:  # type: ignore[no-untyped-def]
    return load_settings(
        warehouse_url=db_url,
        report_dir=tmp_path / "reports",
        smtp_host=smtp_sink.host,
        smtp_port=smtp_sink.port,
        smtp_starttls=False,
        alert_to=["oncall@hospital.example"],
    )


def _night(engine: Engine, as_of: date, made: datetime) -> tuple[RunInfo, Report]:
    """A reported night's run row (made at `made`) and its report (one alert)."""
    run = replace(
        make_run(2),
        run_id=f"run-{as_of.isoformat()}",
        as_of=as_of,
        started_at=made - timedelta(minutes=3),
        finished_at=made,
        data_cutoff=datetime.combine(as_of, time(23, 59, 59)),
        status="succeeded",
    )
    with engine.begin() as connection:
        connection.execute(insert(scoring_runs).values(**run.row()))
    spec = {"SYN-1": {"all": (0.5, 0.6, 0.7)}, "SYN-2": {"all": (0.01, 0.02, 0.03)}}
    report = render_night(
        run=run,
        patients=make_patients(list(spec)),
        scores=make_scores(spec),
        history=EMPTY_HISTORY,
        data_issues=make_data_issues(),
    )
    return run, report


def _undelivered(engine: Engine, settings: Settings, as_of: date, made: datetime) -> RunInfo:
    """A night whose mail could not go out (the server was down): kept for resending."""
    run, report = _night(engine, as_of, made)
    down = settings.model_copy(update={"smtp_port": free_port()})
    published = outbox.publish(
        down, engine, report, as_of=as_of, run_id=run.run_id, send_email=True, now=made
    )
    assert published.email.startswith("failed") and published.report_path is not None
    assert published.report_path.with_suffix(".eml").exists()
    assert _row(engine, run.run_id)["report_status"] == "pending"
    return run


def _row(engine: Engine, run_id: str) -> dict:
    with engine.connect() as connection:
        row = connection.execute(select(scoring_runs).where(scoring_runs.c.run_id == run_id)).one()
    return dict(row._mapping)


def test_a_three_day_old_unsent_report_is_recorded_and_never_mailed(
    engine, mail_settings, smtp_sink: SMTPSink, caplog
):
    caplog.set_level(logging.WARNING, logger="prcrs_batch.report.outbox")
    old = _undelivered(engine, mail_settings, date(2026, 11, 23), NOW - timedelta(days=3))

    outbox.resend_undelivered(mail_settings, engine, before=TONIGHT, now=NOW)

    assert smtp_sink.handler.received == []  # the server received nothing
    row = _row(engine, old.run_id)
    assert row["report_status"] == "expired" and row["report_sent_at"] is None
    assert not Path(row["report_path"]).with_suffix(".eml").exists()
    assert Path(row["report_path"]).exists()  # the report itself stays on disk
    [warning] = [r.getMessage() for r in caplog.records if "never" in r.getMessage()]
    assert "2026-11-23" in warning and "never" in warning and "PRCRS_MAX_RESEND_HOURS" in warning
    # a later night does not try it again
    outbox.resend_undelivered(mail_settings, engine, before=TONIGHT, now=NOW + timedelta(days=1))
    assert smtp_sink.handler.received == []


def test_a_ten_hour_old_unsent_report_is_resent_marked_delayed(
    engine, mail_settings, smtp_sink: SMTPSink
):
    made = NOW - timedelta(hours=10)
    recent = _undelivered(engine, mail_settings, date(2026, 11, 26), made)

    outbox.resend_undelivered(mail_settings, engine, before=TONIGHT, now=NOW)

    [message] = smtp_sink.messages
    assert message["Subject"] == "[DELAYED 2026-11-26 16:00] PrCRS 2026-11-26 - 1 alert, 1 new"
    assert abs((message["Date"].datetime - datetime.now(timezone.utc)).total_seconds()) < 600
    assert "SYN-1" in message.get_body(("plain",)).get_content()
    row = _row(engine, recent.run_id)
    assert row["report_status"] == "sent_delayed" and row["report_sent_at"] is not None
    assert not Path(row["report_path"]).with_suffix(".eml").exists()


def test_tonights_mail_goes_first_then_only_the_recent_one_is_resent(
    engine, mail_settings, smtp_sink: SMTPSink
):
    # made in the order of their nights' runs; the later one's run did not yet expire the
    # earlier (each night sees only the nights before its own)
    recent = _undelivered(engine, mail_settings, date(2026, 11, 26), NOW - timedelta(hours=10))
    old = _undelivered(engine, mail_settings, date(2026, 11, 23), NOW - timedelta(days=3))
    tonight, report = _night(engine, TONIGHT, NOW)

    published = outbox.publish(
        mail_settings,
        engine,
        report,
        as_of=TONIGHT,
        run_id=tonight.run_id,
        send_email=True,
        now=NOW,
    )

    assert published.ok, published.email
    subjects = [m["Subject"] for m in smtp_sink.messages]
    assert subjects == [
        "PrCRS 2026-11-27 - 1 alert, 1 new",
        "[DELAYED 2026-11-26 16:00] PrCRS 2026-11-26 - 1 alert, 1 new",
    ]
    statuses = {r: _row(engine, r)["report_status"] for r in (old.run_id, recent.run_id)}
    assert statuses == {old.run_id: "expired", recent.run_id: "sent_delayed"}
    assert _row(engine, tonight.run_id)["report_status"] == "sent"


def test_the_age_counts_from_the_data_cut_off_when_that_is_earlier(
    engine, mail_settings, smtp_sink
):
    """A night of three weeks ago, made (backfilled with --email) an hour ago, is as old as its
    data: not resent."""
    backfilled = _undelivered(engine, mail_settings, date(2026, 11, 6), NOW - timedelta(hours=1))
    outbox.resend_undelivered(mail_settings, engine, before=TONIGHT, now=NOW)
    assert smtp_sink.handler.received == []
    assert _row(engine, backfilled.run_id)["report_status"] == "expired"


def test_expired_reports_are_recorded_even_when_tonights_mail_fails(
    engine, mail_settings, smtp_sink
):
    recent = _undelivered(engine, mail_settings, date(2026, 11, 26), NOW - timedelta(hours=10))
    old = _undelivered(engine, mail_settings, date(2026, 11, 23), NOW - timedelta(days=3))
    tonight, report = _night(engine, TONIGHT, NOW)
    down = mail_settings.model_copy(update={"smtp_port": free_port()})
    outbox.publish(
        down, engine, report, as_of=TONIGHT, run_id=tonight.run_id, send_email=True, now=NOW
    )
    assert _row(engine, old.run_id)["report_status"] == "expired"
    assert _row(engine, recent.run_id)["report_status"] == "pending"  # for the next night
    assert _row(engine, tonight.run_id)["report_status"] == "pending"


def test_a_night_written_without_mail_is_never_mailed_later(engine, mail_settings, smtp_sink):
    """What a backfill without --email does: the report is written, and no later night
    mails it."""
    backfilled, report = _night(engine, date(2026, 11, 26), NOW - timedelta(hours=2))
    published = outbox.publish(
        mail_settings,
        engine,
        report,
        as_of=backfilled.as_of,
        run_id=backfilled.run_id,
        send_email=False,
        now=NOW - timedelta(hours=2),
    )
    assert published.email == "not sent (--no-email, or backfill without --email)"
    assert not published.report_path.with_suffix(".eml").exists()
    assert _row(engine, backfilled.run_id)["report_status"] == "written_only"

    tonight, tonight_report = _night(engine, TONIGHT, NOW)
    outbox.publish(
        mail_settings,
        engine,
        tonight_report,
        as_of=TONIGHT,
        run_id=tonight.run_id,
        send_email=True,
        now=NOW,
    )
    assert [m["Subject"] for m in smtp_sink.messages] == ["PrCRS 2026-11-27 - 1 alert, 1 new"]
    assert _row(engine, backfilled.run_id)["report_status"] == "written_only"


def test_the_delayed_mark_is_in_the_reports_language(engine, mail_settings, smtp_sink):
    chinese = mail_settings.model_copy(update={"report_language": "zh"})
    _undelivered(engine, chinese, date(2026, 11, 26), NOW - timedelta(hours=10))
    outbox.resend_undelivered(chinese, engine, before=TONIGHT, now=NOW)
    [message] = smtp_sink.messages
    assert message["Subject"].startswith("[延迟发送 2026-11-26 16:00] PrCRS 2026-11-26")


def test_the_resend_age_is_a_setting(settings_env):
    assert load_settings().max_resend_hours == 36
    assert load_settings(max_resend_hours=12).max_resend_hours == 12
    with pytest.raises(ValueError, match="PRCRS_MAX_RESEND_HOURS"):
        load_settings(max_resend_hours=0)


def test_backfill_mails_only_when_asked():
    from prcrs_batch.app.cli import backfill

    dates = ["--start", "2026-11-01", "--end", "2026-11-02"]  # click consumes the list given
    assert backfill.make_context("backfill", [*dates]).params["email"] is False
    assert backfill.make_context("backfill", [*dates, "--email"]).params["email"] is True
