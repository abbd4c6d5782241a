"""Hostile warehouse and faults (issue 10): no single bad row, odd view type, slow server,
clashing run or broken artefact may cost the night.

Each case asserts that nothing good was lost (the other values and patients score as
without it), nothing partial was written (one run row per night, no half night), every
decision was recorded (a data_quality_issues row with its reason, a note, a run row) and
nothing leaked (no patient id or value in the logs). Cohorts are tiny: the two patients of
the tiny cohort active on its busiest night, moved to today in a time zone where it is
about noon, so that "a result from the future" is a result later today.

The lab-row and patient cases share one hostile night per backend (`hostile`); the view
types, clashes, servers, folders and artefacts each get their own database.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy import Engine, select, text

from prcrs_batch.app import pipeline
from prcrs_batch.app.cli import main
from prcrs_batch.devdata.cohort import warehouse_rows
from prcrs_batch.features import cleaning
from prcrs_batch.modeling import store
from prcrs_batch.nightly import scoring
from prcrs_batch.report import mailer
from prcrs_batch.report.render import Report
from prcrs_batch.results import locks, nights
from prcrs_batch.results.engines import make_engine
from prcrs_batch.results.migrations import migrate
from prcrs_batch.results.tables import (
    crs_risk_scores,
    data_quality_issues,
    night_claims,
    scoring_runs,
)
from prcrs_batch.settings import Settings, load_settings
from prcrs_batch.task import row_keys
from prcrs_batch.task.data_day import current_data_day
from tests.support.databases import fresh_database
from tests.support.nightly import AS_OF, COHORT, count_rows
from tests.support.smtp import free_port

PATIENTS = ("CART-1001", "CART-1012")  # the tiny cohort's two patients active on AS_OF
VICTIM = "CART-1001"  # the patient the hostile lab rows are aimed at
LONG_ID = "L" * 500  # the contract says TEXT: a 500-character id is an id
HUGE_ID = "H" * 5000  # over row_keys.MAX_PATIENT_ID_BYTES: cannot key the results
BLANK_ID = "   "
MEGABYTE_VALUE = "1" * 1_000_000 + " pg/mL"  # stalled the old number pattern for minutes


# --- a contract warehouse whose column types the test chooses --------------------------


def local_zone() -> str:
    """An Etc/GMT zone where it is about noon now (never near midnight during a test)."""
    offset = 12 - datetime.now(timezone.utc).hour  # hours east of UTC
    offset = offset - 24 if offset > 14 else offset
    return f"Etc/GMT{-offset:+d}" if offset else "UTC"


def contract_rows(as_of: date) -> dict[str, list[dict]]:
    """The two patients active on AS_OF, moved so that AS_OF is `as_of`; nothing later."""
    shift = as_of - AS_OF
    rows = warehouse_rows(COHORT[COHORT["patient_id"].isin(PATIENTS)])
    for row in rows["cart_infusions"]:
        row["infusion_date"] += shift
    labs_rows = [
        {**row, "collected_at": row["collected_at"] + shift}
        for row in rows["lab_results"]
        if row["collected_at"].date() <= AS_OF
    ]
    grades = [
        {**row, "assessed_on": row["assessed_on"] + shift}
        for row in rows["crs_assessments"]
        if row["assessed_on"] <= AS_OF
    ]
    return {
        "cart_infusions": rows["cart_infusions"],
        "lab_results": labs_rows,
        "crs_assessments": grades,
    }


def create_contract(
    engine: Engine,
    *,
    id_type: str = "TEXT",
    stamp_type: str = "TIMESTAMP",
    value_type: str = "TEXT",
    grades_table: bool = True,
) -> None:
    tables = [
        f"cart_infusions (patient_id {id_type}, infusion_date DATE, sex TEXT, age INTEGER)",
        f"lab_results (patient_id {id_type}, collected_at {stamp_type}, analyte TEXT, "
        f"value {value_type}, unit TEXT)",
    ]
    if grades_table:
        tables.append(f"crs_assessments (patient_id {id_type}, assessed_on DATE, grade INTEGER)")
    with engine.begin() as connection:
        for table in tables:
            connection.execute(text(f"CREATE TABLE {table}"))


def insert(engine: Engine, table: str, rows: list[dict]) -> None:
    if rows:
        target = sa.table(table, *[sa.column(name) for name in rows[0]])
        with engine.begin() as connection:
            connection.execute(target.insert(), rows)


def fill(engine: Engine, rows: dict[str, list[dict]]) -> None:
    for table, table_rows in rows.items():
        insert(engine, table, table_rows)


def hostile_settings(url: str, models: Path, folder: Path, **extra: Any) -> Settings:
    return load_settings(
        warehouse_url=url,
        model_dir=models,
        report_dir=folder / "reports",
        device="cpu",
        timezone=local_zone(),
        **extra,
    )


def night(settings: Settings, engine: Engine, bundle: Any, **kwargs: Any) -> pipeline.RunSummary:
    """One night for today, warehouse and results in the same database."""
    return pipeline.run_nightly(
        settings,
        as_of=settings.today(),
        warehouse=engine,
        results_db=engine,
        bundle=bundle,
        **kwargs,
    )


def scores(engine: Engine, as_of: date) -> pd.DataFrame:
    with engine.connect() as connection:
        return nights.stored_scores(connection=connection, as_of=as_of)


def issues(engine: Engine) -> pd.DataFrame:
    with engine.connect() as connection:
        rows = connection.execute(select(data_quality_issues)).mappings().all()
    return pd.DataFrame([dict(r) for r in rows])


def runs(engine: Engine) -> list[dict]:
    with engine.connect() as connection:
        return [dict(r) for r in connection.execute(select(scoring_runs)).mappings()]


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Everything the job logs, at every level, as text."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@pytest.fixture(scope="module")
def bundle(quick_models: Path) -> store.ModelBundle:
    """The quick models loaded once for the module (each night takes them as run_nights does)."""
    return store.load_models(quick_models, device="cpu")


@pytest.fixture(autouse=True, scope="module")
def _no_site_settings() -> Iterator[None]:
    """No PRCRS_* of the machine running the tests (settings come from each test)."""
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith("PRCRS_"):
                patch.delenv(key)
        yield


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fresh(backend: str, tmp_path: Path, quick_models: Path) -> Iterator[tuple[Settings, Engine]]:
    """A migrated empty database and settings for today's night on it."""
    with fresh_database(backend, tmp_path) as url:
        migrate(url)
        engine = make_engine(url)
        try:
            yield hostile_settings(url, quick_models, tmp_path), engine
        finally:
            engine.dispose()


