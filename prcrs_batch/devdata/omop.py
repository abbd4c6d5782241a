"""Loads a cohort file in the cart_dev.csv format into OMOP CDM v5.4 tables, so that tests, the
demo and a site's trial can read the same data as OMOP (`load-cohort --format omop`).

The tables are the official v5.4 DDL's (OHDSI/CommonDataModel,
inst/ddl/5.4/postgresql/OMOPCDM_postgresql_5.4_ddl.sql): person, measurement, drug_exposure,
procedure_occurrence, condition_occurrence, observation, concept and concept_ancestor, created
when absent, without the DDL's keys and indexes. Concepts are looked up by (vocabulary_id,
concept_code) in the concept table; one that is missing is added with a local id (above
2,000,000,000, OMOP's range for site concepts). What is written, per patient:

- person: person_source_value = the cohort's patient id, year of birth from age at infusion;
- procedure_occurrence: the infusion, the first procedure code of omop_infusions.csv;
- measurement: one row per lab value, under the analyte's first code of omop_loinc.csv;
  "<0.5" becomes operator '<' and 0.5, a text result only value_source_value; the unit is a
  UCUM concept where the model's unit is UCUM, else unit_source_value only;
- condition_occurrence: each day graded 1-4, the ICD-10-CM code of that grade, starting and
  ending that day;
- observation: each day's grade (0 too) under the grade concept of omop_crs_grades.csv.

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
from sqlalchemy import (
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    func,
    insert,
    select,
)

from prcrs_batch.devdata.cohort import COLLECTION_TIME, load_cohort
from prcrs_batch.task.panel import ANALYTE_CODES, BY_CODE
from prcrs_batch.warehouse.code_lists import CodeLists, read_code_lists

log = logging.getLogger(__name__)

# Each table's columns as in the v5.4 DDL: name type, "!" for NOT NULL.
_DDL = {
    "person": "person_id int!, gender_concept_id int!, year_of_birth int!, month_of_birth int, "
    "day_of_birth int, birth_datetime ts, race_concept_id int!, ethnicity_concept_id int!, "
    "location_id int, provider_id int, care_site_id int, person_source_value vc50, "
    "gender_source_value vc50, gender_source_concept_id int, race_source_value vc50, "
    "race_source_concept_id int, ethnicity_source_value vc50, ethnicity_source_concept_id int",
    "measurement": "measurement_id int!, person_id int!, measurement_concept_id int!, "
    "measurement_date date!, measurement_datetime ts, measurement_time vc10, "
    "measurement_type_concept_id int!, operator_concept_id int, value_as_number num, "
    "value_as_concept_id int, unit_concept_id int, range_low num, range_high num, "
    "provider_id int, visit_occurrence_id int, visit_detail_id int, "
    "measurement_source_value vc50, measurement_source_concept_id int, unit_source_value vc50, "
    "unit_source_concept_id int, value_source_value vc50, measurement_event_id int, "
    "meas_event_field_concept_id int",
    "drug_exposure": "drug_exposure_id int!, person_id int!, drug_concept_id int!, "
    "drug_exposure_start_date date!, drug_exposure_start_datetime ts, "
    "drug_exposure_end_date date!, drug_exposure_end_datetime ts, verbatim_end_date date, "
    "drug_type_concept_id int!, stop_reason vc20, refills int, quantity num, days_supply int, "
    "sig text, route_concept_id int, lot_number vc50, provider_id int, "
    "visit_occurrence_id int, visit_detail_id int, drug_source_value vc50, "
    "drug_source_concept_id int, route_source_value vc50, dose_unit_source_value vc50",
    "procedure_occurrence": "procedure_occurrence_id int!, person_id int!, "
    "procedure_concept_id int!, procedure_date date!, procedure_datetime ts, "
    "procedure_end_date date, procedure_end_datetime ts, procedure_type_concept_id int!, "
    "modifier_concept_id int, quantity int, provider_id int, visit_occurrence_id int, "
    "visit_detail_id int, procedure_source_value vc50, procedure_source_concept_id int, "
    "modifier_source_value vc50",
    "condition_occurrence": "condition_occurrence_id int!, person_id int!, "
    "condition_concept_id int!, condition_start_date date!, condition_start_datetime ts, "
    "condition_end_date date, condition_end_datetime ts, condition_type_concept_id int!, "
    "condition_status_concept_id int, stop_reason vc20, provider_id int, "
    "visit_occurrence_id int, visit_detail_id int, condition_source_value vc50, "
    "condition_source_concept_id int, condition_status_source_value vc50",
    "observation": "observation_id int!, person_id int!, observation_concept_id int!, "
    "observation_date date!, observation_datetime ts, observation_type_concept_id int!, "
    "value_as_number num, value_as_string vc60, value_as_concept_id int, "
    "qualifier_concept_id int, unit_concept_id int, provider_id int, visit_occurrence_id int, "
    "visit_detail_id int, observation_source_value vc50, observation_source_concept_id int, "
    "unit_source_value vc50, qualifier_source_value vc50, value_source_value vc50, "
    "observation_event_id int, obs_event_field_concept_id int",
    "concept": "concept_id int!, concept_name vc255!, domain_id vc20!, vocabulary_id vc20!, "
    "concept_class_id vc20!, standard_concept vc1, concept_code vc50!, valid_start_date date!, "
    "valid_end_date date!, invalid_reason vc1",
    "concept_ancestor": "ancestor_concept_id int!, descendant_concept_id int!, "
    "min_levels_of_separation int!, max_levels_of_separation int!",
}
_TYPES = {"int": Integer, "date": Date, "ts": DateTime, "num": Numeric, "text": Text}

omop_metadata = MetaData()


def _column(spec: str) -> Column:
    name, kind = spec.split()
    required = kind.endswith("!")
    kind = kind.rstrip("!")
    sql_type = String(int(kind[2:])) if kind.startswith("vc") else _TYPES[kind]()
    return Column(name, sql_type, nullable=not required)


TABLES = {
    name: Table(name, omop_metadata, *(_column(c.strip()) for c in columns.split(",")))
    for name, columns in _DDL.items()
}
LOCAL_CONCEPTS_FROM = 2_000_000_000  # OMOP: concept ids above 2 billion are a site's own
OPERATORS = ("<=", ">=", "<", ">")
_VALUE = re.compile(r"\s*(?P<op><=|>=|<|>)?\s*(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*")
# The models' units that are UCUM codes (else the unit is written as unit_source_value only).
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
}


def create_omop_tables(engine: Engine) -> None:
    """Create the CDM tables the loader writes, where absent (development warehouses only)."""
    omop_metadata.create_all(engine, checkfirst=True)


class _Concepts:
    """Concept ids by (vocabulary_id, concept_code), added to concept where missing."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        concept = TABLES["concept"]
        top = connection.execute(select(func.max(concept.c.concept_id))).scalar()
        self.next_id = max(LOCAL_CONCEPTS_FROM, int(top or 0)) + 1
        self.known: dict[tuple[str, str], int] = {}

    def id(self, vocabulary: str, code: str, name: str, domain: str, kind: str) -> int:
        key = (vocabulary, code)
        if key not in self.known:
            concept = TABLES["concept"]
            found = self.connection.execute(
                select(concept.c.concept_id).where(
                    concept.c.vocabulary_id == vocabulary, concept.c.concept_code == code
                )
            ).scalar()
            if found is None:
                found, self.next_id = self.next_id, self.next_id + 1
                self.connection.execute(
                    insert(concept),
                    {
                        "concept_id": found,
                        "concept_name": name[:255],
                        "domain_id": domain,
                        "vocabulary_id": vocabulary,
                        "concept_class_id": kind,
                        "standard_concept": "S" if domain == "Measurement" else None,
                        "concept_code": code,
                        "valid_start_date": date(1970, 1, 1),
                        "valid_end_date": date(2099, 12, 31),
                    },
                )
            self.known[key] = int(found)
        return self.known[key]


