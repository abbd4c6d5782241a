"""The nightly job end to end, on real SQLite and PostgreSQL databases and a real SMTP server."""

from __future__ import annotations

import re
import shutil
from datetime import date, datetime, timedelta, timezone

import pandas as pd
from click.testing import CliRunner
from sqlalchemy import select

from prcrs_batch.app import pipeline
from prcrs_batch.app.cli import main
from prcrs_batch.modeling import store
from prcrs_batch.nightly.alert_states import HISTORY_DAYS
from prcrs_batch.results import nights
from prcrs_batch.results.engines import make_engine
from prcrs_batch.results.tables import crs_patient_nights, crs_risk_scores, scoring_runs
from prcrs_batch.task.panel import FACTOR_SETS, HORIZONS
from tests.support.nightly import AS_OF, count_rows, run_night


def test_scores_18_rows_per_active_patient(settings, warehouse):
    summary = run_night(settings, warehouse)
    assert summary.status == "succeeded", summary.error
    assert summary.n_patients > 0
    assert summary.n_scores == summary.n_patients * len(FACTOR_SETS) * len(HORIZONS)
    with warehouse.connect() as connection:
        stored = nights.stored_scores(connection=connection, as_of=AS_OF)
    assert len(stored) == summary.n_scores
    per_patient = stored.groupby("patient_id").size()
    assert (per_patient == 18).all()
    ok = stored[stored["status"] == "ok"]
    assert ok["calibrated_risk"].between(0, 1).all()
    not_ok = stored[stored["status"] != "ok"]
    assert not_ok["calibrated_risk"].isna().all()
    assert summary.report_path is not None and summary.report_path.exists()
    assert "disabled" in summary.email


def test_rerun_replaces_the_night(settings, warehouse):
    first = run_night(settings, warehouse)
    second = run_night(settings, warehouse)
    assert first.run_id != second.run_id
    assert count_rows(warehouse, crs_risk_scores, as_of=AS_OF) == second.n_scores
    with warehouse.connect() as connection:
        run_ids = connection.execute(select(crs_risk_scores.c.run_id).distinct()).scalars().all()
        runs = dict(connection.execute(select(scoring_runs.c.run_id, scoring_runs.c.status)).all())
    assert run_ids == [second.run_id]
    # the earlier run stays on record, superseded (with whether its report was sent)
    assert runs == {first.run_id: "superseded", second.run_id: "succeeded"}


def test_a_night_written_in_small_batches_stores_the_same_rows(settings, warehouse, monkeypatch):
    # INSERT_BATCH bounds how many rows are Python objects at once; batching loses nothing.
    run_night(settings, warehouse)
    with warehouse.connect() as connection:
        whole = nights.stored_scores(connection=connection, as_of=AS_OF)
    monkeypatch.setattr(nights, "INSERT_BATCH", 7)
    summary = run_night(settings, warehouse)
    with warehouse.connect() as connection:
        batched = nights.stored_scores(connection=connection, as_of=AS_OF)
    assert len(batched) == summary.n_scores > 2 * nights.INSERT_BATCH
    pd.testing.assert_frame_equal(batched, whole)


def test_history_reads_everyones_previous_night_and_trends_for_chosen_patients(settings, warehouse):
    dates = [AS_OF - timedelta(days=2), AS_OF - timedelta(days=1)]
    for night in dates:
        run_night(settings, warehouse, as_of=night)
    with warehouse.connect() as connection:
        everything = nights.score_history(
            connection=connection, since=dates[0], before=AS_OF, trend_patients=[]
        )
        stored = pd.DataFrame(
            connection.execute(
                select(crs_risk_scores.c.patient_id, crs_risk_scores.c.as_of).where(
                    crs_risk_scores.c.status == "ok"
                )
            ).all()
        )
        both = stored.groupby("patient_id")["as_of"].nunique().loc[lambda n: n == 2].index
        assert len(both) >= 1
        chosen = str(both[0])
        history = nights.score_history(
            connection=connection, since=dates[0], before=AS_OF, trend_patients=[chosen]
        )
    # without trend patients: only each patient's latest earlier night
    assert (everything.groupby("patient_id")["as_of"].nunique() == 1).all()
    assert (everything.loc[everything["patient_id"] == chosen, "as_of"] == dates[1]).all()
    # the whole window for a patient the report may chart, the rest unchanged
    nights_read = history.groupby("patient_id")["as_of"].nunique()
    assert nights_read[chosen] == 2
    assert (nights_read.drop(chosen) == 1).all()
    assert len(history) == len(everything) + 18
    assert not history.duplicated(["patient_id", "as_of", "model", "horizon_days"]).any()


