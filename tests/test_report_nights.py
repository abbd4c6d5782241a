"""Two consecutive nights through the whole job, with a real SMTP server: what the on-call
team reads (states, the labs behind each alert, who is already severe, charts only with
history) and what BI reads (crs_patient_nights, crs_risk_explanations, crs_risk_latest,
comments) say the same thing."""

from __future__ import annotations

import re
import stat
from datetime import timedelta

import pandas as pd
from sqlalchemy import Engine, insert, select, text

from prcrs_batch.report.wording import format_value
from prcrs_batch.resources import SOURCE_ROOT
from prcrs_batch.results.tables import (
    VIEWS,
    crs_patient_nights,
    crs_risk_explanations,
    metadata,
    scoring_runs,
)
from prcrs_batch.task.panel import BY_CODE
from prcrs_batch.warehouse.contract import crs_assessments
from tests.support.nightly import AS_OF, patient_with_labs_on_as_of, run_night

FIRST, SECOND = AS_OF - timedelta(days=1), AS_OF
THRESHOLD = 0.02  # low enough that the tiny cohort's quick models give several alerts


def _rows(engine: Engine, table, as_of) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    with engine.connect() as connection:
        result = connection.execute(select(table).where(table.c.as_of == as_of))
        return pd.DataFrame(result.all(), columns=list(result.keys()))


def _cards(body: str) -> dict[str, tuple[str, str]]:
    """patient -> (state, card text) from the plain-text mail."""
    heads = list(re.finditer(r"^(NEW|RISING|CONTINUING|FALLING): (.+)$", body, flags=re.M))
    ends = [m.start() for m in heads[1:]] + [body.find("\n\n\n", heads[-1].end())]
    return {m[2]: (m[1], body[m.end() : end]) for m, end in zip(heads, ends, strict=True)}


