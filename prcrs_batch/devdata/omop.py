"""Loads a cohort file in the cart_dev.csv format into OMOP CDM v5.4 tables, so that tests, the
demo and a site's trial can read the same data as OMOP (`load-cohort --format omop`).

Which tables and which concepts: omop_cdm.py (PRCRS_WAREHOUSE_SCHEMA's; a site's official
CDM with its vocabulary, or tables the loader creates). What is written, per patient:

- person: person_source_value = the cohort's patient id, year of birth from age at infusion;
- procedure_occurrence: the infusion, the first procedure code of omop_infusions.csv (type
  32817 EHR);
- measurement: one row per lab value, under the analyte's first code of omop_loinc.csv (type
  32856 Lab); "<0.5" becomes operator '<' and 0.5, a text result only value_source_value;
  the unit is the UCUM concept of the model's unit (UCUM below), else 0 with the unit in
  unit_source_value (always written too);
- condition_occurrence: each day graded 1-4, the first ICD-10-CM code of that grade, starting
  and ending that day (EHR);
- observation: each day's grade (0 too) under the grade concept of omop_crs_grades.csv (EHR).

A patient whose person_source_value is already in person is skipped: loading a file again
changes nothing.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.exc import IntegrityError

from prcrs_batch.devdata.cohort import COLLECTION_TIME, load_cohort, writing_warehouse
from prcrs_batch.devdata.omop_cdm import (
    EHR,
    LAB,
    TABLES,
    Cdm,
    Concepts,
    OmopLoadError,
    open_cdm,
)
from prcrs_batch.errors import describe
from prcrs_batch.task.panel import ANALYTE_CODES, BY_CODE
from prcrs_batch.warehouse.code_lists import CodeLists, read_code_lists

log = logging.getLogger(__name__)

OPERATORS = ("<=", ">=", "<", ">")
_VALUE = re.compile(r"\s*(?P<op><=|>=|<|>)?\s*(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*")
# The models' units as UCUM codes (task/units.py reads each back as the model's unit); a unit
# without one (chloride's "as recorded") is written as unit_source_value only.
UCUM = {
    "ng/mL": "ng/mL",
    "pg/mL": "pg/mL",
    "U/L": "U/L",
    "mg/L": "mg/L",
    "s": "s",
    "g/L": "g/L",
    "10^12/L": "10*12/L",
    "10^9/L": "10*9/L",
    "mmol/L": "mmol/L",
    "umol/L": "umol/L",
    "mg/L FEU": "mg/L{FEU}",
    "fraction": "{ratio}",
}


def _next_id(connection: Connection, cdm: Cdm, table: str) -> int:
    key = cdm.tables[table].c[f"{table}_id"]
    return int(connection.execute(select(func.max(key))).scalar() or 0) + 1


def parse_result(raw: str) -> tuple[str | None, Decimal | None]:
    """A cohort cell as OMOP holds it: (operator, number), or (None, None) for a text result.
    The number is exact (NUMERIC), as the file writes it.

    >>> parse_result("<0.5"), parse_result("12.0"), parse_result("hemolyzed")
    (('<', Decimal('0.5')), (None, Decimal('12.0')), (None, None))
    """
    match = _VALUE.fullmatch(raw)
    if match is None:
        return None, None
    return match["op"], Decimal(match["num"])


def omop_rows(
    cohort: pd.DataFrame, connection: Connection, codes: CodeLists, concepts: Concepts
) -> dict[str, list]:
    """The CDM rows of the cohort's patients not yet in person (concepts: `concepts`)."""
    cdm = concepts.cdm
    person = cdm.tables["person"]
    present = set(connection.execute(select(person.c.person_source_value)).scalars())
    cohort = cohort[~cohort["patient_id"].isin(present)]
    clinical = [t for t in TABLES if t not in ("concept", "concept_ancestor")]
    ids = {t: _next_id(connection, cdm, t) for t in clinical}
    rows: dict[str, list] = {t: [] for t in ids}

    def add(table: str, **values: object) -> None:
        values[f"{table}_id"] = ids[table]
        ids[table] += 1
        rows[table].append(values)

    ehr, lab_type = concepts.type_concept(EHR), concepts.type_concept(LAB)
    infusion = codes.infusions[codes.infusions["domain"] == "procedure"].iloc[0]
    infusion_id = concepts.id(
        infusion["vocabulary_id"], infusion["concept_code"], infusion["description"],
        "Procedure", "ICD10PCS",
    )  # fmt: skip
    graded = codes.grades[codes.grades["domain"] == "condition"]
    grade_code: dict[int, str] = {}
    for code, g in zip(graded["concept_code"], graded["grade"]):
        grade_code.setdefault(int(g), code)  # the grade's first code (D89.834, not D89.835)
    observed = codes.grades[codes.grades["domain"] == "observation"].iloc[0]
    grade_concept = concepts.id(
        observed["vocabulary_id"], observed["concept_code"], observed["description"],
        "Observation", "Clinical Observation",
    )  # fmt: skip
    lab_code = {a: codes.lab_codes(a)[0] for a in ANALYTE_CODES if codes.lab_codes(a)}
    person_ids: dict[str, int] = {}
    for _, first in cohort.drop_duplicates("patient_id").iterrows():
        pid, infused = str(first["patient_id"]), first["infusion_date"]
        sex = str(first["sex"]).upper()[:1] if not pd.isna(first["sex"]) else ""
        person_ids[pid] = ids["person"]
        add(
            "person",
            gender_concept_id=concepts.id("Gender", sex, sex, "Gender", "Gender") if sex else 0,
            year_of_birth=infused.year - int(first["age"]) if not pd.isna(first["age"]) else 0,
            race_concept_id=0,
            ethnicity_concept_id=0,
            person_source_value=pid,
            gender_source_value=None if pd.isna(first["sex"]) else str(first["sex"]),
        )
        add(
            "procedure_occurrence",
            person_id=person_ids[pid],
            procedure_concept_id=infusion_id,
            procedure_date=infused,
            procedure_type_concept_id=ehr,
            procedure_source_value=infusion["concept_code"],
            procedure_source_concept_id=infusion_id,
        )
    for _, day in cohort.iterrows():
        person_id = person_ids[str(day["patient_id"])]
        on: date = day["infusion_date"] + timedelta(days=int(day["day"]))
        at = datetime.combine(on, COLLECTION_TIME)
        for analyte in ANALYTE_CODES:
            raw = day.get(analyte)
            if pd.isna(raw) or str(raw).strip() == "" or analyte not in lab_code:
                continue
            unit = BY_CODE[analyte].unit
            op, number = parse_result(str(raw))
            add(
                "measurement",
                person_id=person_id,
                measurement_concept_id=concepts.id(
                    *lab_code[analyte], BY_CODE[analyte].display_name, "Measurement", "Lab Test"
                ),
                measurement_date=on,
                measurement_datetime=at,
                measurement_type_concept_id=lab_type,
                operator_concept_id=concepts.operator(op) if op else None,
                value_as_number=number,
                unit_concept_id=concepts.unit(UCUM.get(unit)),
                measurement_source_value=analyte,
                unit_source_value=unit[:50],
                value_source_value=str(raw)[:50],
            )
        if pd.isna(day["crs_grade"]):
            continue
        grade = int(day["crs_grade"])
        if grade in grade_code and grade > 0:
            code = grade_code[grade]
            icd = concepts.id("ICD10CM", code, f"CRS grade {grade}", "Condition", "ICD10 code")
            add(
                "condition_occurrence",
                person_id=person_id,
                condition_concept_id=0,
                condition_start_date=on,
                condition_end_date=on,  # the grade of that day; the next day's is its own
                condition_type_concept_id=ehr,
                condition_source_value=code,
                condition_source_concept_id=icd,
            )
        add(
            "observation",
            person_id=person_id,
            observation_concept_id=grade_concept,
            observation_date=on,
            observation_type_concept_id=ehr,
            value_as_number=grade,
        )
    return rows


