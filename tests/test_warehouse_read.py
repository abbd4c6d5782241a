"""The warehouse read in batches: a night read a few rows at a time is the same frame as
read at once (columns, dtypes, values, order), on SQLite and PostgreSQL, and equal strings
are one object however many batches brought them."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pandas as pd
import pytest
from sqlalchemy import Engine

from prcrs_batch.devdata.cohort import load_cohort
from prcrs_batch.warehouse import queries
from prcrs_batch.warehouse.contract import lab_results
from prcrs_batch.warehouse.queries import Window
from tests.support.nightly import AS_OF, COHORT

WINDOW = Window(as_of=AS_OF, active_days=30, lookback_hours=72)


def _reads(engine: Engine, window: Window) -> dict[str, pd.DataFrame]:
    """Every frame queries.py reads for a night, and the training labels."""
    with engine.connect() as connection:
        frames = {
            name: read(connection=connection, window=window)
            for name, read in [
                ("active_cohort", queries.active_cohort),
                ("latest_labs", queries.latest_labs),
                ("latest_crs_grades", queries.latest_crs_grades),
            ]
        }
        frames["crs_assessments"] = queries.crs_assessments(
            connection=connection,
            first_infusion=window.as_of - timedelta(days=window.active_days),
            last_infusion=window.as_of,
        )
    return frames


@pytest.fixture
def night(engine: Engine) -> Engine:
    """The tiny cohort, plus lab rows with NULLs: no patient id, no value, no unit."""
    load_cohort(engine, COHORT)
    noon = datetime.combine(AS_OF, time(12))
    odd = [
        {"patient_id": None, "collected_at": noon, "analyte": "crp", "value": "9", "unit": None},
        {"patient_id": COHORT["patient_id"].iloc[0], "collected_at": noon, "analyte": "ldh",
         "value": None, "unit": None},
    ]  # fmt: skip
    with engine.begin() as connection:
        connection.execute(lab_results.insert(), odd)
    return engine


def test_a_read_in_many_batches_is_the_read_in_one(night, monkeypatch):
    monkeypatch.setattr(queries, "BATCH_ROWS", 1_000_000)
    whole = _reads(night, WINDOW)
    monkeypatch.setattr(queries, "BATCH_ROWS", 7)
    batched = _reads(night, WINDOW)
    assert len(whole["latest_labs"]) > 10 * 7  # many batches
    for name, frame in whole.items():
        pd.testing.assert_frame_equal(batched[name], frame, obj=name)
    labs = batched["latest_labs"]
    assert labs["collected_at"].dtype == "datetime64[us]"
    for column in ("patient_id", "analyte", "unit", "value"):
        strings = labs[column].dropna()
        assert len({id(s) for s in strings}) == strings.nunique(), column  # one object each


def test_an_empty_read_has_the_same_columns_and_dtypes(night):
    full = _reads(night, WINDOW)
    empty = _reads(night, Window(as_of=AS_OF - timedelta(days=3650), active_days=1,
                                 lookback_hours=1))  # fmt: skip
    for name, frame in full.items():
        assert empty[name].empty, name
        read = frame.columns.drop("day_since_infusion", errors="ignore")  # made after the read
        pd.testing.assert_series_equal(empty[name].dtypes[read], frame.dtypes[read], obj=name)


def test_a_query_with_other_columns_fails_naming_them(night, monkeypatch, tmp_path):
    (tmp_path / "latest_labs.sql").write_text("SELECT patient_id, analyte FROM lab_results")
    monkeypatch.setattr(queries, "sql_dir", lambda: tmp_path)
    with night.connect() as connection, pytest.raises(queries.WarehouseError) as failed:
        queries.latest_labs(connection=connection, window=WINDOW)
    assert "latest_labs.sql returned ['patient_id', 'analyte']" in str(failed.value)
