"""What a failure says in the log, on the run row and in the failure notice: the type, the
stage and a message without data values (errors.describe); the whole text only at DEBUG.
Secrets are masked whole, a password holding '@' or quoted included."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from sqlalchemy import Engine, select, text

from prcrs_batch.app import pipeline
from prcrs_batch.devdata.cohort import load_cohort
from prcrs_batch.errors import describe, scrub_secrets
from prcrs_batch.modeling import store
from prcrs_batch.resources import model_dir
from prcrs_batch.results.tables import scoring_runs
from prcrs_batch.settings import Settings, load_settings
from tests.support.nightly import AS_OF, COHORT, patient_with_labs_on_as_of
from tests.support.smtp import SMTPSink

VALUE = "187.25"  # a lab value the database quotes back in its error
ONCALL, OPS = "oncall@hospital.example", "it-ops@hospital.example"


@pytest.mark.parametrize(
    ("with_secret", "shown"),
    [
        (
            "postgresql://prcrs_job:p@ss@db.example.org/prcrs failed",
            "postgresql://prcrs_job:***@db.example.org/prcrs failed",
        ),
        (
            "'postgresql://prcrs_job:pa/ss@wd@db.example.org:5432/prcrs'",
            "'postgresql://prcrs_job:***@db.example.org:5432/prcrs'",
        ),
        (
            "host=db user=prcrs_job password='s3cr et@x' dbname=prcrs",
            "host=db user=prcrs_job password=*** dbname=prcrs",
        ),
        ('connect({"password": "hunter 2"})', 'connect({"password": ***})'),
    ],
)
def test_a_password_is_masked_whole(with_secret, shown):
    assert scrub_secrets(with_secret) == shown


def test_a_pandas_error_quoting_a_row_keeps_its_type_not_the_row():
    patient = patient_with_labs_on_as_of()
    with pytest.raises(ValueError) as caught:
        pd.to_datetime(pd.Series([f"{patient} crp {VALUE}"]), format="%Y-%m-%d")
    assert patient in str(caught.value)  # pandas quotes the row...
    said = describe(caught.value)
    assert said.startswith("ValueError: ")
    assert patient not in said and VALUE not in said  # ...the description does not


@pytest.fixture(scope="module")
def shipped_bundle() -> store.ModelBundle:
    return store.load_models(model_dir(), "cpu")


def mail_settings(folder, url: str, sink: SMTPSink) -> Settings:
    return load_settings(
        warehouse_url=url,
        report_dir=folder / "reports",
        device="cpu",
        smtp_host=sink.host,
        smtp_port=sink.port,
        smtp_starttls=False,
        alert_to=[ONCALL],
        ops_to=[OPS],
    )


def refuse_scores_quoting(engine: Engine, patient: str) -> None:
    """A trigger on crs_risk_scores whose error quotes a patient id and a lab value, as a
    site's audit trigger or a driver might: the night's write fails with that text."""
    message = f"refused row for patient {patient} (crp {VALUE} mg/L)"
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON crs_risk_scores "
                    f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
                )
            )
        else:
            connection.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                    f"RAISE EXCEPTION '{message}'; END $$ LANGUAGE plpgsql"
                )
            )
            connection.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON crs_risk_scores "
                    "FOR EACH ROW EXECUTE FUNCTION refuse()"
                )
            )


def nowhere_but_debug(caplog, patient: str) -> None:
    """Neither the id nor the value in any record above DEBUG; the whole text at DEBUG."""
    above = "\n".join(r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG)
    debug = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    assert patient not in above and VALUE not in above
    assert patient in debug and VALUE in debug


def test_a_driver_error_quoting_a_patient_reaches_no_log_row_or_mail(
    settings_env, engine, db_url, smtp_sink, shipped_bundle, caplog
):
    patient = patient_with_labs_on_as_of()
    load_cohort(engine, COHORT)
    refuse_scores_quoting(engine, patient)
    caplog.set_level(logging.DEBUG, logger="prcrs_batch")
    summary = pipeline.run_nightly(
        mail_settings(settings_env, db_url, smtp_sink),
        as_of=AS_OF,
        warehouse=engine,
        results_db=engine,
        bundle=shipped_bundle,
    )
    assert summary.status == "failed" and summary.warehouse_read
    assert summary.error.startswith("write results: ")  # the stage, then the type
    assert patient not in summary.error and VALUE not in summary.error
    with engine.connect() as connection:
        [row_error] = connection.execute(select(scoring_runs.c.error)).scalars()
    assert row_error == summary.error
    [notice] = smtp_sink.messages
    assert smtp_sink.handler.received[0][1] == [ONCALL]  # the warehouse was read: on-call
    assert "RUN FAILED" in notice["Subject"]
    mail = notice.as_string()
    assert patient not in mail and VALUE not in mail
    nowhere_but_debug(caplog, patient)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_warehouse_view_that_cannot_cast_a_row_names_no_value(
    settings_env, engine, db_url, smtp_sink, shipped_bundle, caplog
):
    patient = patient_with_labs_on_as_of()
    load_cohort(engine, COHORT)
    with engine.begin() as connection:  # a site's view over text columns, one row bad
        connection.execute(text("ALTER TABLE lab_results RENAME TO raw_labs"))
        connection.execute(text("ALTER TABLE raw_labs ALTER COLUMN collected_at TYPE text"))
        connection.execute(
            text("INSERT INTO raw_labs VALUES (:p, :when, 'crp', :v, 'mg/L')"),
            {"p": patient, "when": f"{patient} {VALUE}", "v": VALUE},
        )
        connection.execute(
            text(
                "CREATE VIEW lab_results AS SELECT patient_id, "
                "collected_at::timestamp AS collected_at, analyte, value, unit FROM raw_labs"
            )
        )
    caplog.set_level(logging.DEBUG, logger="prcrs_batch")
    summary = pipeline.run_nightly(
        mail_settings(settings_env, db_url, smtp_sink),
        as_of=AS_OF,
        warehouse=engine,
        results_db=engine,
        bundle=shipped_bundle,
    )
    assert summary.status == "failed"
    assert summary.error.startswith("read warehouse: WarehouseError: warehouse query ")
    assert "InvalidDatetimeFormat" in summary.error
    assert patient not in summary.error and VALUE not in summary.error
    assert smtp_sink.handler.received[0][1] == [OPS]  # never read: the operators
    mail = smtp_sink.messages[0].as_string()
    assert patient not in mail and VALUE not in mail
    nowhere_but_debug(caplog, patient)
