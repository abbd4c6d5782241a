"""The results schema's migrations (Alembic owns the schema) and whether a configured
results database is ready for a night."""

from __future__ import annotations

from dataclasses import dataclass

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from prcrs_batch import resources
from prcrs_batch.errors import permanent_cause, redact_url
from prcrs_batch.results.engines import (
    INIT_DB,
    RESULTS_TABLES,
    DatabaseSetupError,
    explain,
    make_engine,
    missing_file_message,
    missing_sqlite_file,
    require_reachable,
)
from prcrs_batch.settings import Settings, normalise_database_url
from prcrs_batch.warehouse.placement import schema_names, search_path


def alembic_config(url: str, schema: str | None = None) -> Config:
    """Alembic configuration for the repo's migrations, aimed at `url` (and, on PostgreSQL,
    at the schema `schema`: PRCRS_RESULTS_SCHEMA)."""
    config = Config()
    config.set_main_option("script_location", str(resources.alembic_dir()))
    config.attributes["url"] = normalise_database_url(url)
    config.attributes["schema"] = schema
    config.attributes["configure_logging"] = False
    return config


def head_revision() -> str:
    """The newest migration this release ships."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if head is None:  # cannot happen with alembic/versions/ in place
        raise DatabaseSetupError(f"no migrations found in {resources.alembic_dir()}")
    return head


def known_revisions() -> set[str]:
    """Every migration this release ships."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return {revision.revision for revision in script.walk_revisions()}


_RERUN_ROLES = (
    "this login may not read and write {}: run deploy/roles.sql again (it grants only the "
    "tables that existed when it ran)"
)


@dataclass(frozen=True)
class SchemaState:
    """Where a results database stands against this release's migrations."""

    current: str | None  # the applied revision; None: no results schema
    head: str  # the newest revision of this release
    tables_missing: tuple[str, ...] = ()
    revision_readable: bool = True  # False: this login may not read alembic_version
    not_writable: tuple[str, ...] = ()  # results tables this login may not read and write

    @property
    def problem(self) -> str | None:
        """What is wrong, with what to do; None when the schema is usable."""
        if not self.revision_readable:
            if self.tables_missing:
                return f"results table(s) {', '.join(self.tables_missing)} missing: {INIT_DB}"
            if self.not_writable:
                return _RERUN_ROLES.format(", ".join(self.not_writable))
            return None  # the tables are there; the version is not ours to read
        if self.current is None:
            return f"no results schema: {INIT_DB}"
        if self.current != self.head:
            if self.current in known_revisions():
                return (
                    f"results schema at revision {self.current}, this release needs "
                    f"{self.head}: {INIT_DB}"
                )
            return (
                f"results schema at revision {self.current}, unknown to this release "
                f"(newest {self.head}): the database was migrated by a newer prcrs-batch"
            )
        if self.not_writable:
            return _RERUN_ROLES.format(", ".join(self.not_writable))
        return None


def schema_state(engine: Engine) -> SchemaState:
    """Read the applied revision (alembic_version), which results tables exist and, on
    PostgreSQL, which of them this login may not read and write (a night writes them all)."""
    head = head_revision()
    with engine.connect() as connection:
        present = set(inspect(connection).get_table_names())
        missing = tuple(t for t in RESULTS_TABLES if t not in present)
        try:
            current = MigrationContext.configure(connection).get_current_revision()
        except ProgrammingError:  # permission denied on alembic_version (an older roles.sql)
            connection.rollback()
            rights = _not_writable(connection) if connection.dialect.name == "postgresql" else ()
            return SchemaState(None, head, missing, revision_readable=False, not_writable=rights)
        if connection.dialect.name == "postgresql" and current is not None:
            return SchemaState(current, head, missing, not_writable=_not_writable(connection))
    return SchemaState(current, head, missing)


_RIGHTS = text(
    """
    SELECT t.name
    FROM unnest(CAST(:tables AS text[])) AS t(name)
    CROSS JOIN LATERAL (SELECT to_regclass(quote_ident(t.name)) AS relation) AS r
    LEFT JOIN LATERAL (
        SELECT pg_get_serial_sequence(quote_ident(t.name), a.attname) AS sequence
        FROM pg_attribute AS a
        WHERE a.attrelid = r.relation AND a.attname = 'id' AND NOT a.attisdropped
    ) AS s ON true
    WHERE r.relation IS NOT NULL
      AND NOT (has_table_privilege(r.relation, 'SELECT')
               AND has_table_privilege(r.relation, 'INSERT')
               AND has_table_privilege(r.relation, 'UPDATE')
               AND has_table_privilege(r.relation, 'DELETE')
               AND (s.sequence IS NULL OR has_sequence_privilege(s.sequence, 'USAGE')))
    ORDER BY t.name
    """
)