def test_backfill_gives_the_same_rows_as_single_runs(
    settings, warehouse, monkeypatch, db_url, quick_models, tmp_path
):
    dates = [AS_OF - timedelta(days=1), AS_OF, AS_OF + timedelta(days=1)]
    for night in dates:
        assert run_night(settings, warehouse, as_of=night).status == "succeeded"
    with warehouse.connect() as connection:
        single = pd.concat([nights.stored_scores(connection=connection, as_of=n) for n in dates])
    monkeypatch.setenv("PRCRS_WAREHOUSE_URL", db_url)
    monkeypatch.setenv("PRCRS_MODEL_DIR", str(quick_models))
    monkeypatch.setenv("PRCRS_REPORT_DIR", str(tmp_path / "backfill"))
    monkeypatch.setenv("PRCRS_DEVICE", "cpu")
    outcome = CliRunner().invoke(
        main, ["backfill", "--start", str(dates[0]), "--end", str(dates[-1])]
    )
    assert outcome.exit_code == 0, outcome.output
    assert "night 3/3" in outcome.output and "3 nights from" in outcome.output
    assert "3 succeeded" in outcome.output
    with warehouse.connect() as connection:
        backfilled = pd.concat(
            [nights.stored_scores(connection=connection, as_of=n) for n in dates]
        )
    pd.testing.assert_frame_equal(single.reset_index(drop=True), backfilled.reset_index(drop=True))
    assert count_rows(warehouse, scoring_runs, status="succeeded") == 3
    assert count_rows(warehouse, scoring_runs, status="superseded") == 3


def _recommended_risks(stored: pd.DataFrame) -> dict[str, float]:
    """Independent statement of the alert rule: first model in the order ok at every horizon."""
    out = {}
    for pid, rows in stored.groupby("patient_id"):
        for model in FACTOR_SETS:
            mine = rows[rows["model"] == model]
            if len(mine) == len(HORIZONS) and (mine["status"] == "ok").all():
                out[pid] = float(mine["calibrated_risk"].max())
                break
    return out


