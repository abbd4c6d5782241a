"""SQL and Markdown made from tables.py: the CREATE VIEW statements, the COMMENT ON statements
for PostgreSQL, and the README's "Results schema" section, so that all three say the same.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Column, Connection, DateTime, String, Table, Text, inspect

from prcrs_batch.results.tables import (
    VIEWS,
    crs_patient_nights,
    crs_risk_explanations,
    crs_risk_scores,
    data_quality_issues,
    input_drift,
    metadata,
    model_performance,
    night_claims,
    scoring_runs,
)


def create_views_sql(names: Iterable[str] | None = None) -> list[str]:
    """CREATE VIEW statements for VIEWS (`names`: those a migration creates; default all)."""
    return [
        f"CREATE VIEW {name} AS\n{VIEWS[name].sql}" for name in (VIEWS if names is None else names)
    ]


def comment_sql(
    tables: Iterable[str] | None = None,
    views: Iterable[str] | None = None,
    bind: Connection | None = None,
) -> list[str]:
    """PostgreSQL COMMENT ON statements for the tables and views named (None: all), and
    every column of theirs; with `bind`, only the columns its database has (a migration
    comments the schema as it stands at its revision, with today's texts)."""

    def quoted(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    inspector = inspect(bind) if bind is not None else None

    def on(kind: str, name: str, comment: str, columns: Iterable[tuple[str, str]]) -> list[str]:
        statements = [f"COMMENT ON {kind} {name} IS {quoted(comment)}"]
        present = (
            None
            if inspector is None
            else {c["name"] for c in inspector.get_columns(name)}  # a view's too
        )
        for column, text in columns:
            if present is not None and column not in present:
                continue
            statements.append(f"COMMENT ON COLUMN {name}.{column} IS {quoted(text)}")
        return statements

    def commented(table: Table) -> list[tuple[str, str]]:
        return [(c.name, c.comment or "") for c in table.columns]

    out = []
    for name in metadata.tables if tables is None else tables:
        table = metadata.tables[name]
        out += on("TABLE", name, table.comment or "", commented(table))
    for name in VIEWS if views is None else views:
        view = VIEWS[name]
        columns = commented(metadata.tables[view.source]) + list(view.added)
        out += on("VIEW", name, view.comment, columns)
    return out


def schema_markdown() -> str:
    """The README's table-by-table schema, from the same comments."""
    lines = []
    for table in [
        scoring_runs,
        crs_patient_nights,
        crs_risk_explanations,
        crs_risk_scores,
        model_performance,
        input_drift,
        data_quality_issues,
        night_claims,
    ]:
        lines += [
            f"**`{table.name}`**: {table.comment}.",
            "",
            "| column | type | meaning |",
            "|---|---|---|",
        ]
        for column in table.columns:
            kind = _kind(column)
            lines.append(f"| `{column.name}` | {kind} | {column.comment} |")
        lines.append("")
    for name, view in VIEWS.items():
        also = " and these" if view.added else ""
        lines += [f"**`{name}`** (view, the columns of `{view.source}`{also}): {view.comment}.", ""]
        if view.added:
            lines += ["| column | meaning |", "|---|---|"]
            lines += [f"| `{column}` | {text} |" for column, text in view.added] + [""]
    return "\n".join(lines)


def _kind(column: Column) -> str:
    """A column's type as the README states it."""
    kind = column.type
    if isinstance(kind, DateTime):
        return "timestamp with time zone" if kind.timezone else "timestamp (warehouse clock)"
    if isinstance(kind, String) and not isinstance(kind, Text):
        return "text"
    return str(kind).lower()
