"""Engines for the warehouse and results databases, the results schema's migrations, and
what a database error at set-up means for the operator (which setting, what to do)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, ProgrammingError

from prcrs_batch import resources
from prcrs_batch.cohort import warehouse_metadata
from prcrs_batch.errors import describe, redact_url
from prcrs_batch.settings import Settings, normalise_database_url
from prcrs_batch.tables import metadata as results_metadata

T = TypeVar("T")
log = logging.getLogger(__name__)

RESULTS_TABLES = tuple(results_metadata.tables)
CONTRACT_TABLES = tuple(warehouse_metadata.tables)
INIT_DB = "run `prcrs-batch init-db`"


class DatabaseSetupError(RuntimeError):
    """A configured database cannot be used as it is. The message is one line that names
    the setting (or the table) and what to do; never a password."""


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets foreign keys and a busy timeout, PostgreSQL a pool check."""
    url = normalise_database_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})


def missing_sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL when it does not exist (connecting would create it empty).

    >>> missing_sqlite_file("sqlite:///no/such/prcrs.db"), missing_sqlite_file("sqlite://")
    (PosixPath('no/such/prcrs.db'), None)
    """
    parsed = make_url(normalise_database_url(url))
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    path = Path(database)
    return None if path.exists() else path


def missing_file_message(setting: str, url: str, path: Path) -> str:
    """One line for a SQLite file that is not there (often an unset or misspelt setting)."""
    return (
        f"{setting} ({redact_url(url)}): the SQLite file {path} does not exist "
        f"(is {setting} set? unset, it is sqlite:///prcrs.db in the working folder)"
    )


def alembic_config(url: str) -> Config:
    """Alembic configuration for the repo's migrations, aimed at `url`."""
    config = Config()
    config.set_main_option("script_location", str(resources.alembic_dir()))
    config.attributes["url"] = normalise_database_url(url)
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


@dataclass(frozen=True)
class SchemaState:
    """Where a results database stands against this release's migrations."""

    current: str | None  # the applied revision; None: no results schema
    head: str  # the newest revision of this release
    tables_missing: tuple[str, ...] = ()
    revision_readable: bool = True  # False: this login may not read alembic_version

    @property
    def problem(self) -> str | None:
        """What is wrong, with what to do; None when the schema is usable."""
        if not self.revision_readable:
            if self.tables_missing:
                return f"results table(s) {', '.join(self.tables_missing)} missing: {INIT_DB}"
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
        return None


def schema_state(engine: Engine) -> SchemaState:
    """Read the applied revision (alembic_version) and which results tables exist."""
    head = head_revision()
    with engine.connect() as connection:
        present = set(inspect(connection).get_table_names())
        missing = tuple(t for t in RESULTS_TABLES if t not in present)
        try:
            current = MigrationContext.configure(connection).get_current_revision()
        except ProgrammingError:  # permission denied on alembic_version (an older roles.sql)
            return SchemaState(None, head, missing, revision_readable=False)
    return SchemaState(current, head, missing)


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


def migrate(url: str) -> Migration:
    """Bring the results schema to the newest revision (`alembic upgrade head`)."""
    from alembic import command

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(alembic_config(url), "head")
        with engine.connect() as connection:
            after = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    return Migration(before, after or head_revision())


def require_usable(settings: Settings) -> None:
    """Before a night: raise DatabaseSetupError for a set-up mistake no retry can fix (a
    SQLite file that is not there, a results schema missing or at another revision).

    An unreachable server is left to the night itself: it retries, then fails, records
    the failure where it can and sends the failure notice.
    """
    warehouse, results = settings.warehouse_url, settings.results_database_url
    if (path := missing_sqlite_file(warehouse)) is not None:
        raise DatabaseSetupError(missing_file_message("PRCRS_WAREHOUSE_URL", warehouse, path))
    where = f"PRCRS_RESULTS_URL ({redact_url(results)})"
    if missing_sqlite_file(results) is not None:
        raise DatabaseSetupError(f"{where}: no results schema (no such file): {INIT_DB}")
    engine = make_engine(results)
    try:
        state = schema_state(engine)
    except OperationalError:
        return
    finally:
        engine.dispose()
    if state.problem:
        raise DatabaseSetupError(f"{where}: {state.problem}")


