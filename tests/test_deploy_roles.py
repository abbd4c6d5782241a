"""deploy/: roles.sql on a real PostgreSQL (each role can do its job and nothing more),
and env.example (every setting listed, and the file loads).

Each test gets a fresh database (conftest's `db_url`, PostgreSQL only) with the results
schema migrated and the warehouse tables created, then applies roles.sql twice with psql
(it must be idempotent). Roles are cluster-wide, so every test uses its own role names
(psql variables) and drops them afterwards. The checks switch roles with SET ROLE on a
superuser connection, so they do not depend on how pg_hba.conf authenticates logins.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from psycopg import sql
from sqlalchemy import make_url, text

from prcrs_batch.app.checks import check_warehouse
from prcrs_batch.devdata.cohort import LoadError, create_warehouse_tables
from prcrs_batch.devdata.omop import load_cohort_omop
from prcrs_batch.results import locks, nights
from prcrs_batch.results.engines import make_engine
from prcrs_batch.results.migrations import migrate, schema_state
from prcrs_batch.settings import Settings, load_settings
from prcrs_batch.warehouse.code_lists import read_code_lists
from prcrs_batch.warehouse.queries import (
    Source,
    Window,
    active_cohort,
    latest_crs_grades,
    latest_labs,
)
from tests.support.nightly import AS_OF, COHORT

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
ROLES_SQL = DEPLOY / "roles.sql"
WAREHOUSE_TABLES = ("cart_infusions", "lab_results", "crs_assessments")
RESULTS_TABLES = (
    "scoring_runs",
    "crs_risk_scores",
    "crs_patient_nights",
    "crs_risk_explanations",
    "model_performance",
    "input_drift",
    "data_quality_issues",
    "night_claims",
)
VIEWS = (
    "crs_risk_latest",
    "crs_risk_newest_per_patient",
    "crs_patient_nights_sent",
    "model_performance_latest",
    "input_drift_latest",
)

postgres_only = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _apply_roles(url: str, roles: dict[str, str], **extra: str) -> None:
    settings = roles | extra
    variables = [arg for name, value in settings.items() for arg in ("-v", f"{name}={value}")]
    subprocess.run(
        [
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            *variables,
            "-d",
            _libpq(url),
            "-f",
            str(ROLES_SQL),
        ],
        check=True,
        capture_output=True,
        text=True,
    )


@pytest.fixture
def roles(db_url: str, request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Unique role names, applied by roles.sql to a migrated database.

    Parametrised indirectly (`["warehouse"]`), it applies that scope instead of all.
    """
    if shutil.which("psql") is None:
        pytest.skip("psql not installed")
    tag = uuid.uuid4().hex[:8]
    names = {name: f"prcrs_{name}_{tag}" for name in ("reader", "writer", "migrator", "bi")}
    migrate(db_url)
    engine = make_engine(db_url)
    create_warehouse_tables(engine)
    with engine.connect() as connection:
        if not connection.execute(
            text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        ).scalar():
            pytest.skip("TEST_DATABASE_URL's user is not a superuser: cannot SET ROLE to check")
    engine.dispose()
    try:
        scope = getattr(request, "param", "all")
        _apply_roles(db_url, names, scope=scope)
        yield names
    finally:
        with psycopg.connect(_libpq(db_url), autocommit=True) as conn:
            existing = [
                r
                for (r,) in conn.execute(
                    "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(names.values()),)
                )
            ]
            if existing:
                idents = sql.SQL(", ").join(sql.Identifier(r) for r in existing)
                conn.execute(sql.SQL("DROP OWNED BY {}").format(idents))
                conn.execute(sql.SQL("DROP ROLE {}").format(idents))


