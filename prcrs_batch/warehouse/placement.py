"""Where tables live on PostgreSQL: the schemas PRCRS_WAREHOUSE_SCHEMA (`cdm`, or `cdm, vocab`)
and PRCRS_RESULTS_SCHEMA name, and which of them holds each table.

The warehouse queries read their tables through the search_path (queries.prepare); what
writes or inspects tables (the development loaders, `check`) looks them up here the same
way: each table is the first of the schemas that holds it, and a table that is created goes
into the first schema. Names are unquoted SQL identifiers, as in a search_path: PostgreSQL
folds them to lower case; every one is quoted where it is written into SQL. SQLite has no
schemas: everything is in its one database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, MetaData, Table, inspect


def schema_names(setting: str | None) -> list[str]:
    """The schemas of a search_path setting, in order, as PostgreSQL names them.

    >>> schema_names("cdm, Vocab"), schema_names(None)
    (['cdm', 'vocab'], [])
    """
    if not setting:
        return []
    return [part.strip().lower() for part in setting.split(",") if part.strip()]


def search_path(names: Iterable[str]) -> str:
    """A search_path value naming these schemas, each quoted.

    >>> search_path(["results"])
    '"results"'
    """
    return ", ".join('"' + name.replace('"', '""') + '"' for name in names)


@dataclass(frozen=True)
class Placement:
    """Which schema holds each table asked for (None: the login's default schema, or SQLite)."""

    schemas: tuple[str | None, ...]  # searched in order; tables are created in the first
    found: dict[str, str | None] = field(default_factory=dict)  # table -> its schema
    missing_schemas: tuple[str, ...] = ()  # named by the setting, absent from the database

    @property
    def target(self) -> str | None:
        """Where a table that is created goes: the first schema."""
        return self.schemas[0]

    def where(self) -> str:
        """The schemas, for a message: 'schema cdm', 'schemas cdm, vocab' or 'the default
        schema'."""
        named = [s for s in self.schemas if s is not None]
        if not named:
            return "the default schema"
        return f"schema{'s' if len(named) > 1 else ''} {', '.join(named)}"


def locate(connection: Connection, setting: str | None, tables: Iterable[str]) -> Placement:
    """Look each table (or view) up in the setting's schemas, in order (PostgreSQL); unset, or
    on SQLite, in the default schema."""
    names = schema_names(setting) if connection.dialect.name == "postgresql" else []
    schemas: tuple[str | None, ...] = tuple(names) or (None,)
    inspector = inspect(connection)
    existing = set(inspector.get_schema_names()) if names else set()
    missing = tuple(s for s in names if s not in existing)
    found: dict[str, str | None] = {}
    wanted = list(tables)
    for schema in schemas:
        if schema is not None and schema in missing:
            continue
        present = set(inspector.get_table_names(schema=schema))
        present |= set(inspector.get_view_names(schema=schema))
        for table in wanted:
            if table in present and table not in found:
                found[table] = schema
    return Placement(schemas=schemas, found=found, missing_schemas=missing)


def bind(table: Table, metadata: MetaData, schema: str | None) -> Table:
    """A copy of `table` in `metadata`, in `schema` (None: the default schema)."""
    return table.to_metadata(metadata, schema=schema) if schema else table.to_metadata(metadata)
