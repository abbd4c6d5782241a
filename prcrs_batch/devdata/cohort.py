"""Loads a cohort file in the cart_dev.csv format into the three warehouse contract tables.

For development, demos and tests: a hospital's own warehouse already holds these tables.
Loading the same file twice changes nothing (unique keys, conflicting rows skipped).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine, MetaData, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from prcrs_batch.devdata import csv_input
from prcrs_batch.errors import SafeMessage
from prcrs_batch.task.panel import ANALYTE_CODES, BY_CODE
from prcrs_batch.warehouse.contract import (
    cart_infusions,
    crs_assessments,
    lab_results,
    warehouse_metadata,
)
from prcrs_batch.warehouse.placement import bind, locate

log = logging.getLogger(__name__)

COLLECTION_TIME = time(6, 0)  # the development cohort's labs are dated by day; say 06:00


class LoadError(SafeMessage, ValueError):
    """The warehouse cannot take the cohort as it is; one line saying what to do (it names
    schemas, tables and codes of the code lists, never a data value)."""


@contextmanager
def writing_warehouse() -> Iterator[None]:
    """A login that may not write the warehouse (the nightly job's read-only one) gets one
    line saying which login loads data."""
    try:
        yield
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != "42501":  # insufficient_privilege
            raise
        raise LoadError(
            f"this login may not write the warehouse ({str(exc.orig).splitlines()[0]}): "
            "load-cohort runs as a login that may create and write tables in "
            "PRCRS_WAREHOUSE_SCHEMA (its owner, or the site's ETL login), never as the "
            "nightly job's read-only one"
        ) from None


STATIC_COLUMNS = ["patient_id", "infusion_date", "day", "sex", "age", "crs_grade"]


def read_cohort(path: Path) -> pd.DataFrame:
    """Read a cart_dev.csv-format file; analyte cells stay text, as a warehouse holds them.

    Read strictly (`csv_input`): a row with the wrong number of fields, another delimiter,
    a file that is not text, or a patient fact that is not one (`day=zero`) is an
    InputFileError naming the line and column.
    """
    name = str(path)
    table = csv_input.read_csv(
        csv_input.decode(Path(path).read_bytes(), name),
        name,
        expected=STATIC_COLUMNS,
        dtype={code: "string" for code in ANALYTE_CODES} | {"patient_id": "string"},
    )
    frame = table.frame
    missing = [c for c in STATIC_COLUMNS if c not in frame.columns]
    if missing:
        raise csv_input.InputFileError(f"{path}: missing column(s) {', '.join(missing)}")
    ids = frame["patient_id"]
    table.require("patient_id", ids.notna() & (ids.str.strip() != ""), "an id")
    infused = pd.to_datetime(frame["infusion_date"], errors="coerce")
    table.require("infusion_date", infused.notna(), "a date (YYYY-MM-DD)")
    table.require("day", _whole(frame["day"]), "a whole number of days since the infusion")
    grade = frame["crs_grade"]
    table.require("crs_grade", grade.isna() | _whole(grade, 0, 4), "a CRS grade 0-4 or empty")
    age = frame["age"]
    table.require("age", age.isna() | pd.to_numeric(age, errors="coerce").notna(), "a number")
    frame["infusion_date"] = infused.dt.date
    return frame


def _whole(column: pd.Series, low: float = -math.inf, high: float = math.inf) -> pd.Series:
    """Which cells are whole numbers in [low, high]."""
    number = pd.to_numeric(column, errors="coerce")
    return number.notna() & (number % 1 == 0) & number.between(low, high)


def place_in_treatment(cohort: pd.DataFrame, today: date, seed: int = 0) -> pd.DataFrame:
    """Move each patient so that they are in treatment today, with labs up to yesterday.

    Each patient's last kept day is drawn at random (seeded) and put on yesterday, so the
    demo warehouse looks like the warehouse at 2 am: some patients just infused, some a week
    in, nobody with results from the future. Later days are dropped.
    """
    rng = np.random.default_rng(seed)
    last_day = cohort.groupby("patient_id")["day"].max()
    kept_day = pd.Series(
        [int(rng.integers(0, d + 1)) for d in last_day.to_numpy()], index=last_day.index
    )
    moved = cohort[cohort["day"] <= cohort["patient_id"].map(kept_day)].copy()
    yesterday = today - timedelta(days=1)
    moved["infusion_date"] = [
        yesterday - timedelta(days=int(kept_day[p])) for p in moved["patient_id"]
    ]
    return moved


def warehouse_rows(cohort: pd.DataFrame) -> dict[str, list[dict]]:
    """The contract rows for a cohort frame: infusions, lab results, CRS assessments."""
    infusions = (
        cohort.drop_duplicates("patient_id")[["patient_id", "infusion_date", "sex", "age"]]
        .astype(object)
        .where(lambda f: f.notna(), None)
    )
    dates = [d + timedelta(days=int(n)) for d, n in zip(cohort["infusion_date"], cohort["day"])]
    labs = []
    for code in ANALYTE_CODES:
        if code not in cohort.columns:
            continue
        unit = BY_CODE[code].unit
        for pid, when, value in zip(cohort["patient_id"], dates, cohort[code]):
            if pd.isna(value) or str(value).strip() == "":
                continue
            collected = datetime.combine(when, COLLECTION_TIME)
            labs.append(
                {
                    "patient_id": pid,
                    "collected_at": collected,
                    "analyte": code,
                    "value": str(value),
                    "unit": unit,
                }
            )
    grades = [
        {"patient_id": pid, "assessed_on": when, "grade": int(g)}
        for pid, when, g in zip(cohort["patient_id"], dates, cohort["crs_grade"])
        if not pd.isna(g)
    ]
    return {
        "cart_infusions": infusions.to_dict("records"),
        "lab_results": labs,
        "crs_assessments": grades,
    }


def create_warehouse_tables(engine: Engine) -> None:
    """Create the contract tables where absent (development warehouses only)."""
    warehouse_metadata.create_all(engine, checkfirst=True)


def load_cohort(
    engine: Engine, cohort: pd.DataFrame, *, schema: str | None = None
) -> dict[str, int]:
    """Insert a cohort frame into the contract tables; rows already there are skipped.

    The tables are looked up in the schemas of `schema` (PRCRS_WAREHOUSE_SCHEMA, as the
    queries read them) and created in the first where absent. Returns the number of rows
    in each table afterwards.
    """
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    rows = warehouse_rows(cohort)
    with writing_warehouse(), engine.begin() as connection:
        placement = locate(connection, schema, warehouse_metadata.tables)
        if placement.missing_schemas:
            raise LoadError(
                f"schema {', '.join(placement.missing_schemas)} does not exist: create it "
                "(CREATE SCHEMA) or correct PRCRS_WAREHOUSE_SCHEMA"
            )
        metadata = MetaData()
        tables = [
            bind(t, metadata, placement.found.get(t.name, placement.target))
            for t in (cart_infusions, lab_results, crs_assessments)
        ]
        metadata.create_all(connection, checkfirst=True)
        for table in tables:
            batch = rows[table.name]
            for start in range(0, len(batch), 5000):
                statement = dialect.insert(table).on_conflict_do_nothing()
                connection.execute(statement, batch[start : start + 5000])
        counts = {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in tables
        }
    log.info("warehouse now holds %s", ", ".join(f"{n} {t}" for t, n in counts.items()))
    return counts


def reset_warehouse(engine: Engine) -> None:
    """Drop and recreate the contract tables (the demo's embedded warehouse only)."""
    warehouse_metadata.drop_all(engine, checkfirst=True)
    warehouse_metadata.create_all(engine)
