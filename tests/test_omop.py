"""An OMOP CDM v5.4 warehouse gives the nightly job what the contract tables give it: the tiny
cohort loaded both ways scores the same, night by night (issue 17)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Engine, select

from prcrs_batch.app import checks
from prcrs_batch.devdata.cohort import load_cohort
from prcrs_batch.devdata.omop import TABLES, load_cohort_omop
from prcrs_batch.results.tables import crs_risk_scores
from prcrs_batch.settings import Settings
from tests.support.nightly import AS_OF, COHORT, run_night

NIGHTS = [AS_OF - timedelta(days=2), AS_OF, AS_OF + timedelta(days=2)]
KEY = ["patient_id", "model", "horizon_days"]


def _scores(engine: Engine, run_id: str) -> pd.DataFrame:
    query = select(crs_risk_scores).where(crs_risk_scores.c.run_id == run_id)
    with engine.connect() as connection:
        frame = pd.DataFrame(connection.execute(query).mappings().all())
    columns = [*KEY, "status", "calibrated_risk", "probability", "inputs_observed"]
    return frame[columns].sort_values(KEY).reset_index(drop=True)


def test_omop_and_contract_score_the_same(engine: Engine, settings: Settings) -> None:
    load_cohort(engine, COHORT)
    counts = load_cohort_omop(engine, COHORT)
    assert load_cohort_omop(engine, COHORT) == counts  # loading again changes nothing
    omop = settings.model_copy(update={"warehouse_model": "omop"})
    for night in NIGHTS:
        contract_run = run_night(settings, engine, as_of=night, send_email=False)
        contract = _scores(engine, contract_run.run_id)
        omop_run = run_night(omop, engine, as_of=night, send_email=False)
        scored = _scores(engine, omop_run.run_id)
        assert omop_run.status == contract_run.status
        assert len(contract) and (contract["status"] == "ok").any()
        pd.testing.assert_frame_equal(
            scored.drop(columns=["calibrated_risk", "probability"]),
            contract.drop(columns=["calibrated_risk", "probability"]),
        )
        # PostgreSQL gives back each NUMERIC exactly as loaded; SQLite's REAL -> text cast
        # keeps 15 significant digits (the cohort has values like 0.7064999999999999).
        exact = engine.dialect.name == "postgresql"
        for column in ("calibrated_risk", "probability"):
            pd.testing.assert_series_equal(
                scored[column], contract[column], check_exact=exact, rtol=1e-9
            )


def test_loader_writes_the_v54_columns(engine: Engine) -> None:
    counts = load_cohort_omop(engine, COHORT.head(3))
    assert counts["person"] == 1 and counts["procedure_occurrence"] == 1
    assert counts["measurement"] > 0 and counts["observation"] == 3
    measurement = [c.name for c in TABLES["measurement"].columns]
    assert measurement[:9] == [
        "measurement_id",
        "person_id",
        "measurement_concept_id",
        "measurement_date",
        "measurement_datetime",
        "measurement_time",
        "measurement_type_concept_id",
        "operator_concept_id",
        "value_as_number",
    ]
    assert measurement[-3:] == ["value_source_value", "measurement_event_id",
                                "meas_event_field_concept_id"]  # fmt: skip


def test_patient_id_can_be_person_id(engine: Engine, settings: Settings) -> None:
    load_cohort_omop(engine, COHORT)
    omop = settings.model_copy(update={"warehouse_model": "omop", "omop_patient_id": "person_id"})
    summary = run_night(omop, engine, as_of=AS_OF, send_email=False)
    scored = _scores(engine, summary.run_id)
    assert len(scored) and scored["patient_id"].str.fullmatch(r"[0-9]+").all()


def test_check_counts_measurement_rows_per_analyte(engine: Engine, settings: Settings) -> None:
    load_cohort_omop(engine, COHORT)
    omop = settings.model_copy(update={"warehouse_model": "omop"})
    now = datetime.combine(AS_OF, datetime.min.time())
    result = checks.check_omop(engine, omop, now=now)
    assert result.ok, result.detail
    counts, by_source = checks.omop_lab_counts(engine, omop, AS_OF - timedelta(days=30))
    assert counts["il6"] > 0 and counts["creatinine"] > 0
    assert f"il6 {counts['il6']}," in result.detail
    assert by_source == 0
    assert checks.omop_lab_counts(engine, omop, AS_OF + timedelta(days=3650))[0]["il6"] == 0