def _next_id(connection: Connection, table: str) -> int:
    key = TABLES[table].c[f"{table}_id"]
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


def omop_rows(cohort: pd.DataFrame, connection: Connection, codes: CodeLists) -> dict[str, list]:
    """The CDM rows of the cohort's patients not yet in person (concepts added as needed)."""
    concepts = _Concepts(connection)
    person = TABLES["person"]
    present = set(connection.execute(select(person.c.person_source_value)).scalars())
    cohort = cohort[~cohort["patient_id"].isin(present)]
    ids = {t: _next_id(connection, t) for t in _DDL if t not in ("concept", "concept_ancestor")}
    rows: dict[str, list] = {t: [] for t in ids}

    def add(table: str, **values: object) -> None:
        values[f"{table}_id"] = ids[table]
        ids[table] += 1
        rows[table].append(values)

    infusion = codes.infusions[codes.infusions["domain"] == "procedure"].iloc[0]
    infusion_id = concepts.id(
        infusion["vocabulary_id"], infusion["concept_code"], infusion["description"],
        "Procedure", "PCS",
    )  # fmt: skip
    graded = codes.grades[codes.grades["domain"] == "condition"]
    grade_code = {int(g): code for code, g in zip(graded["concept_code"], graded["grade"])}
    observed = codes.grades[codes.grades["domain"] == "observation"].iloc[0]
    grade_concept = concepts.id(
        observed["vocabulary_id"], observed["concept_code"], observed["description"],
        "Observation", "Clinical Observation",
    )  # fmt: skip
    operator = {op: concepts.id("PRCRS", op, op, "Meas Value Operator", "Qualifier Value")
                for op in OPERATORS}  # fmt: skip
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
            procedure_type_concept_id=0,
            procedure_source_value=infusion["concept_code"],
            procedure_source_concept_id=infusion_id,
        )
    for _, day in cohort.iterrows():
        person_id = person_ids[str(day["patient_id"])]
        on: date = day["infusion_date"] + timedelta(days=int(day["day"]))
        at = datetime.combine(on, COLLECTION_TIME)
        for analyte in ANALYTE_CODES:
            raw = day.get(analyte)
            lab = codes.lab_codes(analyte)
            if pd.isna(raw) or str(raw).strip() == "" or not lab:
                continue
            unit = BY_CODE[analyte].unit
            ucum = UCUM.get(unit)
            op, number = parse_result(str(raw))
            add(
                "measurement",
                person_id=person_id,
                measurement_concept_id=concepts.id(
                    *lab[0], BY_CODE[analyte].display_name, "Measurement", "Lab Test"
                ),
                measurement_date=on,
                measurement_datetime=at,
                measurement_type_concept_id=0,
                operator_concept_id=operator[op] if op else None,
                value_as_number=number,
                unit_concept_id=concepts.id("UCUM", ucum, ucum, "Unit", "Unit") if ucum else 0,
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
                condition_type_concept_id=0,
                condition_source_value=code,
                condition_source_concept_id=icd,
            )
        add(
            "observation",
            person_id=person_id,
            observation_concept_id=grade_concept,
            observation_date=on,
            observation_type_concept_id=0,
            value_as_number=grade,
        )
    return rows


def load_cohort_omop(
    engine: Engine, cohort: pd.DataFrame, codes: CodeLists | None = None
) -> dict[str, int]:
    """Write a cohort frame into the OMOP CDM tables (created where absent); patients already
    in person are skipped. Returns the number of rows in each table afterwards."""
    create_omop_tables(engine)
    codes = codes or read_code_lists()
    with engine.begin() as connection:
        rows = omop_rows(cohort, connection, codes)
        for name, batch in rows.items():
            for start in range(0, len(batch), 5000):
                connection.execute(insert(TABLES[name]), batch[start : start + 5000])
        counts = {
            name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in TABLES.items()
        }
    log.info("OMOP CDM now holds %s", ", ".join(f"{n} {t}" for t, n in counts.items()))
    return counts


def load_cohort_as(
    engine: Engine, cohort: pd.DataFrame, model: str, codes_dir: Path | None = None
) -> dict[str, int]:
    """`load-cohort`: the contract tables (model "contract") or the OMOP CDM tables ("omop",
    with the code lists of PRCRS_OMOP_CODES_DIR or the bundled ones)."""
    if model == "omop":
        return load_cohort_omop(engine, cohort, read_code_lists(codes_dir))
    return load_cohort(engine, cohort)