def test_report_names_exactly_the_patients_at_or_above_threshold(settings, warehouse):
    probe = run_night(settings, warehouse)
    with warehouse.connect() as connection:
        stored = nights.stored_scores(connection=connection, as_of=AS_OF)
    risks = _recommended_risks(stored)
    assert risks, "no patient could be scored"
    # Put the threshold exactly on one patient's risk: that patient and those above alert.
    threshold = sorted(risks.values())[len(risks) // 2]
    settings = settings.model_copy(update={"alert_threshold": max(threshold, 1e-6)})
    summary = run_night(settings, warehouse)
    expected = {p for p, r in risks.items() if r >= settings.alert_threshold}
    assert summary.n_alerts == len(expected)
    html = summary.report_path.read_text()
    assert re.search(r"collected \d\d:\d\d ", html)  # each flag says when its labs were taken
    alert_part = html.split("Other active patients")[0] if "Other active patients" in html else html
    for pid in risks:
        assert (pid in alert_part) == (pid in expected), pid
    assert probe.status == "succeeded"


def test_each_patient_night_stores_its_tier_and_threshold(settings, warehouse):
    probe = run_night(settings, warehouse)
    with warehouse.connect() as connection:
        risks = _recommended_risks(nights.stored_scores(connection=connection, as_of=AS_OF))
    ordered = sorted(set(risks.values()))
    assert len(ordered) >= 2, "needs two scored patients with different risks"
    alert_at, watch_at = ordered[-1], ordered[0]  # the highest alerts, the lowest watches
    settings = settings.model_copy(
        update={"alert_threshold": alert_at, "watch_threshold": watch_at}
    )
    run_night(settings, warehouse)
    with warehouse.connect() as connection:
        rows = connection.execute(
            select(
                crs_patient_nights.c.patient_id,
                crs_patient_nights.c.tier,
                crs_patient_nights.c.alert_threshold,
            ).where(crs_patient_nights.c.as_of == AS_OF)
        ).all()
    tiers = {p: t for p, t, _ in rows}
    for pid, risk in risks.items():
        expected = "alert" if risk >= alert_at else "watch" if risk >= watch_at else None
        assert tiers[pid] == expected, pid
    assert {a for p, _, a in rows if p in risks} == {alert_at}
    assert "watch" in tiers.values() and probe.status == "succeeded"


def test_email_arrives_with_text_html_and_images(settings, warehouse, smtp_sink):
    settings = settings.model_copy(
        update={
            "smtp_host": smtp_sink.host,
            "smtp_port": smtp_sink.port,
            "smtp_starttls": False,
            "alert_to": ["oncall@hospital.example"],
            "alert_threshold": 1e-6,  # every scorable patient is an alert: charts attached
        }
    )
    run_night(settings, warehouse, as_of=AS_OF - timedelta(days=1), send_email=False)  # history
    summary = run_night(settings, warehouse)
    assert summary.email.startswith("sent"), summary.email
    assert len(smtp_sink.messages) == 1
    message = smtp_sink.messages[0]
    assert AS_OF.isoformat() in message["Subject"]
    assert f"{summary.n_alerts} alert" in message["Subject"]
    types = [part.get_content_type() for part in message.walk()]
    assert "text/plain" in types and "text/html" in types
    images = [part for part in message.walk() if part.get_content_type() == "image/png"]
    assert images and all(part["Content-ID"] for part in images)
    html = message.get_body(("html",)).get_content()
    for image in images:
        assert "cid:" + image["Content-ID"].strip("<>") in html
    with warehouse.connect() as connection:
        sent = connection.execute(
            select(scoring_runs.c.report_sent_at).where(scoring_runs.c.as_of == AS_OF)
        ).scalar_one()
    assert sent is not None


def test_unreachable_warehouse_fails_the_night_cleanly(settings, engine):
    dead = make_engine("postgresql://nobody@127.0.0.1:1/none")
    summary = pipeline.run_nightly(settings, as_of=AS_OF, warehouse=dead, results_db=engine)
    assert summary.status == "failed"
    assert "OperationalError" in summary.error
    assert count_rows(engine, crs_risk_scores) == 0
    with engine.connect() as connection:
        row = connection.execute(select(scoring_runs.c.status, scoring_runs.c.error)).one()
    assert row.status == "failed" and row.error


def test_corrupt_weight_file_errors_that_model_only(settings, warehouse, quick_models, tmp_path):
    broken = tmp_path / "models"
    shutil.copytree(quick_models, broken)
    weight = broken / "cytokines_h2.safetensors"
    weight.write_bytes(weight.read_bytes()[:-8] + b"tampered")
    settings = settings.model_copy(update={"model_dir": broken})
    summary = run_night(settings, warehouse)
    assert summary.status == "succeeded"
    with warehouse.connect() as connection:
        stored = nights.stored_scores(connection=connection, as_of=AS_OF)
    bad = stored[(stored["model"] == "cytokines") & (stored["horizon_days"] == 2)]
    assert (bad["status"] == "error").all()
    assert bad["detail"].str.contains("SHA-256").all()
    others = stored.drop(bad.index)
    assert (others["status"] != "error").all()
    assert (others["status"] == "ok").any()


def test_run_command_prints_a_summary(
    settings_env, monkeypatch, db_url, quick_models, warehouse, tmp_path
):
    monkeypatch.setenv("PRCRS_WAREHOUSE_URL", db_url)
    monkeypatch.setenv("PRCRS_MODEL_DIR", str(quick_models))
    monkeypatch.setenv("PRCRS_REPORT_DIR", str(tmp_path / "r"))
    outcome = CliRunner().invoke(main, ["run", "--as-of", AS_OF.isoformat()])
    assert outcome.exit_code == 0, outcome.output
    for word in ("patients", "scores", "alerts", "report", "time"):
        assert word in outcome.output
    assert isinstance(store.load_models(quick_models).model_version, str)
    assert date.fromisoformat(AS_OF.isoformat()) == AS_OF


def _copy_night(engine, source: date, target: date) -> None:
    """Store `source`'s scores again as the night `target` (an earlier run, cheaply)."""
    with engine.begin() as connection:
        scores = nights.stored_scores(connection=connection, as_of=source).drop(columns="as_of")
        now = datetime.now(timezone.utc)
        run = nights.RunInfo(
            run_id=f"copy-{target}",
            as_of=target,
            started_at=now,
            data_cutoff=now,
            finished_at=now,
            status="succeeded",
            model_version="copy",
        )
        nights.replace_night(
            connection=connection, run=run, scores=scores, issues=pd.DataFrame(columns=ISSUES)
        )


ISSUES = ["patient_id", "analyte", "collected_at", "raw_value", "unit", "reason"]


def test_the_history_window_read_is_the_one_the_report_states(settings, warehouse):
    settings = settings.model_copy(update={"alert_threshold": 1e-6})  # every scorable patient
    run_night(settings, warehouse)
    edge, beyond = AS_OF - timedelta(days=HISTORY_DAYS), AS_OF - timedelta(days=HISTORY_DAYS + 1)
    _copy_night(warehouse, AS_OF, beyond)
    html = run_night(settings, warehouse).report_path.read_text()
    assert "Previous night" not in html  # a night outside the window is not read
    assert "cid:" not in html and "data:image/png" not in html  # nothing to chart
    _copy_night(warehouse, AS_OF, edge)
    html = run_night(settings, warehouse).report_path.read_text()
    assert f"Previous night</strong> {edge.day} {edge.strftime('%b')}: highest" in html
    assert f"over up to {HISTORY_DAYS} nights" in html and "data:image/png" in html