# --- one hostile night per backend: the lab-row and patient cases ----------------------


@dataclass
class Outcome:
    backend: str
    as_of: date
    summary: pipeline.RunSummary
    baseline: pd.DataFrame  # the night's scores before the hostile rows were added
    scores: pd.DataFrame
    issues: pd.DataFrame
    runs: list[dict]
    log: str
    report_html: str


def _hostile_labs(as_of: date, now: datetime, backend: str) -> list[dict]:
    """The hostile lab rows: (analyte of the victim's, later than its valid result)."""
    later = datetime.combine(as_of, datetime.min.time()) + timedelta(hours=9)  # after 06:00
    six = later - timedelta(hours=3)  # the victim's valid results of today
    rows = [
        ("il6", later, MEGABYTE_VALUE, "pg/mL"),
        ("il10", later, "１２", "pg/mL"),  # full-width digits
        ("il2", later, "١٢", "pg/mL"),  # Arabic-Indic digits
        ("il4", later, "hemolyzed", "pg/mL"),
        ("ldh", now + timedelta(minutes=30), "250", "U/L"),  # clock ahead, later today
        ("alt", datetime(9999, 12, 31, 23, 0), "30", "U/L"),  # far future
        ("ast", later, "30", "furlongs"),
        ("alp", later, "30", "U/L" * 400_000),  # a megabyte-long unit
        ("sodium", later, "14.5", "mmol/L"),  # decimal shift: implausible
        ("potassium", later, "4.0", "mmol/L"),  # conflicting duplicates at the same time
        ("potassium", later, "6.5", "mmol/L"),
        ("glucose", later, "+5e999", "mmol/L"),  # overflows to infinity
        ("albumin", later, "<", "g/L"),
        ("calcium", later, "-1", "mmol/L"),
        ("chloride", later, "<script>alert(1)</script>", "mmol/L"),
        ("ggt", None, "40", "U/L"),  # no collection time
        ("X" * 108, later, "5", None),  # a 108-character unknown code
        ("il-6", later, "5", "pg/mL"),  # not a spelling of il6 that is plain
        (None, later, "5", None),
    ]
    if backend == "sqlite":  # PostgreSQL text cannot hold NUL at all
        rows.append(("uric_acid", later, "3\x000", "umol/L"))
    out = [
        {"patient_id": VICTIM, "collected_at": t, "analyte": a, "value": v, "unit": u}
        for a, t, v, u in rows
    ]
    # The same results as today's valid ones, spelled " IL17A " and "TNF_Alpha": duplicates.
    out += [
        {"patient_id": VICTIM, "collected_at": six, "analyte": a, "value": None, "unit": None}
        for a in (" IL17A ", "TNF_Alpha")
    ]
    out.append(
        {"patient_id": None, "collected_at": later, "analyte": "crp", "value": "9", "unit": None}
    )
    return out


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hostile(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    quick_models: Path,
    bundle: store.ModelBundle,
) -> Iterator[Outcome]:
    folder = tmp_path_factory.mktemp(f"hostile-{request.param}")
    with fresh_database(request.param, folder) as url:
        migrate(url)
        engine = make_engine(url)
        settings = hostile_settings(url, quick_models, folder)
        as_of = settings.today()
        now = datetime.now(ZoneInfo(settings.timezone)).replace(tzinfo=None)
        create_contract(engine)
        rows = contract_rows(as_of)
        fill(engine, rows)
        first = night(settings, engine, bundle)
        assert first.status == "succeeded", first.error
        baseline = scores(engine, as_of)

        hostile_rows: dict[str, list[dict]] = {k: [] for k in rows}
        for new_id in (LONG_ID, HUGE_ID, BLANK_ID):  # the victim's rows under other ids
            for table in rows:
                hostile_rows[table] += [
                    {**r, "patient_id": new_id} for r in rows[table] if r["patient_id"] == VICTIM
                ]
        labs_today = [r for r in rows["lab_results"] if r["patient_id"] == VICTIM]
        six = max(r["collected_at"] for r in labs_today)
        valid = {r["analyte"]: r["value"] for r in labs_today if r["collected_at"] == six}
        extra = _hostile_labs(as_of, now, request.param)
        for row in extra:  # the two duplicates repeat today's valid value
            if row["value"] is None and row["analyte"] in (" IL17A ", "TNF_Alpha"):
                row["value"] = valid["".join(row["analyte"].split()).lower()]
        hostile_rows["lab_results"] += extra
        hostile_rows["crs_assessments"] += [
            {"patient_id": "CART-1012", "assessed_on": as_of, "grade": 7}
        ]
        with engine.begin() as connection:  # today's grade of CART-1012 becomes 7
            connection.execute(
                text(
                    "DELETE FROM crs_assessments"
                    " WHERE patient_id = 'CART-1012' AND assessed_on = :d"
                ),
                {"d": as_of},
            )
        fill(engine, hostile_rows)
        with captured_logs() as log:
            started = time.perf_counter()
            summary = night(settings, engine, bundle)
            summary.seconds["test wall"] = time.perf_counter() - started
        assert summary.report_path is not None
        yield Outcome(
            backend=request.param,
            as_of=as_of,
            summary=summary,
            baseline=baseline,
            scores=scores(engine, as_of),
            issues=issues(engine),
            runs=runs(engine),
            log=log.getvalue(),
            report_html=summary.report_path.read_text("utf-8"),
        )
        engine.dispose()


