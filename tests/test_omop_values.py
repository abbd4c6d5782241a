"""OMOP measurement rows read as the contract's lab rows: censored values, text results, unit
concepts against source units, and several codes for one analyte (issue 17)."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
from sqlalchemy import Engine, select, update

from prcrs_batch.devdata.omop import TABLES, load_cohort_omop
from prcrs_batch.features.cleaning import clean_labs
from prcrs_batch.warehouse.code_lists import read_code_lists
from prcrs_batch.warehouse.queries import Source, Window, latest_labs

INFUSED = date(2026, 3, 1)
OMOP = Source(model="omop", codes=read_code_lists())


def _load(engine: Engine, **labs: str) -> None:
    row = {"patient_id": "P1", "infusion_date": INFUSED, "day": 1, "sex": "male", "age": 50}
    cohort = pd.DataFrame([row | {"crs_grade": 1} | labs])
    load_cohort_omop(engine, cohort, OMOP.codes)


def _labs(engine: Engine) -> pd.DataFrame:
    window = Window(as_of=INFUSED + timedelta(days=1), active_days=30, lookback_hours=72,
                    source=OMOP)  # fmt: skip
    with engine.connect() as connection:
        return latest_labs(connection=connection, window=window).set_index("analyte")


def _concept(engine: Engine, vocabulary: str, code: str) -> int:
    concept = TABLES["concept"]
    query = select(concept.c.concept_id).where(
        concept.c.vocabulary_id == vocabulary, concept.c.concept_code == code
    )
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def test_censored_value_is_operator_and_number(engine: Engine) -> None:
    _load(engine, il6="<1.5", ferritin="> 2000")
    labs = _labs(engine)
    assert labs.loc["il6", "value"] == "<1.5"
    assert labs.loc["ferritin", "value"] == ">2000"
    clean, issues = clean_labs(labs.reset_index())
    assert set(clean["value"]) == {1.5, 2000.0}
    assert set(issues["reason"]) == {"censored_bound_used"}


def test_text_result_comes_from_value_source_value(engine: Engine) -> None:
    _load(engine, crp="hemolyzed", ldh="250")
    labs = _labs(engine)
    assert labs.loc["crp", "value"] == "hemolyzed"
    clean, issues = clean_labs(labs.reset_index())
    assert clean["analyte"].tolist() == ["ldh"]
    assert issues["reason"].tolist() == ["no_number"]


def test_unit_concept_first_then_source_unit(engine: Engine) -> None:
    _load(engine, wbc="5.2", glucose="90")
    measurement = TABLES["measurement"]
    with engine.begin() as connection:  # the site's ETL wrote no unit concept for glucose
        connection.execute(
            update(measurement)
            .where(measurement.c.measurement_source_value == "glucose")
            .values(unit_concept_id=0, unit_source_value="mg/dL")
        )
        connection.execute(  # a UCUM concept wins over a differently spelt source unit
            update(measurement)
            .where(measurement.c.measurement_source_value == "wbc")
            .values(unit_source_value="K/uL (analyser)")
        )
    labs = _labs(engine)
    assert labs.loc["wbc", "unit"] == "10*9/L"
    assert labs.loc["glucose", "unit"] == "mg/dL"
    clean, _ = clean_labs(labs.reset_index())
    assert round(clean.set_index("analyte").loc["glucose", "value"], 2) == 5.0


def test_every_code_of_an_analyte_is_read(engine: Engine) -> None:
    _load(engine, creatinine="88.4")
    second = OMOP.codes.lab_codes("creatinine")[1]  # 2160-0, mg/dL
    assert second == ("LOINC", "2160-0")
    measurement, concept = TABLES["measurement"], TABLES["concept"]
    with engine.begin() as connection:
        connection.execute(
            concept.insert(),
            {"concept_id": 9, "concept_name": "Creatinine mass", "domain_id": "Measurement",
             "vocabulary_id": "LOINC", "concept_class_id": "Lab Test", "concept_code": "2160-0",
             "valid_start_date": date(1970, 1, 1), "valid_end_date": date(2099, 12, 31)},
        )  # fmt: skip
        connection.execute(
            update(measurement)
            .where(measurement.c.measurement_source_value == "creatinine")
            .values(measurement_concept_id=9, value_as_number=1.0, value_source_value="1.0",
                    unit_concept_id=0, unit_source_value="mg/dL")
        )  # fmt: skip
    assert _concept(engine, "LOINC", "2160-0") == 9
    labs = _labs(engine)
    assert labs.loc["creatinine", "unit"] == "mg/dL"
    clean, _ = clean_labs(labs.reset_index())
    assert round(clean.set_index("analyte").loc["creatinine", "value"], 2) == 88.42
