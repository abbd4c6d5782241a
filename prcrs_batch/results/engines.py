"""Engines for the warehouse and results databases, their retries, and what a database
error at set-up means for the operator (which setting, what to do)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from prcrs_batch.errors import (
    CANNOT_OPEN,
    CONNECTION_REFUSED,
    LOGIN_REFUSED,
    NO_DATABASE,
    UNKNOWN_HOST,
    SafeMessage,
    describe,
    is_transient,
    permanent_cause,
    redact_url,
)
from prcrs_batch.results.tables import metadata as results_metadata
from prcrs_batch.settings import normalise_database_url
from prcrs_batch.warehouse.contract import warehouse_metadata
from prcrs_batch.warehouse.placement import schema_names, search_path

T = TypeVar("T")
log = logging.getLogger(__name__)

RESULTS_TABLES = tuple(results_metadata.tables)
CONTRACT_TABLES = tuple(warehouse_metadata.tables)
INIT_DB = "run `prcrs-batch init-db`"


class DatabaseSetupError(SafeMessage, RuntimeError):
    """A configured database cannot be used as it is. The message is one line that names
    the setting (or the table) and what to do; never a password."""


def make_engine(url: str, schema: str | None = None) -> Engine:
    """Create an engine; SQLite gets foreign keys and a busy timeout, PostgreSQL a pool check
    and, with `schema` (PRCRS_RESULTS_SCHEMA), that schema as every connection's search_path:
    the results tables, their views and alembic_version are created and found there."""
    url = normalise_database_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    engine = create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    if schema:
        path = search_path(schema_names(schema))

        # insert=True: before SQLAlchemy's first-connect set-up, which reads current_schema()
        @event.listens_for(engine, "connect", insert=True)
        def _search_path(dbapi_connection: Any, _record: Any) -> None:
            autocommit = dbapi_connection.autocommit
            dbapi_connection.autocommit = True  # a session setting no rollback takes back
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT set_config('search_path', %s, false)", (path,))
            dbapi_connection.autocommit = autocommit

    return engine


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


@contextmanager
def explained(setting: str, url: str) -> Iterator[None]:
    """Turn a database error inside the block into a DatabaseSetupError naming `setting`."""
    try:
        yield
    except (DBAPIError, ArgumentError) as exc:
        raise DatabaseSetupError(explain(exc, setting=setting, url=url)) from None


_MISSING_TABLE = re.compile(r'relation "(?:[^"]+\.)?([^"]+)" does not exist|no such table: (\S+)')
_MISSING_SCHEMA = re.compile(r'schema "([^"]+)" does not exist|no schema has been selected()')
_UNREACHABLE = (
    "could not connect",
    "timeout expired",
    "timed out",
    "no route to host",
    "network is unreachable",
    "temporary failure in name resolution",
    "no such file or directory",  # a Unix socket that is not there
)


def explain(exc: BaseException, *, setting: str, url: str) -> str:
    """A database error as one line: which setting, what went wrong, what to do.

    The set-up mistakes are those `errors.permanent_cause` names; their driver text (host,
    port, role: no patient data) is quoted whole, any other error's without its values.

    >>> from sqlalchemy.exc import OperationalError
    >>> explain(OperationalError("SELECT 1", {}, Exception("no such table: lab_results")),
    ...         setting="PRCRS_WAREHOUSE_URL", url="sqlite:///w.db")
    'PRCRS_WAREHOUSE_URL (sqlite:///w.db): the warehouse table or view lab_results is missing: \
create it or map your warehouse onto it (README, Warehouse contract)'
    """
    where = f"{setting} ({redact_url(url)})"
    message = describe(exc, values=True)  # set-up text; other errors are scrubbed below
    if isinstance(exc, ArgumentError):
        return f"{setting}: not a usable database URL: {describe(exc)}"
    text = message.lower()
    cause = permanent_cause(exc)
    if cause == NO_DATABASE:
        return (
            f"{where}: the database {_database_name(url)} does not exist: create it "
            "(createdb) or correct the database name in the URL"
        )
    if cause == LOGIN_REFUSED:
        if re.search(r'role "[^"]+" does not exist', message):
            return f"{where}: login refused ({message}): create the role or correct the user name"
        return (
            f"{where}: login refused ({message}): check the user name in the URL and its "
            "password in the password file (PGPASSFILE)"
        )
    if cause == UNKNOWN_HOST:
        return (
            f"{where}: the host {make_url(url).host} is not known ({message}): correct the "
            "host name in the URL"
        )
    if cause == CONNECTION_REFUSED:
        return (
            f"{where}: cannot reach the database server, the connection was refused "
            f"({message}): check the host and port in the URL and that the server is running"
        )
    if cause == CANNOT_OPEN:
        return f"{where}: cannot open the SQLite file: does its folder exist and is it writable?"
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
    if match := _MISSING_SCHEMA.search(message):
        return (
            f"{where}: the schema {match.group(1) or 'named by the setting'} does not exist: "
            "create it (deploy/roles.sql creates the results schema) or correct "
            "PRCRS_RESULTS_SCHEMA / PRCRS_WAREHOUSE_SCHEMA"
        )
    if "permission denied" in text:
        return (
            f"{where}: permission denied ({message}): grant the login its role, and run "
            "deploy/roles.sql again: it grants only the tables that existed when it ran "
            "(deploy/README.md)"
        )
    if any(fragment in text for fragment in _UNREACHABLE):
        return (
            f"{where}: cannot reach the database server ({message}): check the host and port "
            "in the URL and that the server is running"
        )
    return f"{where}: {describe(exc)}"


def _database_name(url: str) -> str:
    try:
        return make_url(url).database or "(none named)"
    except ArgumentError:
        return "(unreadable URL)"


def require_reachable(setting: str, url: str) -> None:
    """Connect once, before anything else: a set-up mistake (`errors.permanent_cause`)
    raises DatabaseSetupError naming `setting`; a passing error is left to the night's
    retries."""
    engine = make_engine(url)
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        if permanent_cause(exc) is not None:
            raise DatabaseSetupError(explain(exc, setting=setting, url=url)) from None
    finally:
        engine.dispose()


DB_ATTEMPTS = 3
DB_BACKOFF_SECONDS = 2.0


def with_db_retries(action: Callable[[], T], what: str, attempts: int = DB_ATTEMPTS) -> T:
    """Run a database action, retrying a passing error (`errors.is_transient`: a lost or
    dropped connection, a server restarting) with exponential backoff; a set-up mistake
    (no such database, login refused, unknown host, refused connection) fails at once."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except DBAPIError as exc:
            if not is_transient(exc) or attempt == attempts:
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
