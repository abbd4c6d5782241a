"""Database failures sorted once (errors.permanent_cause): a set-up mistake stops at once,
a passing error is retried, a night never runs without its lock, and the failure notice of
a night that never read the warehouse goes to the operators, not the clinicians."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, select, text
from sqlalchemy.exc import DBAPIError, OperationalError

from prcrs_batch import errors
from prcrs_batch.app import pipeline
from prcrs_batch.results import engines
from prcrs_batch.results.engines import DatabaseSetupError, make_engine, with_db_retries
from prcrs_batch.results.tables import scoring_runs
from prcrs_batch.settings import Settings, load_settings
from tests.support.nightly import AS_OF, run_night
from tests.support.smtp import SMTPSink

NOTHING_LISTENS = "postgresql://prcrs_job:pw-Secret-9@127.0.0.1:1/prcrs"  # port 1: refused
ONCALL, OPS = "oncall@hospital.example", "it-ops@hospital.example"


def mail_settings(
    settings_env: Path, url: str, sink: SMTPSink, *, ops: bool = True, **extra: object
) -> Settings:
    """Settings for a night on `url` that mails `sink`; models never reached by these
    tests (a folder that is not there), operators on PRCRS_OPS_TO when `ops`."""
    return load_settings(
        warehouse_url=url,
        model_dir=settings_env / "no-models",
        report_dir=settings_env / "reports",
        device="cpu",
        smtp_host=sink.host,
        smtp_port=sink.port,
        smtp_starttls=False,
        alert_to=[ONCALL],
        ops_to=[OPS] if ops else [],
        **extra,
    )


def envelope_recipients(sink: SMTPSink) -> list[list[str]]:
    return [recipients for _, recipients, _ in sink.handler.received]


def raised(action: Callable[[], object]) -> DBAPIError:
    with pytest.raises(DBAPIError) as caught:
        action()
    return caught.value


def connect(url: str) -> Callable[[], object]:
    def action() -> None:
        engine = make_engine(url)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()

    return action


def missing_database(db_url: str) -> str:
    missing = f"prcrs_missing_{uuid.uuid4().hex[:8]}"
    return make_url(db_url).set(database=missing).render_as_string(hide_password=False)


# --- one classification, from real drivers' errors -----------------------------------


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgresql_set_up_mistakes_are_permanent(db_url):
    nobody = make_url(db_url).set(username=f"nobody_{uuid.uuid4().hex[:8]}")
    cases = {
        errors.NO_DATABASE: missing_database(db_url),
        errors.LOGIN_REFUSED: nobody.render_as_string(hide_password=False),
        errors.CONNECTION_REFUSED: NOTHING_LISTENS,
        errors.UNKNOWN_HOST: "postgresql://prcrs_job@no-such-host.invalid/prcrs",
    }
    for cause, url in cases.items():
        exc = raised(connect(url))
        assert errors.permanent_cause(exc) == cause, (cause, str(exc))
        assert not errors.is_transient(exc)


def test_a_sqlite_file_in_a_folder_that_is_not_there_is_permanent(tmp_path):
    exc = raised(connect(f"sqlite:///{tmp_path / 'no' / 'such' / 'prcrs.db'}"))
    assert errors.permanent_cause(exc) == errors.CANNOT_OPEN


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_connection_dropped_by_the_server_is_passing(db_url):
    engine = make_engine(db_url)
    admin = make_engine(db_url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with admin.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            exc = raised(lambda: connection.execute(text("SELECT 1")))
    finally:
        engine.dispose()
        admin.dispose()
    assert errors.permanent_cause(exc) is None
    assert errors.is_transient(exc)


@pytest.fixture
def locked_sqlite(tmp_path: Path) -> Iterator[tuple[Engine, Callable[[], None]]]:
    """A SQLite database whose write lock another connection holds, an engine that waits
    only 0.1 s for it, and the function that releases it."""
    path = tmp_path / "locked.db"
    holder_engine = create_engine(f"sqlite:///{path}")
    with holder_engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
    holder = holder_engine.raw_connection()
    holder.execute("BEGIN EXCLUSIVE")  # type: ignore[attr-defined]
    impatient = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
    yield impatient, holder.rollback
    holder.close()
    impatient.dispose()
    holder_engine.dispose()


def test_a_locked_sqlite_database_is_passing_and_retried(locked_sqlite, monkeypatch):
    engine, release = locked_sqlite
    monkeypatch.setattr(engines, "DB_BACKOFF_SECONDS", 0.0)
    calls = []

    def write() -> None:
        calls.append(1)
        try:
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO t VALUES (1)"))
        except OperationalError as exc:
            assert "database is locked" in str(exc) and errors.is_transient(exc)
            release()  # the other writer finishes while this one waits to retry
            raise

    with_db_retries(write, "write")
    assert len(calls) == 2


def test_a_set_up_mistake_is_not_retried(monkeypatch):
    calls = []

    def action() -> None:
        calls.append(1)
        connect(NOTHING_LISTENS)()

    started = time.perf_counter()
    with pytest.raises(OperationalError):
        with_db_retries(action, "read warehouse")
    assert len(calls) == 1 and time.perf_counter() - started < engines.DB_BACKOFF_SECONDS


# --- a night never runs without its lock ---------------------------------------------


def unreachable_results(db_url: str) -> Engine:
    """A results database whose run lock cannot be taken: on PostgreSQL a database that is
    not there; on SQLite a lock file that cannot be opened (a folder in its place)."""
    if db_url.startswith("sqlite"):
        database = make_url(db_url).database
        Path(f"{database}.night-{AS_OF.isoformat()}.lock").mkdir()
        return make_engine(db_url)
    return make_engine(missing_database(db_url))


def test_a_night_whose_lock_cannot_be_taken_fails_and_reads_nothing(
    settings_env, db_url, smtp_sink
):
    settings = mail_settings(settings_env, db_url, smtp_sink)
    results_db = unreachable_results(db_url)
    warehouse = make_engine(db_url)
    summary = pipeline.run_nightly(
        settings, as_of=AS_OF, warehouse=warehouse, results_db=results_db
    )
    assert summary.status == "failed"
    assert summary.error.startswith("take the run lock: ")
    assert not summary.warehouse_read and "read warehouse" not in summary.seconds
    assert envelope_recipients(smtp_sink) == [[OPS]]  # a set-up failure: the operators
    assert "RUN FAILED" in smtp_sink.messages[0]["Subject"]
    warehouse.dispose()
    results_db.dispose()


# --- set-up failures go to the operators ---------------------------------------------


@pytest.mark.parametrize("ops", [True, False], ids=["ops_to", "ops_to_unset"])
def test_models_that_cannot_load_are_told_to_the_operators(
    settings_env, engine, db_url, smtp_sink, ops
):
    settings = mail_settings(settings_env, db_url, smtp_sink, ops=ops)
    summary = pipeline.run_nightly(settings, as_of=AS_OF, warehouse=engine, results_db=engine)
    assert summary.status == "failed" and not summary.warehouse_read
    assert summary.error.startswith("load models: ModelsUnavailableError: cannot load the models")
    with engine.connect() as connection:
        stored = connection.execute(select(scoring_runs.c.status, scoring_runs.c.error)).one()
    assert tuple(stored) == ("failed", summary.error)
    # unset, the operators are the night's list (silence must not read as all clear)
    assert envelope_recipients(smtp_sink) == [[OPS] if ops else [ONCALL]]


def test_run_nights_on_a_database_that_is_not_there_tells_the_operators_and_stops(
    settings_env, db_url, smtp_sink
):
    url = (
        f"sqlite:///{settings_env / 'no-such.db'}"
        if db_url.startswith("sqlite")
        else missing_database(db_url)
    )
    settings = mail_settings(settings_env, url, smtp_sink)
    with pytest.raises(DatabaseSetupError) as caught:
        next(pipeline.run_nights(settings, [AS_OF], send_email=True))
    assert str(caught.value).startswith("PRCRS_WAREHOUSE_URL (")
    assert envelope_recipients(smtp_sink) == [[OPS]]
    [notice] = smtp_sink.messages
    assert str(caught.value) in notice.get_body(("plain",)).get_content()
    with pytest.raises(DatabaseSetupError):  # --no-email: nobody is mailed
        next(pipeline.run_nights(settings, [AS_OF], send_email=False))
    assert len(smtp_sink.messages) == 1


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_scheduler_night_on_a_dropped_database_fails_without_raising(
    settings_env, db_url, smtp_sink, caplog
):
    settings = mail_settings(settings_env, missing_database(db_url), smtp_sink)
    caplog.set_level(logging.INFO)
    summary = pipeline.run_claimed_night(settings, "host-a")
    assert summary is not None and summary.status == "failed"
    assert "does not exist: create it (createdb)" in summary.error
    assert envelope_recipients(smtp_sink) == [[OPS]]
    assert "Traceback" not in caplog.text


def test_sqlite_nights_leave_no_lock_file_behind(settings, warehouse):
    """The run lock beside an SQLite results database is removed with the night: a year of
    nights leaves no year of files."""
    if warehouse.dialect.name != "sqlite":
        pytest.skip("SQLite's lock files")
    for night in (AS_OF, AS_OF + timedelta(days=1)):
        assert run_night(settings, warehouse, as_of=night).status == "succeeded"
    folder = Path(str(make_url(settings.warehouse_url).database)).parent
    assert list(folder.glob("*.lock")) == []
