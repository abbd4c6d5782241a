"""The warehouse indexes the nightly queries need, listed once: README's list is generated
from it (tests/test_docs.py), the benchmark builds them, and `check` names the one that
would serve when EXPLAIN shows a night's query reading a whole large table (`scans`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, TextClause, text

from prcrs_batch.warehouse.queries import Source, Window, prepare, query

LARGE_TABLE_ROWS = 100_000  # a whole-table read of more rows than this is worth a warning
NIGHTLY_QUERIES = ("active_cohort", "latest_labs", "latest_crs_grades", "feed_freshness")


@dataclass(frozen=True)
class Recommended:
    """One index: where, on which columns, and which query it serves."""

    model: str  # "contract" or "omop"
    table: str
    columns: tuple[str, ...]
    serves: str

    def sql(self) -> str:
        name = f"ix_{self.table}_{'_'.join(self.columns)}"
        return f"CREATE INDEX {name} ON {self.table} ({', '.join(self.columns)})"

    def text(self) -> str:
        return f"`{self.table} ({', '.join(self.columns)})`"


RECOMMENDED = (
    Recommended("contract", "cart_infusions", ("infusion_date",), "the active cohort's range"),
    Recommended(
        "contract", "lab_results", ("collected_at",), "latest_labs' lookback, feed_freshness"
    ),
    Recommended(
        "contract",
        "lab_results",
        ("patient_id", "analyte", "collected_at"),
        "the contract's unique key: a patient's results",
    ),
    Recommended(
        "contract",
        "crs_assessments",
        ("patient_id", "assessed_on"),
        "the contract's unique key: latest_crs_grades, crs_assessments",
    ),
    Recommended("omop", "measurement", ("person_id",), "OHDSI's DDL creates it"),
    Recommended("omop", "measurement", ("measurement_concept_id",), "OHDSI's DDL creates it"),
    Recommended(
        "omop",
        "measurement",
        ("person_id", "measurement_concept_id", "measurement_datetime"),
        "latest_labs: a patient's results of the panel",
    ),
    Recommended("omop", "concept", ("vocabulary_id", "concept_code"), "the code lists' concepts"),
    Recommended("omop", "procedure_occurrence", ("procedure_date",), "infusions by date"),
    Recommended("omop", "drug_exposure", ("drug_exposure_start_date",), "infusions by date"),
)


def markdown() -> str:
    """README's index list, from RECOMMENDED."""
    lines = []
    for model, title in (("contract", "Contract tables"), ("omop", "OMOP CDM")):
        lines.append(f"{title}:")
        lines.append("")
        lines += [f"- {r.text()}: {r.serves}" for r in RECOMMENDED if r.model == model]
        lines.append("")
    return "\n".join(lines)


def scans(
    connection: Connection, source: Source, window: Window, limit: int = LARGE_TABLE_ROWS
) -> list[str]:
    """One line per nightly query that reads a whole table of more than `limit` rows
    (EXPLAIN on PostgreSQL, EXPLAIN QUERY PLAN on SQLite), naming the index that would
    serve. Empty when every query uses an index or reads only small tables."""
    dialect = connection.dialect.name
    params = window.params() | {"fresh_since": window.end, "last_infusion": window.as_of}
    found = []
    prepare(connection, source)
    for name in NIGHTLY_QUERIES:
        statement = query(source.folder, name, dialect)
        for table in sorted(set(_scanned(connection, statement, params))):
            rows = _rows(connection, table)
            if rows > limit:
                served = [r.text() for r in RECOMMENDED if r.table == table]
                hint = f" (README's indexes: {', '.join(served)})" if served else ""
                found.append(f"{name}.sql reads all {rows:,} rows of {table}{hint}")
    return found


def _scanned(
    connection: Connection, statement: TextClause, params: dict[str, Any]
) -> Iterator[str]:
    """The tables a statement reads whole, by the database's own plan."""
    wanted = {k: v for k, v in params.items() if k in statement._bindparams}  # noqa: SLF001
    if connection.dialect.name == "postgresql":
        explain = text("EXPLAIN (FORMAT JSON) " + statement.text)
        plan = connection.execute(
            explain.bindparams(*statement._bindparams.values()),
            wanted,  # noqa: SLF001
        ).scalar_one()
        yield from _seq_scans(plan if isinstance(plan, list) else json.loads(plan))
    else:
        explain = text("EXPLAIN QUERY PLAN " + statement.text)
        rows = connection.execute(
            explain.bindparams(*statement._bindparams.values()),
            wanted,  # noqa: SLF001
        ).all()
        tables = set(connection.execute(text("SELECT name FROM sqlite_master")).scalars())
        for row in rows:
            detail = str(row[-1])
            if detail.startswith("SCAN ") and " USING " not in detail:
                name = detail.split()[1]
                if name in tables:  # not a CTE or a subquery
                    yield name


def _seq_scans(node: Any) -> Iterator[str]:
    if isinstance(node, list):
        for item in node:
            yield from _seq_scans(item)
    elif isinstance(node, dict):
        if node.get("Node Type") == "Seq Scan" and "Relation Name" in node:
            yield str(node["Relation Name"])
        for value in node.values():
            if isinstance(value, (list, dict)):
                yield from _seq_scans(value)


def _rows(connection: Connection, table: str) -> int:
    """The table's row count: PostgreSQL's estimate (pg_class) where the table has been
    analysed, else a count."""
    if connection.dialect.name == "postgresql":
        estimate = connection.execute(
            text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}
        ).scalar()
        if estimate is not None and estimate >= 0:
            return int(estimate)
    return int(connection.execute(text(f'SELECT COUNT(*) FROM "{table}"')).scalar_one())
