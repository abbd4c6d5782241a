"""Set-up mistakes, as hospital IT makes them: each gives one short line that names the
setting (or the table) and what to do, an exit code of 1, and never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import make_url

from alembic import command
from prcrs_batch.app.cli import main
from prcrs_batch.devdata.cohort import load_cohort
from prcrs_batch.results.engines import make_engine
from prcrs_batch.results.migrations import alembic_config, head_revision
from prcrs_batch.settings import load_settings, unknown_variables
from tests.support import TEST_DATA
from tests.support.nightly import AS_OF, COHORT

postgres_only = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
NOTHING_LISTENS = "postgresql://prcrs_job:pw-Secret-9@127.0.0.1:1/prcrs"  # port 1: refused


def one_line(result: Result) -> str:
    """The command failed with exactly one short line and no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert len(lines[0]) < 400, lines[0]
    return lines[0]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_init_db_against_a_server_that_is_not_there(settings_env, monkeypatch):
    monkeypatch.setenv("PRCRS_RESULTS_URL", NOTHING_LISTENS)
    line = one_line(invoke("init-db"))
    assert "PRCRS_RESULTS_URL" in line and "cannot reach the database server" in line
    assert "pw-Secret-9" not in line and "127.0.0.1:1" in line


def test_init_db_names_the_migrator_url_when_it_is_used(settings_env, monkeypatch):
    monkeypatch.setenv("PRCRS_MIGRATOR_URL", NOTHING_LISTENS)
    assert "PRCRS_MIGRATOR_URL" in one_line(invoke("init-db"))


def test_load_cohort_against_a_server_that_is_not_there(settings_env, monkeypatch):
    monkeypatch.setenv("PRCRS_WAREHOUSE_URL", NOTHING_LISTENS)
    line = one_line(invoke("load-cohort", str(TEST_DATA / "tiny_cohort.csv")))
    assert "PRCRS_WAREHOUSE_URL" in line and "check the host and port" in line


@postgres_only
def test_init_db_on_a_missing_database(settings_env, monkeypatch, db_url):
    missing = f"prcrs_missing_{uuid.uuid4().hex[:8]}"
    url = make_url(db_url).set(database=missing).render_as_string(hide_password=False)
    monkeypatch.setenv("PRCRS_RESULTS_URL", url)
    line = one_line(invoke("init-db"))
    assert f"the database {missing} does not exist" in line and "createdb" in line


@postgres_only
def test_load_cohort_with_a_login_that_does_not_exist(settings_env, monkeypatch, db_url):
    url = make_url(db_url).set(username=f"nobody_{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("PRCRS_WAREHOUSE_URL", url.render_as_string(hide_password=False))
    line = one_line(invoke("load-cohort", str(TEST_DATA / "tiny_cohort.csv")))
    assert "PRCRS_WAREHOUSE_URL" in line and "login refused" in line


def test_init_db_says_what_it_did(settings_env, monkeypatch, db_url):
    monkeypatch.setenv("PRCRS_RESULTS_URL", db_url)
    command.upgrade(alembic_config(db_url), "0001")
    first = invoke("init-db")
    assert first.exit_code == 0, first.output
    assert f"upgraded the results schema from 0001 to {head_revision()}" in first.output
    second = invoke("init-db")
    assert f"already at the newest revision {head_revision()}" in second.output


def test_init_db_on_an_empty_database_says_it_created_the_schema(settings_env, monkeypatch):
    monkeypatch.setenv("PRCRS_RESULTS_URL", "sqlite:///results.db")
    result = invoke("init-db")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"created the results schema (revision {head_revision()})")


def test_run_before_init_db_says_run_init_db_before_scoring(settings_env, monkeypatch, db_url):
    engine = make_engine(db_url)
    load_cohort(engine, COHORT)  # a warehouse, but no results schema
    engine.dispose()
    monkeypatch.setenv("PRCRS_WAREHOUSE_URL", db_url)
    monkeypatch.setenv("PRCRS_MODEL_DIR", str(settings_env / "no-models"))  # never reached
    line = one_line(invoke("run", "--as-of", AS_OF.isoformat(), "--no-email"))
    assert "PRCRS_RESULTS_URL" in line and "no results schema: run `prcrs-batch init-db`" in line


def test_run_on_an_old_schema_says_run_init_db(settings_env, monkeypatch, db_url):
    command.upgrade(alembic_config(db_url), "0001")
    monkeypatch.setenv("PRCRS_WAREHOUSE_URL", db_url)
    line = one_line(invoke("run", "--no-email"))
    assert f"at revision 0001, this release needs {head_revision()}" in line
    assert "run `prcrs-batch init-db`" in line


