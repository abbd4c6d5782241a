"""The benchmark's PostgreSQL database: built fresh, loaded with COPY, indexed, migrated.

`build_database` drops and re-creates the scratch database, creates the warehouse
contract tables (`cohort.create_warehouse_tables`), COPYs the synthetic cohort of
bench_generate.py in, rebuilds the contract's unique keys, adds the indexes below, runs
VACUUM ANALYZE and migrates the results schema into the same database (`migrations.migrate`).
`seed_history` then stores earlier nights, for the steady state of a site.

Indexes created after loading (what the nightly queries in sql/ use):

- cart_infusions(infusion_date): the active-cohort range filter;
- lab_results(collected_at): the lookback-window filter of latest_labs.sql;
- the contract's unique keys, lab_results(patient_id, analyte, collected_at) and
  crs_assessments(patient_id, assessed_on), rebuilt after COPY (latest_crs_grades.sql).
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import numpy as np
import psycopg
from bench_generate import WAREHOUSE_TABLES, Templates, generate_chunk
from sqlalchemy import (
    ColumnElement,
    Insert,
    Table,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy import make_url as parse_url

from prcrs_batch.devdata.cohort import create_warehouse_tables
from prcrs_batch.monitoring.watch import outcomes_from_scores
from prcrs_batch.results.engines import make_engine
from prcrs_batch.results.migrations import migrate
from prcrs_batch.results.tables import (
    crs_patient_nights,
    crs_risk_scores,
    prediction_outcomes,
    scoring_runs,
)
from prcrs_batch.warehouse.indexes import RECOMMENDED

CHUNK_PATIENTS = 1000
# README's contract indexes (prcrs_batch.warehouse.indexes) beyond the unique keys rebuilt
INDEXES = [r.sql() for r in RECOMMENDED if r.model == "contract" and "patient_id" not in r.columns]
# A stored earlier night keeps no report: nothing may look for its file or resend it.
NOT_COPIED_TO_HISTORY = {"report_path", "report_sent_at"}


def psycopg_url(url: str, database: str | None = None) -> str:
    """The URL as psycopg.connect takes it (no SQLAlchemy driver), optionally another database."""
    parsed = parse_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def recreate_database(admin_url: str, name: str) -> None:
    with psycopg.connect(psycopg_url(admin_url), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(psycopg_url(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_info(url: str) -> dict[str, str]:
    with psycopg.connect(psycopg_url(url)) as conn:
        version = _scalar(conn, "SHOW server_version")
        shared = _scalar(conn, "SHOW shared_buffers")
        work = _scalar(conn, "SHOW work_mem")
    host = parse_url(url).host or "local socket"
    return {"postgresql": f"{version} on {host} (shared_buffers {shared}, work_mem {work})"}


def _scalar(conn: psycopg.Connection, sql: str) -> Any:
    return conn.execute(sql).fetchone()[0]  # type: ignore[index]


def build_database(
    admin_url: str, name: str, patients: int, inactive: int, as_of: date, seed: int
) -> dict:
    """Re-create database `name`, load the warehouse into it and migrate the results schema.

    Returns {"counts": rows per table, "timings": seconds per step, "database_size": text}.
    """
    recreate_database(admin_url, name)
    url = psycopg_url(admin_url, name)
    built = load_warehouse(url, patients, inactive, as_of, seed)
    migrate(url)
    return built


def load_warehouse(url: str, patients: int, inactive: int, as_of: date, seed: int) -> dict:
    """Create the contract tables, COPY the synthetic cohort in, then index and analyse."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    engine = make_engine(url)
    create_warehouse_tables(engine)  # the contract's own DDL (types, unique keys)
    engine.dispose()
    rng = np.random.default_rng(seed)
    templates = Templates()
    counts = dict.fromkeys(WAREHOUSE_TABLES, 0)
    generate = copy = 0.0
    with psycopg.connect(url) as conn:
        # The unique keys are dropped during COPY and rebuilt afterwards (one sort each).
        keys = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE contype = 'u' AND conrelid::regclass::text = ANY(%s)",
            (list(WAREHOUSE_TABLES),),
        ).fetchall()
        for table, key, _ in keys:
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{key}"')
        next_id = 1
        for active, total in ((True, patients), (False, inactive)):
            for first in range(0, total, CHUNK_PATIENTS):
                n = min(CHUNK_PATIENTS, total - first)
                t0 = time.perf_counter()
                chunk = generate_chunk(rng, templates, next_id, n, as_of, active)
                next_id += n
                t1 = time.perf_counter()
                with conn.cursor() as cur:
                    for table, columns in WAREHOUSE_TABLES.items():
                        with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as pipe:
                            pipe.write(chunk[table])
                counts["lab_results"] += int(chunk["n_labs"])
                counts["cart_infusions"] += n
                generate += t1 - t0
                copy += time.perf_counter() - t1
        conn.commit()
        timings["generate data"] = generate
        timings["COPY"] = copy
        t0 = time.perf_counter()
        for table, key, definition in keys:
            conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{key}" {definition}')
        for statement in INDEXES:
            conn.execute(statement)
        conn.commit()
        timings["unique keys + indexes"] = time.perf_counter() - t0
        counts["crs_assessments"] = _scalar(conn, "SELECT count(*) FROM crs_assessments")
        size = _scalar(conn, "SELECT pg_size_pretty(pg_database_size(current_database()))")
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    timings["VACUUM ANALYZE"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start
    return {"counts": counts, "timings": timings, "database_size": size}


def seed_history(url: str, as_of: date, nights: int) -> None:
    """Store `nights` earlier nights: the as-of night's run, scores and patient nights,
    shifted back by k days, and the outcomes the nights before `as_of` would have judged
    (every ok prediction whose target date came before `as_of`, the outcome drawn as a coin
    with the prediction's risk, by a hash of patient, night and horizon so that every model
    of a patient-night shares it: AUROCs, intervals and leads are computed as at a real
    site; all-zero outcomes would skip them), so that the night after them judges one
    night's predictions, as at a site that has run for a while.

    Every column of scoring_runs, crs_risk_scores and crs_patient_nights
    (prcrs_batch.results.tables) is copied, except the keys, the dates (shifted), and the
    report columns (NOT_COPIED_TO_HISTORY). The as-of night itself is then removed (its
    run row, and with it its rows), so that the night run next is a new night, as at a
    site, not a rerun that also deletes a night's earlier rows.
    """
    engine = make_engine(url)
    with engine.begin() as conn:
        for k in range(1, nights + 1):
            run_id = literal(f"history-{k:02d}")
            conn.execute(
                _copy_night(scoring_runs, as_of, run_id=run_id, as_of=scoring_runs.c.as_of - k)
            )
            scores = crs_risk_scores.c
            conn.execute(
                _copy_night(
                    crs_risk_scores,
                    as_of,
                    run_id=run_id,
                    as_of=scores.as_of - k,
                    target_date=scores.target_date - k,
                )
            )
            nights_c = crs_patient_nights.c
            conn.execute(
                _copy_night(crs_patient_nights, as_of, run_id=run_id, as_of=nights_c.as_of - k)
            )
        s = crs_risk_scores.c
        conn.execute(
            outcomes_from_scores(
                and_(s.status == "ok", s.as_of < as_of, s.target_date < as_of),
                run_id=s.run_id,
                outcome=_coin(s.patient_id, s.as_of, s.horizon_days, s.calibrated_risk),
                judged_on=s.target_date,
            )
        )
        conn.execute(delete(scoring_runs).where(scoring_runs.c.as_of == as_of))  # cascades
    engine.dispose()
    with psycopg.connect(psycopg_url(url), autocommit=True) as conn:
        for table in (crs_risk_scores, scoring_runs, crs_patient_nights, prediction_outcomes):
            conn.execute(f"VACUUM ANALYZE {table.name}")


def _coin(
    patient: ColumnElement, night: ColumnElement, horizon: ColumnElement, risk: ColumnElement
) -> ColumnElement:
    """1 with probability `risk`, the same for every model of a patient, night and horizon
    (PostgreSQL's hashtext)."""
    key = func.concat(patient, "|", night, "|", horizon)
    draw = func.mod(func.abs(func.hashtext(key)), 10_000) / 10_000.0
    return case((draw < risk, 1), else_=0)


def _copy_night(table: Table, night: date, /, **shifted: ColumnElement) -> Insert:
    """INSERT INTO table SELECT ... FROM table WHERE as_of = night, `shifted` replacing columns.

    A primary key that is not replaced (the scores' surrogate id) is left to the database.
    """
    columns = [
        c
        for c in table.columns
        if (c.name in shifted or not c.primary_key) and c.name not in NOT_COPIED_TO_HISTORY
    ]
    chosen = [shifted.get(c.name, c) for c in columns]
    rows = select(*chosen).where(table.c.as_of == night)
    return insert(table).from_select([c.name for c in columns], rows)
