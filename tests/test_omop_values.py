"""OMOP measurement rows read as the contract's lab rows: censored values, text results, unit
concepts against source units, and several codes for one analyte (issue 17)."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
from sqlalchemy import Engine, select, update

from prcrs_batch.devdata.omop import TABLES, load_cohort_omop
from prcrs_batch.features.cleaning import clean_labs
from prcrs_batch.warehouse.code_lists import read_code_lists
from prcrs_batch.warehouse.queries import Source, Window, latest_crs_grades, latest_labs

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


def test_a_code_left_in_the_source_concept_is_read(engine: Engine) -> None:
    """An ETL that found no standard concept writes measurement_concept_id 0 and keeps the
    LOINC code in measurement_source_concept_id: the result is read (it was dropped)."""
    _load(engine, crp="12", ldh="250")
    measurement = TABLES["measurement"]
    with engine.begin() as connection:
        connection.execute(
            update(measurement)
            .where(measurement.c.measurement_source_value == "crp")
            .values(
                measurement_source_concept_id=measurement.c.measurement_concept_id,
                measurement_concept_id=0,
            )
        )
    labs = _labs(engine)
    assert set(labs.index) == {"crp", "ldh"}
    clean, _ = clean_labs(labs.reset_index())
    assert clean.set_index("analyte").loc["crp", "value"] == 12.0


def _grades(engine: Engine, as_of: date) -> dict[str, int | None]:
    window = Window(as_of=as_of, active_days=30, lookback_hours=72, source=OMOP)
    with engine.connect() as connection:
        grades = latest_crs_grades(connection=connection, window=window)
    return dict(zip(grades["patient_id"], grades["grade"]))


def _graded_cohort(engine: Engine, grades: list[int]) -> None:
    row = {"patient_id": "P1", "infusion_date": INFUSED, "sex": "male", "age": 50, "il6": "10"}
    days = [row | {"day": d, "crs_grade": g} for d, g in enumerate(grades)]
    load_cohort_omop(engine, pd.DataFrame(days), OMOP.codes)


def test_grades_from_conditions_only_end_when_the_condition_ends(engine: Engine) -> None:
    """A site whose only grades are ICD-10-CM conditions: a grade 3 ending on day 1 reads as
    resolved (0) on day 2, as the contract's daily grade 0 says; a condition without an end
    keeps its grade (it used to stay severe for ever, suppressing alerts)."""
    _graded_cohort(engine, [1, 3, 0, 0])
    day = [INFUSED + timedelta(days=d) for d in range(4)]
    assert [_grades(engine, d)["P1"] for d in day] == [1, 3, 0, 0]  # daily records
    with engine.begin() as connection:  # no daily grade record: conditions only
        connection.execute(TABLES["observation"].delete())
    assert [_grades(engine, d)["P1"] for d in day] == [1, 3, 0, 0]
    with engine.begin() as connection:
        connection.execute(update(TABLES["condition_occurrence"]).values(condition_end_date=None))
    assert [_grades(engine, d)["P1"] for d in day] == [1, 3, 3, 3]


def test_daily_records_come_before_conditions(engine: Engine) -> None:
    """With daily grade records, a condition coded once for the stay does not override them."""
    _graded_cohort(engine, [1, 3, 0, 0])
    condition = TABLES["condition_occurrence"]
    with engine.begin() as connection:  # the stay's grade 3 code, dated day 2, no end
        connection.execute(
            update(condition).values(
                condition_start_date=INFUSED + timedelta(days=2), condition_end_date=None
            )
        )
    assert _grades(engine, INFUSED + timedelta(days=2))["P1"] == 0  # day 2's record: 0