# (case, patient id, analyte as stored, reason, rows expected)
ROW_CASES = [
    ("megabyte_value", VICTIM, "il6", cleaning.VALUE_TOO_LONG, 1),
    ("full_width_digits", VICTIM, "il10", cleaning.NON_ASCII_NUMBER, 1),
    ("arabic_indic_digits", VICTIM, "il2", cleaning.NON_ASCII_NUMBER, 1),
    ("text_without_number", VICTIM, "il4", cleaning.NO_NUMBER, 1),
    ("clock_ahead_later_today", VICTIM, "ldh", cleaning.FUTURE_TIMESTAMP, 1),
    ("far_future_9999", VICTIM, "alt", cleaning.FUTURE_TIMESTAMP, 1),
    ("unknown_unit", VICTIM, "ast", cleaning.UNKNOWN_UNIT, 1),
    ("megabyte_unit", VICTIM, "alp", cleaning.UNKNOWN_UNIT, 1),
    ("decimal_shift", VICTIM, "sodium", cleaning.IMPLAUSIBLE, 1),
    ("conflicting_duplicates", VICTIM, "potassium", cleaning.CONFLICTING_DUPLICATE, 2),
    ("overflow_to_infinity", VICTIM, "glucose", cleaning.NO_NUMBER, 1),
    ("operator_without_number", VICTIM, "albumin", cleaning.NO_NUMBER, 1),
    ("negative_value", VICTIM, "calcium", cleaning.NO_NUMBER, 1),
    ("script_as_value", VICTIM, "chloride", cleaning.NO_NUMBER, 1),
    ("no_collection_time", VICTIM, "ggt", cleaning.MISSING_TIMESTAMP, 1),
    ("code_of_108_characters", VICTIM, "X" * 108, cleaning.UNKNOWN_ANALYTE, 1),
    ("hyphenated_code", VICTIM, "il-6", cleaning.UNKNOWN_ANALYTE, 1),
    ("null_code", VICTIM, None, cleaning.UNKNOWN_ANALYTE, 1),
    ("nul_character_in_value", VICTIM, "uric_acid", cleaning.NO_NUMBER, 1),
    ("code_with_spaces_and_case", VICTIM, " IL17A ", row_keys.ANALYTE_NORMALISED, 1),
    ("code_in_mixed_case", VICTIM, "TNF_Alpha", row_keys.ANALYTE_NORMALISED, 1),
    ("null_patient_id", None, "crp", cleaning.MISSING_PATIENT_ID, 1),
    ("blank_patient_id", BLANK_ID, None, cleaning.MISSING_PATIENT_ID, 1),
    ("unstorable_patient_id", HUGE_ID[:200], None, row_keys.PATIENT_ID_UNSTORABLE, 1),
    ("invalid_crs_grade", "CART-1012", "crs_grade", row_keys.INVALID_CRS_GRADE, 1),
]


def _decisions(outcome: Outcome, patient: str | None, analyte: str | None) -> pd.DataFrame:
    frame = outcome.issues
    pid = frame["patient_id"]
    pid_match = pid.isna() if patient is None else pid.fillna("").str.startswith(patient)
    code = frame["analyte"]
    code_match = code.isna() if analyte is None else code == analyte
    return frame[pid_match & code_match]


@pytest.mark.parametrize(
    ("case", "patient", "analyte", "reason", "n"), ROW_CASES, ids=[c[0] for c in ROW_CASES]
)
def test_each_hostile_row_is_a_recorded_decision(hostile, case, patient, analyte, reason, n):
    if case == "nul_character_in_value" and hostile.backend != "sqlite":
        pytest.skip("PostgreSQL text cannot hold NUL: such a warehouse row cannot exist")
    mine = _decisions(hostile, patient, analyte)
    assert (mine["reason"] == reason).sum() == n, mine[["analyte", "raw_value", "reason"]]