@pytest.fixture
def role_names(db_url: str) -> Iterator[dict[str, str]]:
    """Unique names for the four roles and a loader login (created NOLOGIN), dropped after
    the test; nothing applied yet (the documented order starts on an empty database)."""
    if shutil.which("psql") is None:
        pytest.skip("psql not installed")
    tag = uuid.uuid4().hex[:8]
    names = {n: f"prcrs_{n}_{tag}" for n in ("reader", "writer", "migrator", "bi", "loader")}
    with psycopg.connect(_libpq(db_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(names["loader"])))
    try:
        yield names
    finally:
        with psycopg.connect(_libpq(db_url), autocommit=True) as conn:
            existing = [
                r
                for (r,) in conn.execute(
                    "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(names.values()),)
                )
            ]
            for role in existing:  # one by one: default privileges name two of them
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            for role in existing:
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _as_role(db_url: str, role: str) -> str:
    """The URL, its sessions running as `role` (as a login that is that role would; libpq's
    options, so that migrations and loaders create what that role owns)."""
    return (
        make_url(db_url)
        .update_query_dict({"options": f"-crole={role}"})
        .render_as_string(hide_password=False)
    )


def _as(db_url: str, role: str) -> psycopg.Connection:
    conn = psycopg.connect(_libpq(db_url), autocommit=True)
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
    return conn


