"""The one index list (warehouse/indexes.py): README shows it, and `check` warns when the
database's own plan for a nightly query reads a whole large table, naming the index."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from prcrs_batch.resources import SOURCE_ROOT
from prcrs_batch.warehouse import indexes
from prcrs_batch.warehouse.queries import CONTRACT, Window
from tests.support.nightly import AS_OF


def test_readme_lists_the_indexes_from_the_one_list():
    readme = (SOURCE_ROOT / "README.md").read_text("utf-8")
    block = readme.split("<!-- indexes:start -->\n")[1].split("<!-- indexes:end -->")[0]
    assert block == indexes.markdown(), "regenerate with warehouse.indexes.markdown()"


def _scans(engine, seqscan: bool = True, **kwargs):  # type: ignore[no-untyped-def]
    window = Window(as_of=AS_OF, active_days=30, lookback_hours=72)
    with engine.connect() as connection:
        if not seqscan:  # the plan the planner picks at scale, where an index exists
            connection.execute(text("SET enable_seqscan = off"))
        return indexes.scans(connection, CONTRACT, window, **kwargs)


def test_a_whole_table_read_is_named_with_the_index_that_would_serve(warehouse):
    if warehouse.dialect.name != "postgresql":
        pytest.skip("SQLite plans these queries on the contract's keys: no whole-table SCAN")
    found = _scans(warehouse, limit=0)  # tiny tables: PostgreSQL reads them whole
    lab_lines = [line for line in found if "rows of lab_results" in line]
    assert lab_lines and "`lab_results (collected_at)`" in lab_lines[0], found
    assert _scans(warehouse) == []  # but they are small: nothing to warn of
    with warehouse.begin() as connection:
        for index in indexes.RECOMMENDED:
            if index.model == "contract" and "patient_id" not in index.columns:
                connection.execute(text(index.sql()))
        connection.execute(text("ANALYZE"))
    assert _scans(warehouse, seqscan=False, limit=0) == []