def test_nothing_good_is_lost_around_hostile_rows(hostile):
    """Each hostile row was newer than a valid result: the older one is used, so both
    patients score exactly as they did without any hostile row."""
    assert hostile.summary.status == "succeeded", hostile.summary.error
    columns = scoring.COLUMNS
    before = hostile.baseline[columns].reset_index(drop=True)
    after = hostile.scores[hostile.scores["patient_id"].isin(PATIENTS)][columns]
    pd.testing.assert_frame_equal(before, after.reset_index(drop=True))


def test_a_500_character_id_is_scored_and_stored_whole(hostile):
    mine = hostile.scores[hostile.scores["patient_id"] == LONG_ID]
    victim = hostile.scores[hostile.scores["patient_id"] == VICTIM]
    assert len(mine) == 18
    # the same labs, so the same risks, up to the last bits a float32 batch position may move
    np.testing.assert_allclose(
        mine["calibrated_risk"].to_numpy(float),
        victim["calibrated_risk"].to_numpy(float),
        atol=1e-6,
    )


def test_ids_that_cannot_key_results_are_set_aside_and_recorded(hostile):
    stored = set(hostile.scores["patient_id"])
    assert stored == {*PATIENTS, LONG_ID}
    assert hostile.summary.n_patients == 3
    unstorable = _decisions(hostile, HUGE_ID[:200], "il6")
    assert unstorable["reason"].tolist() == [row_keys.PATIENT_ID_UNSTORABLE]
    assert unstorable["patient_id"].iloc[0].endswith("[5000 characters, first 200 kept]")


def test_every_decision_is_counted_on_the_run_row(hostile):
    [run] = [r for r in hostile.runs if r["status"] != "superseded"]  # the baseline run's is
    assert run["status"] == "succeeded"
    assert run["n_data_issues"] == len(hostile.issues) == hostile.summary.n_data_issues
    counted = pd.Series(hostile.summary.data_issue_counts).sort_index()
    assert counted.to_dict() == hostile.issues["reason"].value_counts().sort_index().to_dict()


def test_long_text_is_recorded_as_an_excerpt_that_says_so(hostile):
    value = _decisions(hostile, VICTIM, "il6")["raw_value"].iloc[0]
    assert value == "1" * 200 + "...[1000006 characters, first 200 kept]"
    unit = _decisions(hostile, VICTIM, "alp")["unit"].iloc[0]
    assert unit.endswith("[1200000 characters, first 200 kept]") and len(unit) < 300
    code = _decisions(hostile, VICTIM, "X" * 108)  # under the cut: whole
    assert len(code) == 1


def test_older_rows_than_the_value_used_are_not_judged(hostile):
    """Only what could have been the value is recorded: nothing of the victim's before
    today's 06:00 results (they were superseded, not set aside)."""
    victim = hostile.issues[hostile.issues["patient_id"] == VICTIM].dropna(subset=["collected_at"])
    six = datetime.combine(hostile.as_of, datetime.min.time()) + timedelta(hours=6)
    assert (pd.to_datetime(victim["collected_at"]) >= six).all()


def test_the_hostile_night_is_quick_and_leaks_nothing(hostile):
    assert hostile.summary.seconds["test wall"] < 60  # the old number pattern: hours
    for secret in (LONG_ID, HUGE_ID[:100], "<script>", "１２", "hemolyzed", "furlongs"):
        assert secret not in hostile.log
    assert "<script>alert(1)</script>" not in hostile.report_html
    assert "CRS grades unavailable" not in " ".join(hostile.summary.notes)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("1" * 1_000_000, cleaning.VALUE_TOO_LONG),
        ("1" * 64, None),
        ("<" + " " * 100 + "5", cleaning.VALUE_TOO_LONG),
        ("１２", cleaning.NON_ASCII_NUMBER),
        ("½", cleaning.NO_NUMBER),
        ("0x10", cleaning.NO_NUMBER),
        ("1_000", cleaning.NO_NUMBER),
        ("Infinity", cleaning.NO_NUMBER),
        ("1e400", cleaning.NO_NUMBER),
        (10**400, cleaning.NO_NUMBER),
        (float("inf"), cleaning.NO_NUMBER),
        (True, cleaning.NO_NUMBER),
        ("\u00a05.5\t", None),
        ("5.", None),
        (".5", None),
        ("<<5", cleaning.NO_NUMBER),
    ],
)
def test_value_strings(raw, reason):
    started = time.perf_counter()
    parsed = cleaning.parse_value(raw)
    assert time.perf_counter() - started < 0.5
    assert parsed.reason == reason
    assert (parsed.value is None) == (reason not in (None, cleaning.CENSORED))


# --- view types the contract did not foresee, and the optional table --------------------


@pytest.fixture(scope="module")
def clean_scores(
    tmp_path_factory: pytest.TempPathFactory, quick_models: Path, bundle: store.ModelBundle
) -> pd.DataFrame:
    """Today's scores of the two patients from a plain warehouse (TEXT, TIMESTAMP)."""
    folder = tmp_path_factory.mktemp("clean")
    with fresh_database("sqlite", folder) as url:
        migrate(url)
        engine = make_engine(url)
        settings = hostile_settings(url, quick_models, folder)
        create_contract(engine)
        fill(engine, contract_rows(settings.today()))
        assert night(settings, engine, bundle).status == "succeeded"
        out = scores(engine, settings.today()).drop(columns="as_of")
        engine.dispose()
    return out


