"""What was mailed stays queryable (issue 24 item 7): a rerun or backfill of an emailed
night keeps the emailed run's rows beside its own, `crs_patient_nights_sent` says what
on-call received, and every reader of "the night's rows" (stored scores, history, the
views, monitoring) sees the current run's only. Real SMTP server, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import Boolean, DateTime, Engine, String, column, delete, func, select, text

from prcrs_batch.results import nights
from prcrs_batch.results.tables import (
    crs_patient_nights,
    crs_risk_explanations,
    crs_risk_scores,
    data_quality_issues,
    prediction_outcomes,
    scoring_runs,
)
from prcrs_batch.task.panel import HORIZONS
from prcrs_batch.warehouse.contract import cart_infusions, crs_assessments, lab_results
from tests.support.nightly import AS_OF, run_night

THRESHOLD = 0.02  # low enough that the tiny cohort's quick models give several alerts
ROW_TABLES = (crs_risk_scores, crs_patient_nights, crs_risk_explanations, data_quality_issues)
SENT = sa.table(  # the view, typed (SQLite returns its dates as text otherwise)
    "crs_patient_nights_sent",
    *(column(c.name, c.type) for c in crs_patient_nights.columns),
    column("report_sent_at", DateTime(timezone=True)),
    column("report_status", String()),
    column("still_current", Boolean()),
)


def _frame(engine: Engine, query) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    with engine.connect() as connection:
        result = connection.execute(query)
        return pd.DataFrame([tuple(r) for r in result], columns=list(result.keys()))


def _rows_per_run(engine: Engine) -> dict[str, dict[str, int]]:
    """table -> run_id -> rows."""
    out = {}
    for table in ROW_TABLES:
        query = select(table.c.run_id, func.count()).group_by(table.c.run_id)
        with engine.connect() as connection:
            out[table.name] = {run: n for run, n in connection.execute(query)}
    return out


def _sql(engine: Engine, query: str) -> pd.DataFrame:
    with engine.connect() as connection:
        return pd.DataFrame(connection.execute(text(query)).mappings().all())


def _drop_patient(warehouse: Engine, patient_id: str) -> None:
    """The patient gone from the warehouse (e.g. a wrong infusion record corrected)."""
    with warehouse.begin() as connection:
        for table in (lab_results, crs_assessments, cart_infusions):
            connection.execute(delete(table).where(table.c.patient_id == patient_id))


def test_a_rerun_keeps_what_was_emailed_and_readers_see_the_current_run(
    settings, warehouse, smtp_sink
):
    mailing = settings.model_copy(
        update={
            "smtp_host": smtp_sink.host,
            "smtp_port": smtp_sink.port,
            "smtp_starttls": False,
            "alert_to": ["oncall@hospital.example"],
            "alert_threshold": THRESHOLD,
        }
    )
    emailed = run_night(mailing, warehouse)
    assert emailed.email.startswith("sent") and emailed.n_alerts > 0, emailed.email
    [mail] = smtp_sink.messages
    body = mail.get_body(("plain",)).get_content()
    sent_rows = _frame(warehouse, select(crs_patient_nights))
    alerted = sorted(sent_rows.loc[sent_rows["alert"].astype(bool), "patient_id"])
    gone = alerted[0]
    _drop_patient(warehouse, gone)

    # a backfill of the night (not emailed), then another: the second replaces the first
    replaced = run_night(mailing, warehouse, send_email=False)
    rerun = run_night(mailing, warehouse, send_email=False)
    assert replaced.status == rerun.status == "succeeded"
    assert rerun.n_patients == emailed.n_patients - 1
    assert len(smtp_sink.messages) == 1
    runs = dict(_frame(warehouse, select(scoring_runs.c.run_id, scoring_runs.c.status)).values)
    assert runs == {
        emailed.run_id: "superseded",
        replaced.run_id: "superseded",
        rerun.run_id: "succeeded",
    }
    # the emailed run's rows are all kept, beside the rerun's; the never-emailed one's are gone
    kept = _rows_per_run(warehouse)
    assert kept["crs_risk_scores"] == {
        emailed.run_id: emailed.n_scores,
        rerun.run_id: rerun.n_scores,
    }
    assert kept["crs_patient_nights"] == {
        emailed.run_id: emailed.n_patients,
        rerun.run_id: rerun.n_patients,
    }
    assert emailed.run_id in kept["crs_risk_explanations"]
    assert replaced.run_id not in kept["crs_risk_explanations"]
    assert kept["data_quality_issues"].get(emailed.run_id, 0) == emailed.n_data_issues
    assert replaced.run_id not in kept["data_quality_issues"]

    # BI: what on-call received on the night, however often it was rerun since
    sent = _frame(warehouse, select(SENT).where(SENT.c.as_of == AS_OF))
    assert set(sent["run_id"]) == {emailed.run_id}
    assert not sent["still_current"].any()
    assert set(sent["report_status"]) == {"sent"} and sent["report_sent_at"].notna().all()
    columns = list(sent_rows.columns)
    pd.testing.assert_frame_equal(
        sent[columns].sort_values("patient_id").reset_index(drop=True),
        sent_rows.sort_values("patient_id").reset_index(drop=True),
        check_dtype=False,
    )
    assert gone in body and gone in set(sent["patient_id"])

    # the night's current rows: the rerun's only, everywhere
    with warehouse.connect() as connection:
        stored = nights.stored_scores(connection=connection, as_of=AS_OF)
        history = nights.score_history(
            connection=connection,
            since=AS_OF,
            before=AS_OF + timedelta(days=1),
            trend_patients=[gone, *alerted[1:]],
        )
    current = _frame(
        warehouse, select(crs_risk_scores).where(crs_risk_scores.c.run_id == rerun.run_id)
    )
    assert len(stored) == rerun.n_scores and gone not in set(stored["patient_id"])
    assert gone not in set(history["patient_id"])
    assert len(history) == (current["status"] == "ok").sum()
    for view in ("crs_risk_latest", "crs_risk_newest_per_patient"):
        rows = _sql(warehouse, f"SELECT run_id, patient_id FROM {view}")
        assert set(rows["run_id"]) == {rerun.run_id}, view
        assert len(rows) == rerun.n_scores and gone not in set(rows["patient_id"]), view

    # monitoring judges the night's predictions once, by the rerun's rows
    judge = AS_OF + timedelta(days=max(HORIZONS))
    later = run_night(mailing.model_copy(update={"monitor_windows": [30]}), warehouse, as_of=judge)
    assert later.status == "succeeded"
    assert not [n for n in later.notes if "monitoring not updated" in n], later.notes
    outcomes = _frame(
        warehouse, select(prediction_outcomes).where(prediction_outcomes.c.as_of == AS_OF)
    )
    keys = ["patient_id", "model", "horizon_days"]
    assert len(outcomes) and not outcomes.duplicated(keys).any()
    ok = current[current["status"] == "ok"]
    assert set(map(tuple, outcomes[keys].values)) == set(map(tuple, ok[keys].values))
    assert gone not in set(outcomes["patient_id"])


def test_a_night_rerun_without_email_keeps_nothing_extra(settings, warehouse):
    first = run_night(settings, warehouse)
    second = run_night(settings, warehouse)
    third = run_night(settings, warehouse)
    assert "disabled" in first.email and third.status == "succeeded"
    kept = _rows_per_run(warehouse)
    for table in ("crs_risk_scores", "crs_patient_nights"):
        assert set(kept[table]) == {third.run_id}, table
    assert set(kept["crs_risk_explanations"]) <= {third.run_id}
    assert set(kept["data_quality_issues"]) <= {third.run_id}
    assert second.run_id not in kept["crs_risk_scores"]
    assert _sql(warehouse, "SELECT * FROM crs_patient_nights_sent").empty