@contextmanager
def explained(setting: str, url: str) -> Iterator[None]:
    """Turn a database error inside the block into a DatabaseSetupError naming `setting`."""
    try:
        yield
    except (DBAPIError, ArgumentError) as exc:
        raise DatabaseSetupError(explain(exc, setting=setting, url=url)) from None


_MISSING_TABLE = re.compile(r'relation "(?:[^"]+\.)?([^"]+)" does not exist|no such table: (\S+)')
_MISSING_DATABASE = re.compile(r'database "([^"]+)" does not exist')
_UNREACHABLE = (
    "connection refused",
    "could not connect",
    "timeout expired",
    "timed out",
    "no route to host",
    "network is unreachable",
    "could not translate host name",
    "name or service not known",
    "temporary failure in name resolution",
    "no such file or directory",  # a Unix socket that is not there
)


def explain(exc: BaseException, *, setting: str, url: str) -> str:
    """A database error as one line: which setting, what went wrong, what to do.

    >>> from sqlalchemy.exc import OperationalError
    >>> explain(OperationalError("SELECT 1", {}, Exception("no such table: lab_results")),
    ...         setting="PRCRS_WAREHOUSE_URL", url="sqlite:///w.db")
    'PRCRS_WAREHOUSE_URL (sqlite:///w.db): the warehouse table or view lab_results is missing: \
create it or map your warehouse onto it (README, Warehouse contract)'
    """
    where = f"{setting} ({redact_url(url)})"
    message = describe(exc)
    if isinstance(exc, ArgumentError):
        return f"{setting}: not a usable database URL: {message}"
    text = message.lower()
    if match := _MISSING_TABLE.search(message):
        table = match.group(1) or match.group(2)
        if table in RESULTS_TABLES or table in ("crs_risk_latest", "alembic_version"):
            return f"{where}: the results table {table} is missing: {INIT_DB}"
        if table in CONTRACT_TABLES:
            return (
                f"{where}: the warehouse table or view {table} is missing: create it or map "
                "your warehouse onto it (README, Warehouse contract)"
            )
        return f"{where}: table {table} is missing ({message})"
    if match := _MISSING_DATABASE.search(message):
        return (
            f"{where}: the database {match.group(1)} does not exist: create it (createdb) or "
            "correct the database name in the URL"
        )
    if "password authentication failed" in text or "no password supplied" in text:
        return (
            f"{where}: login refused ({message}): check the user name in the URL and its "
            "password in the password file (PGPASSFILE)"
        )
    if re.search(r'role "[^"]+" does not exist', message):
        return f"{where}: login refused ({message}): create the role or correct the user name"
    if "unable to open database file" in text:
        return f"{where}: cannot open the SQLite file: does its folder exist and is it writable?"
    if "permission denied" in text:
        return (
            f"{where}: permission denied ({message}): grant the login its role "
            "(deploy/roles.sql, deploy/README.md)"
        )
    if any(fragment in text for fragment in _UNREACHABLE):
        return (
            f"{where}: cannot reach the database server ({message}): check the host and port "
            "in the URL and that the server is running"
        )
    return f"{where}: {message}"


DB_ATTEMPTS = 3
DB_BACKOFF_SECONDS = 2.0


def with_db_retries(action: Callable[[], T], what: str, attempts: int = DB_ATTEMPTS) -> T:
    """Run a database action, retrying lost or refused connections with exponential backoff."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except (OperationalError, DBAPIError) as exc:
            transient = isinstance(exc, OperationalError) or exc.connection_invalidated
            if not transient or attempt == attempts:
                raise
            wait = DB_BACKOFF_SECONDS * 2 ** (attempt - 1)
            log.warning(
                "%s: database error (%s), retry %d/%d in %.0fs",
                what,
                type(exc.orig).__name__,
                attempt,
                attempts - 1,
                wait,
            )
            time.sleep(wait)
    raise AssertionError("unreachable")