def _same_scores(engine: Engine, as_of: date, expected: pd.DataFrame, ids: dict | None = None):
    got = scores(engine, as_of).drop(columns="as_of")
    if ids:
        got["patient_id"] = got["patient_id"].map(ids)
        got = got.sort_values(["patient_id", "model", "horizon_days"])
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))


def test_timestamptz_view_reads_wall_clock_time_in_the_zone(fresh, backend, bundle, clean_scores):
    settings, engine = fresh
    zone = ZoneInfo(settings.timezone)
    rows = contract_rows(settings.today())
    for row in rows["lab_results"]:  # the same instants, as PostgreSQL returns them: aware
        aware = row["collected_at"].replace(tzinfo=zone)
        row["collected_at"] = aware.astimezone(timezone.utc) if backend == "postgresql" else aware
    create_contract(engine, stamp_type="TIMESTAMPTZ")
    fill(engine, rows)
    summary = night(settings, engine, bundle)
    assert summary.status == "succeeded", summary.error
    _same_scores(engine, settings.today(), clean_scores)


def test_numeric_value_column(fresh, bundle, clean_scores):
    settings, engine = fresh
    rows = contract_rows(settings.today())
    assert all(cleaning.parse_value(r["value"]).reason is None for r in rows["lab_results"])
    for row in rows["lab_results"]:
        row["value"] = float(row["value"])
    create_contract(engine, value_type="NUMERIC")
    fill(engine, rows)
    assert night(settings, engine, bundle).status == "succeeded"
    _same_scores(engine, settings.today(), clean_scores)


def test_integer_patient_ids_beyond_float_precision(fresh, bundle, clean_scores):
    settings, engine = fresh
    big = 2**53 + 1  # a float cannot hold it: 9007199254740993 would become ...992
    as_int = {"CART-1001": 1001, "CART-1012": big}
    rows = contract_rows(settings.today())
    for table_rows in rows.values():
        for row in table_rows:
            row["patient_id"] = as_int[row["patient_id"]]
    create_contract(engine, id_type="BIGINT")
    fill(engine, rows)
    assert night(settings, engine, bundle).status == "succeeded"
    back = {str(v): k for k, v in as_int.items()}
    assert set(scores(engine, settings.today())["patient_id"]) == set(back)
    _same_scores(engine, settings.today(), clean_scores, ids=back)


def test_date_typed_collection_time(fresh, backend, bundle, clean_scores):
    if backend != "postgresql":
        pytest.skip("SQLite compares dates as text: a DATE view is a PostgreSQL case")
    settings, engine = fresh
    rows = contract_rows(settings.today())
    for row in rows["lab_results"]:
        row["collected_at"] = row["collected_at"].date()
    create_contract(engine, stamp_type="DATE")
    fill(engine, rows)
    assert night(settings, engine, bundle).status == "succeeded"
    _same_scores(engine, settings.today(), clean_scores)


@pytest.mark.parametrize("grades", ["absent", "empty"])
def test_without_crs_assessments_scoring_proceeds_and_says_so(fresh, bundle, clean_scores, grades):
    settings, engine = fresh
    rows = contract_rows(settings.today())
    create_contract(engine, grades_table=grades == "empty")
    fill(engine, {k: v for k, v in rows.items() if k != "crs_assessments"})
    summary = night(settings, engine, bundle)
    assert summary.status == "succeeded", summary.error
    assert summary.ok
    [note] = summary.notes
    assert note.startswith("CRS grades unavailable")
    _same_scores(engine, settings.today(), clean_scores)


def test_a_missing_lab_table_fails_the_night_at_once_and_records_it(fresh, bundle):
    settings, engine = fresh
    create_contract(engine)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE lab_results"))
    fill(engine, {k: v for k, v in contract_rows(settings.today()).items() if k != "lab_results"})
    started = time.perf_counter()
    summary = night(settings, engine, bundle)
    assert time.perf_counter() - started < 10  # a contract problem is not retried
    assert summary.status == "failed"
    assert "latest_labs.sql" in summary.error
    [run] = runs(engine)
    assert run["status"] == "failed" and run["error"] == summary.error
    assert count_rows(engine, crs_risk_scores) == 0


# --- two runs of one night -----------------------------------------------------------


def _contract(settings: Settings, engine: Engine) -> None:
    create_contract(engine)
    fill(engine, contract_rows(settings.today()))


def _mail(settings: Settings, port: int) -> Settings:
    return settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_starttls": False,
            "alert_to": ["oncall@hospital.example"],
        }
    )


@contextmanager
def _write_blocked(engine: Engine) -> Iterator[None]:
    """Hold the results' write lock: a run reaching its write waits there."""
    connection = engine.connect()
    if engine.dialect.name == "postgresql":
        transaction = connection.begin()
        connection.execute(text("LOCK TABLE data_quality_issues IN ACCESS EXCLUSIVE MODE"))
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        if engine.dialect.name == "postgresql":
            transaction.rollback()
        else:
            connection.exec_driver_sql("ROLLBACK")
        connection.close()