def _not_writable(connection: Connection) -> tuple[str, ...]:
    """The results tables (found through the search_path) this login lacks a night's rights
    on: SELECT, INSERT, UPDATE, DELETE, and USAGE on the id sequence."""
    rows = connection.execute(_RIGHTS, {"tables": list(RESULTS_TABLES)}).scalars()
    return tuple(rows)


@dataclass(frozen=True)
class Migration:
    """What `migrate` did: the revision before (None: no schema) and after."""

    before: str | None
    after: str

    def describe(self, where: str) -> str:
        """One line for the operator.

        >>> Migration(None, "0002").describe("sqlite:///r.db")
        'created the results schema (revision 0002) in sqlite:///r.db'
        >>> Migration("0002", "0002").describe("sqlite:///r.db")
        'results schema already at the newest revision 0002 in sqlite:///r.db: no change'
        """
        if self.before is None:
            return f"created the results schema (revision {self.after}) in {where}"
        if self.before != self.after:
            return f"upgraded the results schema from {self.before} to {self.after} in {where}"
        return f"results schema already at the newest revision {self.after} in {where}: no change"


def migrate(url: str, schema: str | None = None) -> Migration:
    """Bring the results schema to the newest revision (`alembic upgrade head`); on PostgreSQL
    with `schema` (PRCRS_RESULTS_SCHEMA), in that schema, created first where absent."""
    from alembic import command

    engine = make_engine(url, schema)
    try:
        with engine.begin() as connection:
            if schema and connection.dialect.name == "postgresql":
                _create_schema(connection, schema)
            before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(alembic_config(url, schema), "head")
        with engine.connect() as connection:
            after = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    return Migration(before, after or head_revision())


def _create_schema(connection: Connection, schema: str) -> None:
    """CREATE SCHEMA where it is absent (deploy/roles.sql creates it owned by the migrator;
    without it, the migrator needs CREATE on the database)."""
    (name,) = schema_names(schema)
    exists = text("SELECT 1 FROM pg_namespace WHERE nspname = :name")
    if connection.execute(exists, {"name": name}).first() is None:
        connection.execute(text(f"CREATE SCHEMA {search_path([name])}"))


def require_usable(settings: Settings) -> None:
    """Before a night, and before the models load: raise DatabaseSetupError for a set-up
    mistake no retry can fix (a SQLite file that is not there; a database that does not
    exist, a login refused, a host unknown, a connection refused; a results schema
    missing or at another revision).

    A passing error (a timeout, a dropped connection) is left to the night itself: it
    retries, then fails, records the failure where it can and sends the failure notice.
    """
    warehouse = settings.warehouse_url
    if (path := missing_sqlite_file(warehouse)) is not None:
        raise DatabaseSetupError(missing_file_message("PRCRS_WAREHOUSE_URL", warehouse, path))
    require_reachable("PRCRS_WAREHOUSE_URL", warehouse)
    require_results_schema(settings.results_database_url, settings.results_schema)


def require_results_schema(url: str, schema: str | None = None) -> None:
    """Raise DatabaseSetupError (naming PRCRS_RESULTS_URL, saying what to do) unless the
    results database at `url` (in `schema`, PRCRS_RESULTS_SCHEMA) is reachable and at this
    release's revision; an empty SQLite file is never made. A passing connection error is
    left to the caller."""
    where = f"PRCRS_RESULTS_URL ({redact_url(url)})"
    if missing_sqlite_file(url) is not None:
        raise DatabaseSetupError(f"{where}: no results schema (no such file): {INIT_DB}")
    engine = make_engine(url, schema)
    try:
        state = schema_state(engine)
    except DBAPIError as exc:
        if permanent_cause(exc) is not None:
            raise DatabaseSetupError(explain(exc, setting="PRCRS_RESULTS_URL", url=url)) from None
        if isinstance(exc, OperationalError):
            return  # passing (a timeout, a restart): the night retries
        raise
    finally:
        engine.dispose()
    if state.problem:
        raise DatabaseSetupError(f"{where}: {state.problem}")