def _denied(conn: psycopg.Connection, statement: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


RUN = (
    "INSERT INTO scoring_runs (run_id, as_of, started_at, status, n_patients, n_scores, "
    "n_alerts, n_data_issues) VALUES ('r0', '2026-11-25', now(), 'succeeded', 0, 0, 0, 0)"
)


@postgres_only
def test_reader_runs_the_nightly_queries_and_writes_nothing(db_url, roles):
    engine = make_engine(db_url)
    window = Window(as_of=date(2026, 11, 26), active_days=30, lookback_hours=72)
    with engine.begin() as connection:
        connection.execute(text(f'SET LOCAL ROLE "{roles["reader"]}"'))
        assert active_cohort(connection=connection, window=window).empty
        assert latest_labs(connection=connection, window=window).empty
        assert latest_crs_grades(connection=connection, window=window).empty
    engine.dispose()
    with _as(db_url, roles["reader"]) as conn:
        for table in WAREHOUSE_TABLES:
            conn.execute(f"SELECT count(*) FROM {table}")
        _denied(conn, "INSERT INTO lab_results VALUES ('p', now(), 'il6', '1', 'pg/mL')")
        _denied(conn, "UPDATE cart_infusions SET age = 1")
        _denied(conn, "DELETE FROM crs_assessments")
        _denied(conn, "TRUNCATE lab_results")
        _denied(conn, "CREATE TABLE reader_table (x int)")
        for table in RESULTS_TABLES:
            _denied(conn, f"SELECT * FROM {table}")


@postgres_only
def test_writer_replaces_a_night_but_has_no_ddl(db_url, roles):
    engine = make_engine(db_url)
    scores = pd.DataFrame(
        [["p1", "all", h, 0.2, 0.25, "ok", 42, 42, ""] for h in (1, 2, 3)],
        columns=nights.SCORE_COLUMNS,
    )
    issues = pd.DataFrame(
        [["p1", "il6", datetime(2026, 11, 26, 6), "hemolyzed", "pg/mL", "no_number"]],
        columns=["patient_id", "analyte", "collected_at", "raw_value", "unit", "reason"],
    )
    now = datetime.now(timezone.utc)
    for run_id in ("run-1", "run-2"):  # the second night replaces the first (DELETE + INSERT)
        run = nights.RunInfo(
            run_id=run_id, as_of=date(2026, 11, 26), started_at=now, data_cutoff=now,
            finished_at=now, status="succeeded", n_patients=1, n_scores=3, n_alerts=0,
            n_data_issues=1, model_version="test",
        )  # fmt: skip
        with engine.begin() as connection:
            connection.execute(text(f'SET LOCAL ROLE "{roles["writer"]}"'))
            nights.replace_night(connection=connection, run=run, scores=scores, issues=issues)
            nights.mark_report(connection=connection, run_id=run_id, path="/tmp/r.html")
            assert locks.claim_night(
                connection=connection, as_of=date(2026, 11, 26), claimed_by="host", now=now
            ) is (run_id == "run-1")
            assert len(nights.stored_scores(connection=connection, as_of=date(2026, 11, 26))) == 3
    engine.dispose()
    with _as(db_url, roles["writer"]) as conn:
        assert conn.execute("SELECT count(*) FROM crs_risk_latest").fetchone() == (3,)
        _denied(conn, "CREATE TABLE writer_table (x int)")
        _denied(conn, "ALTER TABLE crs_risk_scores ADD COLUMN x int")
        _denied(conn, "CREATE INDEX ix_writer ON crs_risk_scores (probability)")
        _denied(conn, "DROP TABLE night_claims")
        _denied(conn, "TRUNCATE crs_risk_scores")
        conn.execute("SELECT version_num FROM alembic_version")  # the pre-night check
        _denied(conn, "UPDATE alembic_version SET version_num = 'x'")
        _denied(conn, "SELECT * FROM lab_results")
        _denied(
            conn,
            "INSERT INTO cart_infusions (patient_id, infusion_date) VALUES ('p', '2026-11-01')",
        )


@postgres_only
def test_bi_reads_scores_and_runs_only(db_url, roles):
    with _as(db_url, roles["bi"]) as conn:
        readable = ("crs_risk_scores", "crs_patient_nights", "crs_risk_explanations", *VIEWS)
        for relation in (*readable, "scoring_runs"):
            conn.execute(f"SELECT * FROM {relation}")
        for relation in (
            "data_quality_issues",
            "night_claims",
            "alembic_version",
            *WAREHOUSE_TABLES,
        ):
            _denied(conn, f"SELECT * FROM {relation}")
        _denied(conn, RUN)
        _denied(conn, "CREATE TABLE bi_table (x int)")


@postgres_only
def test_migrator_owns_the_results_schema(db_url, roles):
    _apply_roles(db_url, roles)  # idempotent: a second run changes nothing and does not fail
    with psycopg.connect(_libpq(db_url)) as conn:
        owners = dict(
            conn.execute(
                "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c"
                " WHERE c.relname = ANY(%s)",
                ([*RESULTS_TABLES, *VIEWS, "alembic_version"],),
            ).fetchall()
        )
    assert set(owners.values()) == {roles["migrator"]} and len(owners) == 14
    with _as(db_url, roles["migrator"]) as conn:
        conn.execute("ALTER TABLE crs_risk_scores ADD COLUMN migrated int")
        conn.execute("CREATE TABLE later_results (id serial PRIMARY KEY)")
        _denied(conn, "SELECT * FROM lab_results")
    with _as(db_url, roles["writer"]) as conn:  # default privileges cover later tables
        conn.execute("INSERT INTO later_results DEFAULT VALUES")


def _env_example() -> dict[str, str]:
    lines = (DEPLOY / "env.example").read_text("utf-8").splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {key.strip(): value.strip() for key, value in pairs}


def test_env_example_lists_every_setting_and_loads(settings_env, monkeypatch):
    env = _env_example()
    expected = {f"PRCRS_{name.upper()}" for name in Settings.model_fields}
    assert expected - set(env) == set(), "settings missing from deploy/env.example"
    assert set(env) - expected == set(), "unknown keys in deploy/env.example"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.results_database_url.startswith("postgresql+psycopg://prcrs_job@")
    assert ":" not in settings.results_database_url.split("//", 1)[1].split("@")[0]  # no password
    assert settings.email_enabled and len(settings.alert_to) == 2


@postgres_only
@pytest.mark.parametrize("roles", ["warehouse"], indirect=True)
def test_warehouse_scope_grants_the_reader_only(db_url, roles):
    """scope=warehouse, for a hospital warehouse: reader grants, nothing else changes."""
    with psycopg.connect(_libpq(db_url)) as conn:
        owner = conn.execute(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'scoring_runs'"
        )
        assert owner.fetchone()[0] != roles["migrator"]
    with _as(db_url, roles["reader"]) as conn:
        conn.execute("SELECT count(*) FROM lab_results")
    with _as(db_url, roles["writer"]) as conn:
        _denied(conn, "SELECT * FROM scoring_runs")


@postgres_only
def test_unknown_scope_is_refused(db_url):
    if shutil.which("psql") is None:
        pytest.skip("psql not installed")
    with pytest.raises(subprocess.CalledProcessError) as failed:  # refused before any CREATE ROLE
        _apply_roles(db_url, {"reader": f"prcrs_never_{uuid.uuid4().hex[:8]}"}, scope="everything")
    assert "scope must be all, warehouse or results" in failed.value.stderr


GROUPS = ("reader", "writer", "migrator", "bi")


@postgres_only
def test_documented_order_on_an_omop_site_with_a_results_schema(db_url, role_names):
    """roles.sql first (warehouse cdm, results schema results, model omop, the loader
    named), then init-db as the migrator and load-cohort as the loader: the job's roles
    read the CDM and write the results without a rerun; BI gets its tables on the rerun."""
    names = role_names
    groups = {g: names[g] for g in GROUPS}
    with psycopg.connect(_libpq(db_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA cdm AUTHORIZATION {}").format(
            sql.Identifier(names["loader"])))  # fmt: skip
    site = {"warehouse_schema": "cdm", "results_schema": "results", "model": "omop"}
    _apply_roles(db_url, groups, **site, loader=names["loader"])
    migrate(_as_role(db_url, names["migrator"]), "results")  # init-db, as the migrator
    job = make_engine(_as_role(db_url, names["reader"]))
    with pytest.raises(LoadError, match="never as the nightly job's read-only one"):
        load_cohort_omop(job, COHORT, schema="cdm")  # the job's login loads nothing
    job.dispose()
    loader = make_engine(_as_role(db_url, names["loader"]))
    load_cohort_omop(loader, COHORT, schema="cdm")  # load-cohort, as the loader
    loader.dispose()

    reader = make_engine(_as_role(db_url, names["reader"]))
    source = Source(model="omop", schema="cdm", codes=read_code_lists())
    window = Window(as_of=AS_OF, active_days=30, lookback_hours=72, source=source)
    with reader.connect() as connection:
        assert not active_cohort(connection=connection, window=window).empty
        assert not latest_labs(connection=connection, window=window).empty
        assert not latest_crs_grades(connection=connection, window=window).empty
    reader.dispose()
    writer = make_engine(_as_role(db_url, names["writer"]), "results")
    state = schema_state(writer)
    assert state.problem is None and state.current is not None
    writer.dispose()
    with _as(db_url, names["reader"]) as conn:
        _denied(conn, "DELETE FROM cdm.person")
        _denied(conn, "SELECT * FROM results.scoring_runs")
    with _as(db_url, names["writer"]) as conn:
        conn.execute(RUN.replace("scoring_runs", "results.scoring_runs"))
        _denied(conn, "SELECT * FROM cdm.measurement")
        _denied(conn, "CREATE TABLE results.writer_table (x int)")
    with _as(db_url, names["bi"]) as conn:
        _denied(conn, "SELECT * FROM results.crs_risk_scores")  # until roles.sql runs again
    _apply_roles(db_url, groups, **site, loader=names["loader"])
    with _as(db_url, names["bi"]) as conn:
        conn.execute("SELECT * FROM results.crs_risk_latest")
        _denied(conn, "SELECT * FROM results.data_quality_issues")
    with psycopg.connect(_libpq(db_url)) as conn:
        owner = conn.execute("SELECT pg_get_userbyid(nspowner) FROM pg_namespace"
                             " WHERE nspname = 'results'").fetchone()  # fmt: skip
        public = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert owner == (names["migrator"],) and public.fetchone() == (0,)


@postgres_only
def test_tables_made_after_roles_sql_by_another_login_are_named(db_url, role_names):
    """Tables created after roles.sql by a login it did not name (here the superuser) leave
    the job without rights: check's warehouse line and the results check say to run
    roles.sql again, and after the rerun both pass."""
    groups = {g: role_names[g] for g in GROUPS}
    _apply_roles(db_url, groups, results_schema="results")
    engine = make_engine(db_url)
    create_warehouse_tables(engine)
    engine.dispose()
    migrate(db_url, "results")
    reader = make_engine(_as_role(db_url, groups["reader"]))
    writer = make_engine(_as_role(db_url, groups["writer"]), "results")
    try:
        line = check_warehouse(reader, db_url)
        assert not line.ok and "run deploy/roles.sql again" in line.detail, line.detail
        problem = schema_state(writer).problem or ""
        assert "crs_risk_scores" in problem and "run deploy/roles.sql again" in problem
        _apply_roles(db_url, groups, results_schema="results")
        assert check_warehouse(reader, db_url).ok
        assert schema_state(writer).problem is None
    finally:
        reader.dispose()
        writer.dispose()
