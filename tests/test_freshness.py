"""The freshness guard: a dead feed is stored as `stale_data`, says so at the top of the
email and exits non-zero, instead of looking like a quiet night."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

from click.testing import CliRunner
from sqlalchemy import select

from prcrs_batch.app.cli import main
from prcrs_batch.results.tables import crs_risk_scores, scoring_runs
from prcrs_batch.warehouse.freshness import FeedState, stale_reasons
from tests.support.nightly import AS_OF, COHORT, count_rows, run_night

LAST_INFUSION = max(COHORT["infusion_date"])


def stored_status(engine, as_of: date) -> tuple[str, str | None]:
    with engine.connect() as connection:
        row = connection.execute(
            select(scoring_runs.c.status, scoring_runs.c.error).where(scoring_runs.c.as_of == as_of)
        ).one()
    return row.status, row.error


def test_a_live_feed_is_not_stale(settings, warehouse):
    summary = run_night(settings, warehouse)
    assert summary.status == "succeeded" and summary.ok
    assert summary.feed is not None and summary.feed.active_patients == summary.n_patients
    assert summary.feed.newest_active_lab is not None


def test_labs_older_than_the_limit_store_the_night_as_stale_and_say_so_first(
    settings, warehouse, smtp_sink
):
    settings = settings.model_copy(
        update={
            "max_lab_age_hours": 1,  # the tiny cohort's labs are taken at 06:00
            "smtp_host": smtp_sink.host,
            "smtp_port": smtp_sink.port,
            "smtp_starttls": False,
            "alert_to": ["oncall@hospital.example"],
        }
    )
    summary = run_night(settings, warehouse)
    assert summary.status == "stale_data" and not summary.ok
    assert "has a lab result newer than 1 h" in (summary.error or "")
    assert summary.n_patients > 0 and summary.n_scores > 0
    assert count_rows(warehouse, crs_risk_scores, as_of=AS_OF) == summary.n_scores  # stored
    status, error = stored_status(warehouse, AS_OF)
    assert status == "stale_data" and error == summary.error
    assert summary.email.startswith("sent")
    message = smtp_sink.messages[0]
    assert "STALE DATA" in message["Subject"] and "all clear" not in message["Subject"]
    text = message.get_body(("plain",)).get_content()
    assert text.splitlines()[1].startswith("STALE DATA: the warehouse feed looks dead")
    html = message.get_body(("html",)).get_content()
    assert html.index("STALE DATA") < html.index(f"PrCRS {AS_OF.isoformat()}:")
    assert summary.report_path is not None and "STALE DATA" in summary.report_path.read_text()


def test_no_active_patients_after_recent_ones_is_stale(settings, warehouse):
    night = LAST_INFUSION + timedelta(days=settings.active_days + 3)
    summary = run_night(settings, warehouse, as_of=night)
    assert summary.n_patients == 0
    assert summary.status == "stale_data"
    assert "check the infusion feed" in (summary.error or "")


def test_a_feed_that_stopped_months_ago_is_stale_without_active_patients(settings, warehouse):
    night = LAST_INFUSION + timedelta(days=3 * settings.active_days)
    summary = run_night(settings, warehouse, as_of=night)
    assert summary.n_patients == 0 and summary.status == "stale_data"
    assert "PRCRS_MAX_INFUSION_AGE_DAYS" in (summary.error or "")
    assert "PRCRS_MAX_LAB_AGE_HOURS" in (summary.error or "")
    # a centre with months between patients may lift the infusion limit: the labs still tell
    unlimited = settings.model_copy(update={"max_infusion_age_days": 0})
    summary = run_night(unlimited, warehouse, as_of=night)
    assert summary.status == "stale_data"
    assert "PRCRS_MAX_INFUSION_AGE_DAYS" not in (summary.error or "")
    assert "newest lab in the warehouse" in (summary.error or "")


def test_an_empty_warehouse_is_stale_never_all_clear(settings, engine):
    from prcrs_batch.devdata.cohort import create_warehouse_tables

    create_warehouse_tables(engine)  # the contract's tables, no row
    summary = run_night(settings, engine, as_of=AS_OF)
    assert summary.n_patients == 0 and summary.status == "stale_data"
    assert "no lab result in the warehouse" in (summary.error or "")
    assert "no infusion at all" in (summary.error or "")
    html = summary.report_path.read_text() if summary.report_path else ""
    assert "STALE DATA" in html and "all clear" not in html.split("STALE DATA")[0]


def test_the_run_command_exits_non_zero_on_stale_data(
    settings_env, monkeypatch, db_url, quick_models, warehouse, tmp_path
):
    monkeypatch.setenv("PRCRS_WAREHOUSE_URL", db_url)
    monkeypatch.setenv("PRCRS_MODEL_DIR", str(quick_models))
    monkeypatch.setenv("PRCRS_REPORT_DIR", str(tmp_path / "r"))
    monkeypatch.setenv("PRCRS_MAX_LAB_AGE_HOURS", "1")
    outcome = CliRunner().invoke(main, ["run", "--as-of", AS_OF.isoformat(), "--json"])
    assert outcome.exit_code == 1, outcome.output
    record = json.loads(outcome.stdout)
    assert record["status"] == "stale_data" and record["ok"] is False
    assert record["lab_age_hours"] == 18.0  # 06:00 to the end of the as-of day


def test_ages_are_measured_from_now_or_the_end_of_a_past_night():
    as_of = date(2026, 11, 26)
    feed = FeedState(
        as_of=as_of,
        reference=datetime(2026, 11, 26, 2, 0),  # tonight, at 02:00
        active_patients=3,
        newest_infusion=date(2026, 11, 20),
        newest_lab=datetime(2026, 11, 25, 6, 0),
        newest_active_lab=datetime(2026, 11, 25, 6, 0),
    )
    assert feed.lab_age_hours == 20.0 and feed.infusion_age_days == 6
    limits = {"active_days": 30, "max_lab_age_hours": 48, "max_infusion_age_days": 0}
    assert stale_reasons(feed, **limits) == []
    empty = FeedState(as_of, feed.reference, 0, None, None, None)
    assert stale_reasons(empty, **limits) == [
        "no lab result in the warehouse, expected within 48 h (PRCRS_MAX_LAB_AGE_HOURS): "
        "check the lab feed"
    ]
    limits["max_infusion_age_days"] = 30
    assert "no infusion at all" in stale_reasons(empty, **limits)[1]
    old_labs = FeedState(as_of, feed.reference, 0, date(2026, 11, 20), datetime(2025, 1, 1), None)
    assert "h old, expected within 48 h" in stale_reasons(old_labs, **limits)[0]