def load_cohort_omop(
    engine: Engine,
    cohort: pd.DataFrame,
    codes: CodeLists | None = None,
    *,
    schema: str | None = None,
    local_ids: range | None = None,
) -> dict[str, int]:
    """Write a cohort frame into the OMOP CDM of `schema` (PRCRS_WAREHOUSE_SCHEMA; omop_cdm.py
    says which tables and concepts); patients already in person are skipped. New concepts of
    the loader's own get ids from `local_ids` (default: above 2,000,000,000). Returns the
    number of rows in each table afterwards; raises OmopLoadError, with nothing written,
    when the CDM cannot take the cohort."""
    codes = codes or read_code_lists()
    try:
        with writing_warehouse(), engine.begin() as connection:
            cdm = open_cdm(connection, schema)
            concepts = Concepts(connection, cdm, local_ids)
            rows = omop_rows(cohort, connection, codes, concepts)
            if concepts.missing:
                raise OmopLoadError(
                    f"the vocabulary in {cdm.placement.where()} (release {cdm.vocabulary}) "
                    f"lacks {', '.join(concepts.missing)}: add them from Athena, or list a "
                    "code it has first in PRCRS_OMOP_CODES_DIR's code lists"
                )
            if concepts.units_missing:
                log.warning(
                    "no UCUM concept for %s: written as unit_source_value, unit_concept_id 0",
                    ", ".join(sorted(concepts.units_missing)),
                )
            for name, batch in rows.items():
                for start in range(0, len(batch), 5000):
                    connection.execute(insert(cdm.tables[name]), batch[start : start + 5000])
            counts = {
                name: connection.execute(select(func.count()).select_from(table)).scalar_one()
                for name, table in cdm.tables.items()
                if name in TABLES
            }
    except IntegrityError as exc:
        raise OmopLoadError(f"the CDM's keys refused a row: {describe(exc)}") from None
    where = cdm.placement.where()
    made = "created in" if cdm.created else "in"
    log.info("OMOP CDM (%s %s) now holds %s", made, where,
             ", ".join(f"{n} {t}" for t, n in counts.items()))  # fmt: skip
    return counts


def load_cohort_as(
    engine: Engine,
    cohort: pd.DataFrame,
    model: str,
    codes_dir: Path | None = None,
    *,
    schema: str | None = None,
    local_ids: range | None = None,
) -> dict[str, int]:
    """`load-cohort`: the contract tables (model "contract") or the OMOP CDM tables ("omop",
    with the code lists of PRCRS_OMOP_CODES_DIR or the bundled ones), in the schemas of
    PRCRS_WAREHOUSE_SCHEMA (`schema`)."""
    if model == "omop":
        codes = read_code_lists(codes_dir)
        return load_cohort_omop(engine, cohort, codes, schema=schema, local_ids=local_ids)
    return load_cohort(engine, cohort, schema=schema)