def test_two_nights_states_reasons_severe_and_bi_agree(settings, warehouse, smtp_sink, tmp_path):
    severe_patient = patient_with_labs_on_as_of()
    with warehouse.begin() as connection:  # grade 3 on the second night
        table = crs_assessments
        connection.execute(
            table.delete().where(
                table.c.patient_id == severe_patient, table.c.assessed_on == SECOND
            )
        )
        connection.execute(
            insert(table), [{"patient_id": severe_patient, "assessed_on": SECOND, "grade": 3}]
        )
    settings = settings.model_copy(
        update={
            "smtp_host": smtp_sink.host,
            "smtp_port": smtp_sink.port,
            "smtp_starttls": False,
            "alert_to": ["oncall@hospital.example"],
            "alert_threshold": THRESHOLD,
        }
    )
    first = run_night(settings, warehouse, as_of=FIRST)
    second = run_night(settings, warehouse, as_of=SECOND)
    assert first.email.startswith("sent") and second.email.startswith("sent"), second.email
    mails = smtp_sink.messages
    assert len(mails) == 2 and first.n_alerts > 0 and second.n_alerts > 0

    # first night: every alert is new, and nothing to chart
    night1 = _rows(warehouse, crs_patient_nights, FIRST)
    assert set(night1.loc[night1["alert"], "alert_state"]) == {"new"}
    assert not [p for p in mails[0].walk() if p.get_content_type() == "image/png"]

    # second night: patients alerted on the same model last night are not new; charts for them
    night2 = _rows(warehouse, crs_patient_nights, SECOND).set_index("patient_id")
    before = night1.set_index("patient_id")
    again = [
        p
        for p in night2.index[night2["alert"]]
        if p in before.index
        and before.at[p, "alert"]
        and before.at[p, "recommended_model"] == night2.at[p, "recommended_model"]
    ]
    assert again, "the tiny cohort should give alerts on both nights"
    assert set(night2.loc[again, "alert_state"]) <= {"rising", "continuing", "falling"}
    assert night2.loc[again, "previous_max_risk"].notna().all()
    assert [p for p in mails[1].walk() if p.get_content_type() == "image/png"]

    # the mail lists exactly the rows with alert true, with their states: the first as
    # cards, any further ones as one line each
    body = mails[1].get_body(("plain",)).get_content().replace("\r\n", "\n")
    cards = _cards(body)
    rows = dict(
        (pid, state)
        for pid, state in re.findall(r"^\* (.+?), (NEW|RISING|CONTINUING|FALLING), ", body, re.M)
    )
    alerted = night2.index[night2["alert"]]
    assert not set(cards) & set(rows)
    assert set(cards) | set(rows) == set(alerted) and len(alerted) == second.n_alerts
    for pid, state in [*((p, c[0]) for p, c in cards.items()), *rows.items()]:
        assert state.lower() == night2.at[pid, "alert_state"]

    # every card lists the labs that BI's crs_risk_explanations holds for it, with values
    explained = _rows(warehouse, crs_risk_explanations, SECOND)
    assert set(explained["patient_id"]) <= set(alerted)
    with_labs = 0
    for pid, (_, card) in cards.items():
        mine = explained[explained["patient_id"] == pid]
        shown = mine[mine["horizon_days"] == mine["horizon_days"].max()].sort_values("rank")
        lines = re.findall(r"^  - (.+)$", card, flags=re.M)
        assert len(lines) == len(shown)
        for line, row in zip(lines, shown.itertuples(), strict=True):
            name = BY_CODE[row.analyte].display_name
            assert line.startswith(f"{name} {format_value(row.value, row.unit)}"), line
        with_labs += bool(lines)
        assert (mine["contribution"] > 0).all() and (mine["rank"] <= 5).all()
    assert with_labs > 0

    # already severe: its own section, never an alert
    assert night2.at[severe_patient, "alert_state"] == "already_severe"
    assert not night2.at[severe_patient, "alert"]
    assert severe_patient not in cards
    assert severe_patient in body.split("Already severe")[1].split("\n\n")[0]

    # BI: crs_risk_latest holds the latest reported night only
    with warehouse.connect() as connection:
        nights = connection.execute(text("SELECT DISTINCT as_of FROM crs_risk_latest")).all()
        newest = pd.DataFrame(
            connection.execute(text("SELECT * FROM crs_risk_newest_per_patient")).mappings().all()
        )
        every = pd.DataFrame(
            connection.execute(text("SELECT * FROM crs_risk_scores")).mappings().all()
        )
    assert [pd.Timestamp(n[0]).date() for n in nights] == [SECOND]
    # the per-patient view: each (patient, model, horizon) once, at its newest night, however old
    key = ["patient_id", "model", "horizon_days"]
    every["as_of"] = pd.to_datetime(every["as_of"]).dt.date
    newest["as_of"] = pd.to_datetime(newest["as_of"]).dt.date
    expected = every.loc[every.groupby(key)["as_of"].idxmax(), [*key, "as_of"]]
    assert not newest.duplicated(key).any()
    pd.testing.assert_frame_equal(
        newest[[*key, "as_of"]].sort_values(key).reset_index(drop=True),
        expected.sort_values(key).reset_index(drop=True),
    )
    assert set(every["as_of"]) == {FIRST, SECOND}

    # the README's example BI queries run on these tables
    readme = (SOURCE_ROOT / "README.md").read_text("utf-8")
    queries = re.findall(r"```sql\n(.*?)```", readme.split("## Results schema")[1], flags=re.S)
    assert len(queries) >= 3
    with warehouse.connect() as connection:
        answers = [connection.execute(text(q.strip().rstrip(";"))).all() for q in queries]
    assert {row[0] for row in answers[0]} == set(alerted)

    # a backfill of an emailed night keeps the record that it was sent
    redo = run_night(settings, warehouse, as_of=FIRST, send_email=False)
    with warehouse.connect() as connection:
        kept = connection.execute(
            select(
                scoring_runs.c.run_id, scoring_runs.c.status, scoring_runs.c.report_sent_at
            ).where(scoring_runs.c.as_of == FIRST)
        ).all()
    assert {(r.run_id, r.status, r.report_sent_at is not None) for r in kept} == {
        (first.run_id, "superseded", True),
        (redo.run_id, "succeeded", False),
    }

    # the kept files are the job user's only
    for path in second.report_path.parent.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_every_results_table_view_and_column_is_commented(engine, db_url):
    if not db_url.startswith("postgresql"):
        return  # SQLite keeps no comments
    with engine.connect() as connection:
        missing = connection.execute(
            text(
                """
                SELECT c.relname, a.attname
                FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
                JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                WHERE c.relname = ANY(:names)
                  AND COALESCE(col_description(c.oid, a.attnum), '') = ''
                """
            ),
            {"names": [*metadata.tables, *VIEWS]},
        ).all()
        uncommented = connection.execute(
            text(
                "SELECT c.relname FROM pg_class c WHERE c.relname = ANY(:names) "
                "AND COALESCE(obj_description(c.oid, 'pg_class'), '') = ''"
            ),
            {"names": [*metadata.tables, *VIEWS]},
        ).all()
    assert missing == [] and uncommented == []