def _lock_is_held(engine: Engine, as_of: date) -> bool:
    """Whether some run holds the night's lock, looked at without taking it."""
    if engine.dialect.name == "postgresql":
        query = text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid::bigint = :kind AND objid::bigint = :night"
        )
        with engine.connect() as connection:
            key = {"kind": locks.RUN_LOCK, "night": as_of.toordinal()}
            return bool(connection.execute(query, key).scalar_one())
    lock_file = Path(f"{engine.url.database}.night-{as_of.isoformat()}.lock")
    if not lock_file.exists():
        return False
    inode = f":{lock_file.stat().st_ino} "
    return any(
        "FLOCK" in line and inode in line for line in Path("/proc/locks").read_text().splitlines()
    )


def _held_by_another(engine: Engine, as_of: date, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _lock_is_held(engine, as_of):
            return
        time.sleep(0.05)
    raise AssertionError("the first run never took the night's lock")


def test_a_second_run_of_a_running_night_stops_cleanly(fresh, bundle, smtp_sink):
    settings, engine = fresh
    settings = _mail(settings, smtp_sink.port)
    _contract(settings, engine)
    outcome: dict[str, pipeline.RunSummary] = {}
    with _write_blocked(engine):
        first = threading.Thread(
            target=lambda: outcome.setdefault("a", night(settings, engine, bundle))
        )
        first.start()
        _held_by_another(engine, settings.today())
        second = night(settings, engine, bundle)
    first.join(timeout=120)
    assert second.status == pipeline.ALREADY_RUNNING and second.ok
    assert outcome["a"].status == "succeeded", outcome["a"].error
    assert [r["status"] for r in runs(engine)] == ["succeeded"]  # no false failure row
    subjects = [m["Subject"] for m in smtp_sink.messages]
    assert len(subjects) == 1 and "FAILED" not in subjects[0]  # no false failure mail
    again = night(settings, engine, bundle)  # nobody running: a rerun replaces the night
    assert again.status == "succeeded"
    kept = {r["run_id"]: r["status"] for r in runs(engine)}
    assert kept == {outcome["a"].run_id: "superseded", again.run_id: "succeeded"}


def test_concurrent_writes_of_one_night_replace_each_other(fresh, backend):
    """The write itself is serialised per night: no unique-key failure even without the
    run lock (two writers of one night, the second waiting for the first to commit)."""
    if backend != "postgresql":
        pytest.skip("SQLite serialises writers by itself")
    settings, engine = fresh
    now = datetime.now(timezone.utc)
    as_of = settings.today()
    row = {
        "patient_id": "p1",
        "model": "all",
        "horizon_days": 1,
        "probability": 0.1,
        "calibrated_risk": 0.1,
        "status": "ok",
        "inputs_observed": 9,
        "inputs_expected": 42,
        "detail": "",
    }
    frame = pd.DataFrame([row])
    empty = pd.DataFrame(columns=cleaning.ISSUE_COLUMNS)

    def write(run_id: str, connection: Any) -> None:
        run = nights.RunInfo(run_id, as_of, now, now, finished_at=now, status="succeeded")
        nights.replace_night(connection=connection, run=run, scores=frame, issues=empty)

    first = engine.connect()
    transaction = first.begin()
    write("run-a", first)
    failures: list[BaseException] = []

    def second() -> None:
        try:
            with engine.begin() as connection:
                write("run-b", connection)
        except BaseException as exc:
            failures.append(exc)

    worker = threading.Thread(target=second)
    worker.start()
    time.sleep(0.5)  # run-b waits on the night's write lock
    assert worker.is_alive()
    transaction.commit()
    first.close()
    worker.join(timeout=30)
    assert not failures, failures
    assert {r["run_id"]: r["status"] for r in runs(engine)} == {
        "run-a": "superseded",
        "run-b": "succeeded",
    }
    assert count_rows(engine, crs_risk_scores) == 1


def test_run_command_on_a_running_night_exits_cleanly(fresh, backend, quick_models, tmp_path):
    settings, engine = fresh
    _contract(settings, engine)
    env = {
        "PRCRS_WAREHOUSE_URL": settings.warehouse_url,
        "PRCRS_MODEL_DIR": str(quick_models),
        "PRCRS_REPORT_DIR": str(tmp_path / "cli"),
        "PRCRS_DEVICE": "cpu",
        "PRCRS_TIMEZONE": settings.timezone,
    }
    with locks.night_lock(engine, current_data_day(settings.zone)) as held:  # `run`'s night
        assert held
        outcome = CliRunner().invoke(main, ["run"], env=env)
    assert outcome.exit_code == 0, outcome.output
    assert "ALREADY_RUNNING" in outcome.output
    assert runs(engine) == []


def test_a_killed_run_leaves_no_lock_behind(fresh, tmp_path, bundle):
    settings, engine = fresh
    _contract(settings, engine)
    script = (
        "import sys, time\n"
        "from datetime import date\n"
        "from prcrs_batch.results import locks\n"
        "from prcrs_batch.results.engines import make_engine\n"
        "with locks.night_lock(make_engine(sys.argv[1]), date.fromisoformat(sys.argv[2])):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, settings.warehouse_url, settings.today().isoformat()],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert night(settings, engine, bundle).status == pipeline.ALREADY_RUNNING
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert night(settings, engine, bundle).status == "succeeded"


def test_a_long_host_name_still_claims_the_night(fresh):
    settings, engine = fresh
    with engine.begin() as connection:
        claimed = locks.claim_night(
            connection=connection,
            as_of=settings.today(),
            claimed_by="h" * 300,
            now=datetime.now(timezone.utc),
        )
    assert claimed
    with engine.connect() as connection:
        [host] = connection.execute(select(night_claims.c.claimed_by)).scalars()
    assert host == "h" * locks.MAX_CLAIMED_BY_CHARS


# --- mail relays that stall -----------------------------------------------------------


@dataclass
class StallingServer:
    port: int
    connections: int = 0


@contextmanager
def stalling_smtp(mode: str) -> Iterator[StallingServer]:
    """'trickle': greets, then answers EHLO one byte every 0.2 s and never ends the line
    (no socket timeout ever fires); 'silent': accepts and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    server = StallingServer(listener.getsockname()[1])
    stop = threading.Event()
    workers: list[threading.Thread] = []

    def talk(conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            if mode == "trickle":
                conn.sendall(b"220 slow.example ESMTP\r\n")
                conn.recv(1024)  # EHLO
                conn.sendall(b"250-")
                while not stop.wait(0.2):
                    conn.sendall(b"x")
            else:
                stop.wait()
        except OSError:
            pass
        finally:
            conn.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server.connections += 1
            worker = threading.Thread(target=talk, args=(conn,), daemon=True)
            worker.start()
            workers.append(worker)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield server
    finally:
        stop.set()
        acceptor.join(timeout=5)
        listener.close()
        for worker in workers:
            worker.join(timeout=5)


@pytest.mark.parametrize("mode", ["trickle", "silent"])
def test_a_stalling_relay_costs_at_most_the_deadline_per_attempt(mode):
    report = Report("PrCRS test", "<p>h</p>", "t", {})
    message = mailer.build_message(report, sender="a@example.org", recipients=["b@example.org"])
    with stalling_smtp(mode) as server:
        started = time.perf_counter()
        with pytest.raises(mailer.MailError, match="deadline"):
            mailer.send_message(
                message,
                host="127.0.0.1",
                port=server.port,
                sender="a@example.org",
                recipients=["b@example.org"],
                starttls=False,
                attempts=2,
                backoff_seconds=0.05,
                deadline=1.0,
            )
        elapsed = time.perf_counter() - started
    assert elapsed < 5, elapsed  # 2 x 1 s, where a socket timeout alone never ends
    assert server.connections == 2


@pytest.fixture
def quick_mail(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mailer's clock, shortened: 0.5 s per attempt, two attempts, no backoff."""
    monkeypatch.setattr(mailer, "DEADLINE_SECONDS", 0.5)
    monkeypatch.setattr(mailer, "ATTEMPTS", 2)
    monkeypatch.setattr(mailer, "BACKOFF_SECONDS", 0.01)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_night_with_a_stalling_relay_ends_and_the_next_one_resends(
    fresh, bundle, quick_mail, smtp_sink
):
    settings, engine = fresh
    _contract(settings, engine)
    yesterday = settings.today() - timedelta(days=1)
    with stalling_smtp("trickle") as server:
        started = time.perf_counter()
        summary = pipeline.run_nightly(
            _mail(settings, server.port),
            as_of=yesterday,
            warehouse=engine,
            results_db=engine,
            bundle=bundle,
        )
        assert time.perf_counter() - started < 15
    assert summary.status == "succeeded" and not summary.ok
    assert summary.email.startswith("failed") and "deadline" in summary.email
    assert summary.report_path.with_suffix(".eml").exists()
    assert count_rows(engine, crs_risk_scores, as_of=yesterday) == summary.n_scores
    today = night(_mail(settings, smtp_sink.port), engine, bundle)
    assert today.ok, today.email
    subjects = [m["Subject"] for m in smtp_sink.messages]
    assert [s.split("PrCRS ")[1][:10] for s in subjects] == [
        settings.today().isoformat(),  # tonight's first
        yesterday.isoformat(),  # then yesterday's, within PRCRS_MAX_RESEND_HOURS: delayed
    ]
    assert subjects[1].startswith("[DELAYED ") and not subjects[0].startswith("[")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_dead_relay_is_tried_once_a_night_not_once_per_undelivered_report(
    fresh, bundle, quick_mail
):
    settings, engine = fresh
    _contract(settings, engine)
    dead = _mail(settings, free_port())
    for days in (3, 2, 1):  # three nights whose mail could not go out
        earlier = settings.today() - timedelta(days=days)
        summary = pipeline.run_nightly(
            dead, as_of=earlier, warehouse=engine, results_db=engine, bundle=bundle
        )
        assert summary.report_path.with_suffix(".eml").exists()
    with stalling_smtp("silent") as server:
        started = time.perf_counter()
        tonight = night(_mail(settings, server.port), engine, bundle)
        assert time.perf_counter() - started < 10
    assert tonight.email.startswith("failed")
    assert server.connections == mailer.ATTEMPTS  # tonight's only: no resends tried


# --- a report folder that cannot be written ------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("relay", ["up", "down", "none"])
def test_an_unwritable_report_folder_never_stops_the_mail(
    fresh, bundle, smtp_sink, tmp_path, quick_mail, relay
):
    settings, engine = fresh
    _contract(settings, engine)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the report folder should be")
    settings = settings.model_copy(update={"report_dir": blocker / "reports"})
    if relay != "none":
        settings = _mail(settings, smtp_sink.port if relay == "up" else free_port())
    summary = night(settings, engine, bundle, send_email=True)
    assert summary.status == "succeeded"
    assert count_rows(engine, crs_risk_scores) == summary.n_scores
    assert summary.report_path is None and not summary.ok
    assert summary.report_error.startswith(f"report not written to {blocker / 'reports'}")
    [run] = runs(engine)
    assert run["report_path"] is None
    if relay == "up":
        assert summary.email == "sent to 1 recipient(s)"
        assert len(smtp_sink.messages) == 1 and run["report_sent_at"] is not None
    elif relay == "down":
        assert summary.email.startswith("failed") and "not kept" in summary.email
    else:
        assert summary.email.startswith("disabled")


# --- corrupt artefacts ---------------------------------------------------------------


def _cli_env(settings: Settings, models: Path, folder: Path, port: int | None) -> dict:
    env = {
        "PRCRS_WAREHOUSE_URL": settings.warehouse_url,
        "PRCRS_MODEL_DIR": str(models),
        "PRCRS_REPORT_DIR": str(folder / "cli-reports"),
        "PRCRS_DEVICE": "cpu",
        "PRCRS_TIMEZONE": settings.timezone,
    }
    if port:
        env |= {
            "PRCRS_SMTP_HOST": "127.0.0.1",
            "PRCRS_SMTP_PORT": str(port),
            "PRCRS_SMTP_STARTTLS": "false",
            "PRCRS_ALERT_TO": "oncall@hospital.example",
        }
    return env


def _broken_models(quick_models: Path, folder: Path, how: str) -> Path:
    broken = folder / "models"
    shutil.copytree(quick_models, broken)
    manifest = broken / "manifest.json"
    if how == "corrupt_manifest":
        manifest.write_text(manifest.read_text()[:-40])
    elif how == "manifest_not_an_object":
        manifest.write_text(json.dumps(["not", "a", "manifest"]))
    elif how == "no_manifest":
        manifest.unlink()
    elif how == "no_model_folder":
        shutil.rmtree(broken)
    return broken


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "how", ["corrupt_manifest", "manifest_not_an_object", "no_manifest", "no_model_folder"]
)
def test_unloadable_models_are_a_recorded_failed_night(
    fresh, quick_models, tmp_path, smtp_sink, how
):
    settings, engine = fresh
    _contract(settings, engine)
    models = _broken_models(quick_models, tmp_path, how)
    outcome = CliRunner().invoke(
        main, ["run"], env=_cli_env(settings, models, tmp_path, smtp_sink.port)
    )
    assert outcome.exit_code == 1, outcome.output
    assert "FAILED" in outcome.output
    [run] = runs(engine)
    assert run["status"] == "failed"
    assert run["error"].startswith(
        f"load models: ModelsUnavailableError: cannot load the models from {models}"
    )
    assert count_rows(engine, crs_risk_scores) == 0
    [notice] = smtp_sink.messages
    assert "RUN FAILED" in notice["Subject"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_backfill_with_a_corrupt_manifest_records_every_night(fresh, quick_models, tmp_path):
    settings, engine = fresh
    _contract(settings, engine)
    models = _broken_models(quick_models, tmp_path, "corrupt_manifest")
    end = settings.today()
    start = end - timedelta(days=1)
    outcome = CliRunner().invoke(
        main,
        ["backfill", "--start", start.isoformat(), "--end", end.isoformat()],
        env=_cli_env(settings, models, tmp_path, None),
    )
    assert outcome.exit_code == 1, outcome.output
    assert sorted((r["as_of"], r["status"]) for r in runs(engine)) == [
        (start, "failed"),
        (end, "failed"),
    ]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_tampered_model_exits_non_zero_and_says_which(fresh, quick_models, tmp_path):
    settings, engine = fresh
    _contract(settings, engine)
    models = _broken_models(quick_models, tmp_path, "copy")
    weight = models / "cytokines_h2.safetensors"
    weight.write_bytes(weight.read_bytes()[:-8] + b"tampered")
    outcome = CliRunner().invoke(main, ["run"], env=_cli_env(settings, models, tmp_path, None))
    assert outcome.exit_code == 1, outcome.output
    assert "model cytokines 2d in error" in outcome.output and "SHA-256" in outcome.output
    [run] = runs(engine)
    assert run["status"] == "succeeded"
    stored = scores(engine, settings.today())
    bad = (stored["model"] == "cytokines") & (stored["horizon_days"] == 2)
    assert (stored.loc[bad, "status"] == "error").all()
    assert (stored.loc[~bad, "status"] != "error").all()


def test_a_night_without_active_patients(fresh, bundle):
    settings, engine = fresh
    create_contract(engine)  # nobody infused: an empty but valid night
    summary = night(settings, engine, bundle)
    assert summary.status in ("succeeded", "stale_data"), summary.error
    assert summary.n_patients == 0 and count_rows(engine, crs_risk_scores) == 0
    assert len(runs(engine)) == 1
