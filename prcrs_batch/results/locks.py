"""Two runs of one night never overlap: `night_lock` is held for a whole run (the second
stops; no run goes on without it: RunLockError), the write of a night is serialised
(`serialise_night`), and `claim_night` lets one of several schedulers take a night.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import TextIO

from sqlalchemy import Connection, Engine, insert, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from prcrs_batch.errors import SafeMessage, describe
from prcrs_batch.results.engines import with_db_retries
from prcrs_batch.results.tables import night_claims

log = logging.getLogger(__name__)

# PostgreSQL advisory-lock classes ("PRCS" and the next): a whole run, and a night's write.
RUN_LOCK, WRITE_LOCK = 0x50524353, 0x50524354
MAX_CLAIMED_BY_CHARS = 128  # night_claims.claimed_by: a host name, cut to fit


def serialise_night(connection: Connection, as_of: date) -> None:
    """PostgreSQL: wait for any other transaction writing this night (until it commits), so
    that a rerun replaces what it wrote instead of colliding on the unique key. SQLite
    serialises writers by itself."""
    if connection.dialect.name == "postgresql":
        statement = text("SELECT pg_advisory_xact_lock(:kind, :night)")
        connection.execute(statement, {"kind": WRITE_LOCK, "night": as_of.toordinal()})


class RunLockError(SafeMessage, RuntimeError):
    """The night's run lock cannot be taken at all: the night does not run."""


@contextmanager
def night_lock(engine: Engine, as_of: date) -> Iterator[bool]:
    """Hold one night's run lock for a whole run; yields False when another run holds it.

    PostgreSQL: a session advisory lock on a connection of its own, released when that
    connection ends (a killed run never leaves it behind). SQLite: an flock on a file
    beside the database file. A night never runs without its lock: when it cannot be
    taken (the results database unreachable after the retries, the folder read-only)
    this raises, and the night fails.
    """
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, as_of) as held:
            yield held
        return
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        yield True
        return
    try:
        import fcntl  # POSIX only: elsewhere SQLite runs unguarded (its writes serialise)
    except ImportError:
        log.warning("night %s: no run lock on this system; running unguarded", as_of)
        yield True
        return
    path = f"{database}.night-{as_of.isoformat()}.lock"
    handle = _locked_file(path)
    if handle is None:
        yield False
        return
    with handle:
        try:
            yield True
        finally:
            os.unlink(path)  # while still held: a year of nights leaves no year of files
            fcntl.flock(handle, fcntl.LOCK_UN)


def _locked_file(path: str) -> TextIO | None:
    """The lock file at `path`, opened (created if need be) and flock-ed; None when another
    run holds it. A file the holder unlinked between our open and our lock is not the
    lock any more: open the path again."""
    import fcntl

    while True:
        try:
            handle = open(path, "a")
        except OSError as exc:
            raise RunLockError(
                f"cannot take the night's run lock {path}: {describe(exc)}"
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        try:
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                return handle
        except FileNotFoundError:
            pass
        handle.close()


@contextmanager
def _advisory_lock(engine: Engine, as_of: date) -> Iterator[bool]:
    key = {"kind": RUN_LOCK, "night": as_of.toordinal()}

    def take() -> tuple[Connection, bool]:
        connection = engine.connect()
        try:
            held = connection.execute(text("SELECT pg_try_advisory_lock(:kind, :night)"), key)
            got = bool(held.scalar_one())
            connection.commit()  # the lock is the session's: no transaction stays open
        except BaseException:
            connection.invalidate()
            connection.close()
            raise
        return connection, got

    connection, got = with_db_retries(take, "take the night's run lock")
    try:
        yield got
    finally:
        try:
            if got:
                connection.execute(text("SELECT pg_advisory_unlock(:kind, :night)"), key)
                connection.commit()
        except SQLAlchemyError:
            connection.invalidate()  # closing the session releases its locks
        finally:
            connection.close()


def claim_night(*, connection: Connection, as_of: date, claimed_by: str, now: datetime) -> bool:
    """Claim a night for one scheduler; False when another host already claimed it."""
    try:
        with connection.begin_nested():
            connection.execute(
                insert(night_claims).values(
                    as_of=as_of, claimed_by=claimed_by[:MAX_CLAIMED_BY_CHARS], claimed_at=now
                )
            )
    except IntegrityError:
        return False
    return True
