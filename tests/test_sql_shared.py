"""The warehouse queries' shared parts (the active patients, a day's grade, the OMOP patient id)
are written once in sql/shared/ and sql/omop/shared/ and included: rendered, every query
returns what the queries written out in full returned before (issue 22), on the contract and
the OMOP tables, SQLite and PostgreSQL. (Since then OMOP reads a day's grade from daily grade
records first and conditions only without them, and lab codes also through
measurement_source_concept_id: the same rows where, as in the tiny cohort, every person has
daily records and every measurement a standard concept; lab_code_counts gained a column.)

tests/data/sql_before_includes/ keeps those written-out queries as the reference; delete it
(and this comparison) when a shared definition changes on purpose."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from prcrs_batch.devdata.cohort import load_cohort
from prcrs_batch.devdata.omop import load_cohort_omop
from prcrs_batch.resources import sql_dir
from prcrs_batch.warehouse.queries import Source, Window, prepare, query, render
from tests.support.nightly import AS_OF, COHORT

BEFORE = Path(__file__).parent / "data" / "sql_before_includes"
QUERIES = ["active_cohort", "latest_labs", "latest_crs_grades", "crs_assessments", "feed_freshness"]
NIGHTS = [AS_OF - timedelta(days=5), AS_OF, AS_OF + timedelta(days=3)]


def _rows(engine: Engine, folder: Path, name: str, params: dict, source: Source) -> list[tuple]:
    statement = query(folder, name, engine.dialect.name)
    used = {k: v for k, v in params.items() if f":{k}" in statement.text}
    with engine.connect() as connection:
        prepare(connection, source)
        rows = connection.execute(statement, used).all()
    return sorted(
        (tuple(row)[:2] if name == "lab_code_counts" else tuple(row) for row in rows), key=repr
    )


def _params(as_of, source: Source) -> dict:
    window = Window(as_of=as_of, active_days=30, lookback_hours=72, source=source)
    return window.params() | {
        "last_infusion": as_of,
        "fresh_since": datetime.combine(as_of, datetime.min.time()) - timedelta(days=2),
        "now": datetime.combine(as_of + timedelta(days=1), datetime.min.time()),
    }


@pytest.mark.parametrize("model", ["contract", "omop"])
def test_rendered_queries_return_what_the_written_out_ones_did(engine: Engine, model: str):
    load_cohort(engine, COHORT)
    load_cohort_omop(engine, COHORT)
    source = Source(model=model)
    new = sql_dir() / "omop" if model == "omop" else sql_dir()
    old = BEFORE / "omop" if model == "omop" else BEFORE
    names = QUERIES + (["lab_code_counts"] if model == "omop" else [])
    compared = 0
    for as_of in NIGHTS:
        params = _params(as_of, source) | source.params()
        for name in names:
            expected = _rows(engine, old, name, params, source)
            assert _rows(engine, new, name, params, source) == expected, (model, name, as_of)
            compared += len(expected)
    assert compared > 500  # the cohort is in the tables: the comparison saw rows


@pytest.mark.parametrize("folder", ["", "omop"])
def test_each_concept_is_written_once(folder: str):
    """No query writes out the active patients or a day's grade: they include shared/."""
    for path in sorted((sql_dir() / folder).glob("*.sql")):
        sql = path.read_text("utf-8")
        assert "FROM drug_exposure" not in sql, path.name  # OMOP's infusions
        assert folder or ">= :first_infusion" not in sql, path.name  # the contract's
        assert "MAX(grade)" not in sql and "grade_events AS" not in sql, path.name
        assert "person_source_value" not in sql or path.name == "lab_code_counts.sql", path.name
    rendered = render(sql_dir() / folder, "latest_crs_grades")
    assert "{%" not in rendered and "MAX(grade)" in rendered and "active AS (" in rendered
