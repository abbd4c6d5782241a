"""Shared pieces of the nightly-job tests: the tiny cohort, its busiest night, small helpers."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from sqlalchemy import func, select

from prcrs_batch import pipeline
from prcrs_batch.cohort import read_cohort
from tests.conftest import TEST_DATA

COHORT = read_cohort(TEST_DATA / "tiny_cohort.csv")
CALENDAR_DAYS = [d + timedelta(days=int(n)) for d, n in zip(COHORT["infusion_date"], COHORT["day"])]
# The night on which the most patients of the tiny cohort have labs.
AS_OF = Counter(CALENDAR_DAYS).most_common(1)[0][0]


def patient_with_labs_on_as_of() -> str:
    return str(COHORT.loc[[d == AS_OF for d in CALENDAR_DAYS], "patient_id"].iloc[0])


def run_night(settings, warehouse, as_of=AS_OF, **kwargs):  # type: ignore[no-untyped-def]
    """run_nightly with the warehouse and results in the same test database."""
    return pipeline.run_nightly(
        settings, as_of=as_of, warehouse=warehouse, results_db=warehouse, **kwargs
    )


def count_rows(engine, table, **where) -> int:  # type: ignore[no-untyped-def]
    query = select(func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with engine.connect() as connection:
        return connection.execute(query).scalar_one()