def test_misspelt_warehouse_variable_is_named_and_no_empty_database_is_made(settings_env):
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PRCRS_")}
    env["PRCRS_WAREHOUSE_ULR"] = "postgresql://prcrs_job@warehouse.example.org/warehouse"
    result = subprocess.run(
        [sys.executable, "-m", "prcrs_batch", "run", "--no-email"],
        cwd=settings_env,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.strip() == (
        "Error: configuration error: PRCRS_WAREHOUSE_ULR is not a setting (did you mean "
        "PRCRS_WAREHOUSE_URL?): correct or remove it"
    )
    assert not (settings_env / "prcrs.db").exists()


def test_unknown_variables_in_dotenv_are_named_with_the_closest_setting(settings_env):
    (settings_env / ".env").write_text("PRCRS_SMTP_HOTS=mail\nPRCRS_DEVICE=cpu\nOTHER=1\n")
    assert unknown_variables({}) == [
        "PRCRS_SMTP_HOTS is not a setting and is ignored (did you mean PRCRS_SMTP_HOST?)"
    ]


def test_recipients_separated_by_semicolons_are_two_addresses(settings_env, monkeypatch):
    monkeypatch.setenv("PRCRS_ALERT_TO", "a@x.org; b@x.org")
    assert load_settings().alert_to == ["a@x.org", "b@x.org"]


def test_a_url_that_is_not_one_names_the_variable_not_the_password(settings_env, monkeypatch):
    monkeypatch.setenv("PRCRS_RESULTS_URL", "postgress://u:pw-Secret-9@db/prcrs")
    line = one_line(invoke("init-db"))
    assert "PRCRS_RESULTS_URL: not a database URL" in line and "pw-Secret-9" not in line


def test_schedule_does_not_start_on_a_missing_schema(settings_env, monkeypatch, db_url):
    engine = make_engine(db_url)
    load_cohort(engine, COHORT)
    engine.dispose()
    monkeypatch.setenv("PRCRS_WAREHOUSE_URL", db_url)
    assert "no results schema: run `prcrs-batch init-db`" in one_line(invoke("schedule"))


def test_a_misspelt_setting_stops_run_naming_the_closest_one(settings_env, monkeypatch, db_url):
    monkeypatch.setenv("PRCRS_WAREHOUSE_URL", db_url)
    monkeypatch.setenv("PRCRS_ALERT_THRESHHOLD", "0.4")
    line = one_line(invoke("run", "--no-email"))
    assert line == (
        "Error: configuration error: PRCRS_ALERT_THRESHHOLD is not a setting (did you mean "
        "PRCRS_ALERT_THRESHOLD?): correct or remove it"
    )


# --- permanent set-up mistakes stop `run` at once, before the models load --------------


def run_subprocess(cwd, **variables: str) -> tuple[subprocess.CompletedProcess, float]:
    """`prcrs-batch run --no-email` in a process of its own (every line it prints counts),
    with only `variables` set among PRCRS_*, and how long it took."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PRCRS_")}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "prcrs_batch", "run", "--no-email"],
        cwd=cwd,
        env=env | variables,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, time.perf_counter() - started


@postgres_only
def test_run_on_a_database_that_does_not_exist_says_so_in_one_line_at_once(settings_env, db_url):
    missing = f"prcrs_missing_{uuid.uuid4().hex[:8]}"
    url = make_url(db_url).set(database=missing).render_as_string(hide_password=False)
    result, seconds = run_subprocess(
        settings_env,
        PRCRS_WAREHOUSE_URL=url,
        PRCRS_MODEL_DIR=str(settings_env / "no-models"),  # loading them would fail loudly
    )
    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 1
    assert len(output) <= 3, output
    assert output[-1] == (
        f"Error: PRCRS_WAREHOUSE_URL ({make_url(url).render_as_string(hide_password=True)}): "
        f"the database {missing} does not exist: create it (createdb) or correct the database "
        "name in the URL"
    )
    assert "models" not in result.stderr and "retry" not in result.stderr
    assert seconds < 30  # the process's imports included; it took 18 s with the retries


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (NOTHING_LISTENS, "the connection was refused"),
        (
            "postgresql://prcrs_job@no-such-host.invalid/prcrs",
            "the host no-such-host.invalid is not known",
        ),
    ],
)
def test_run_on_a_server_that_cannot_be_reached_says_so_before_the_models(
    settings_env, monkeypatch, url, says
):
    monkeypatch.setenv("PRCRS_WAREHOUSE_URL", url)
    monkeypatch.setenv("PRCRS_MODEL_DIR", str(settings_env / "no-models"))
    started = time.perf_counter()
    line = one_line(invoke("run", "--no-email"))
    assert time.perf_counter() - started < 10  # no retries
    assert line.startswith("Error: PRCRS_WAREHOUSE_URL (") and says in line
    assert "pw-Secret-9" not in line


@postgres_only
def test_run_with_a_login_that_does_not_exist_names_the_results_url(
    settings_env, monkeypatch, db_url
):
    monkeypatch.setenv("PRCRS_WAREHOUSE_URL", db_url)
    nobody = make_url(db_url).set(username=f"nobody_{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("PRCRS_RESULTS_URL", nobody.render_as_string(hide_password=False))
    line = one_line(invoke("run", "--no-email"))
    assert "PRCRS_RESULTS_URL" in line and "login refused" in line
    assert "create the role or correct the user name" in line


# --- monitor: one line before init-db or on a wrong URL ------------------------------


def test_monitor_before_init_db_says_run_init_db(settings_env, monkeypatch, db_url):
    monkeypatch.setenv("PRCRS_RESULTS_URL", db_url)
    line = one_line(invoke("monitor"))
    assert "PRCRS_RESULTS_URL" in line and "run `prcrs-batch init-db`" in line
    assert not list(settings_env.glob("*.db"))  # no empty SQLite file made


@pytest.mark.parametrize("url", [NOTHING_LISTENS, "sqlite:///no/such/folder/prcrs.db"])
def test_monitor_on_a_wrong_url_is_one_line(settings_env, monkeypatch, url):
    monkeypatch.setenv("PRCRS_RESULTS_URL", url)
    line = one_line(invoke("monitor"))
    assert "PRCRS_RESULTS_URL" in line and "pw-Secret-9" not in line


@pytest.mark.parametrize("command", ["run", "backfill"])
def test_json_is_described_as_one_object_per_night(command):
    text = " ".join(invoke(command, "--help").output.split())
    assert "One JSON object per night (JSON lines on standard output)" in text
    assert "per patient" not in text
