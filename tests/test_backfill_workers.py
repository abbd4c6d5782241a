"""`backfill --workers 2`, and the Indexed Job's shares then `--finish`, store the rows one
process stores (app/backfill.py), on SQLite and PostgreSQL."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from prcrs_batch.app.backfill import rerun_nights, shares
from prcrs_batch.app.cli import main
from prcrs_batch.devdata.cohort import load_cohort
from prcrs_batch.results.engines import make_engine
from prcrs_batch.results.migrations import migrate
from prcrs_batch.results.tables import (
    crs_patient_nights,
    crs_risk_explanations,
    crs_risk_scores,
    input_drift,
    model_performance,
    prediction_outcomes,
)
from tests.support.databases import fresh_database
from tests.support.nightly import AS_OF, COHORT

# Six nights around the tiny cohort's busiest: two shares of three, the second run again.
DATES = [AS_OF - timedelta(days=3) + timedelta(days=i) for i in range(6)]
TABLES = [
    crs_risk_scores,
    crs_patient_nights,
    crs_risk_explanations,
    prediction_outcomes,
    model_performance,
    input_drift,
]
NOT_COMPARED = {"id", "run_id", "created_at"}  # differ from run to run by design


def _stored(engine: Engine) -> dict[str, pd.DataFrame]:
    out = {}
    with engine.connect() as connection:
        for table in TABLES:
            columns = [c for c in table.columns if c.name not in NOT_COMPARED]
            rows = connection.execute(select(*columns)).all()
            frame = pd.DataFrame(rows, columns=[c.name for c in columns])
            out[table.name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return out


def _backfill(url: str, *options: str) -> None:
    outcome = CliRunner().invoke(
        main,
        ["backfill", "--start", str(DATES[0]), "--end", str(DATES[-1]), *options],
        env={"PRCRS_WAREHOUSE_URL": url},
    )
    assert outcome.exit_code == 0, outcome.output


@pytest.fixture
def backfill_env(monkeypatch, settings_env, quick_models, tmp_path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PRCRS_MODEL_DIR", str(quick_models))
    monkeypatch.setenv("PRCRS_REPORT_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("PRCRS_DEVICE", "cpu")


def _fresh(backend: str, folder: Path, stack: ExitStack) -> tuple[str, Engine]:
    url = stack.enter_context(fresh_database(backend, folder))
    migrate(url)
    engine = make_engine(url)
    load_cohort(engine, COHORT)
    stack.callback(engine.dispose)
    return url, engine


def test_two_workers_and_the_shares_store_what_one_process_stores(
    backfill_env, db_url, warehouse, tmp_path
):
    assert rerun_nights(DATES, 2) == shares(DATES, 2)[1]
    _backfill(db_url)  # one process: each night scored and monitored in turn
    one = _stored(warehouse)
    assert len(one["crs_risk_scores"]) and len(one["prediction_outcomes"])
    assert len(one["model_performance"]) and len(one["input_drift"])
    assert one["crs_patient_nights"]["previous_max_risk"].notna().any()  # history was read
    backend = warehouse.dialect.name
    with ExitStack() as stack:
        url, engine = _fresh(backend, tmp_path, stack)
        _backfill(url, "--workers", "2")
        two = _stored(engine)
        url, engine = _fresh(backend, tmp_path, stack)
        for index in ("1", "0"):  # a Job's pods end in any order
            _backfill(url, "--shards", "2", "--shard-index", index)
        _backfill(url, "--shards", "2", "--finish")
        sharded = _stored(engine)
    for name, frame in one.items():
        pd.testing.assert_frame_equal(two[name], frame, obj=f"--workers 2: {name}")
        pd.testing.assert_frame_equal(sharded[name], frame, obj=f"--shards 2: {name}")


@pytest.mark.parametrize(
    "options",
    [
        ["--shards", "2"],  # neither a share nor the finish
        ["--shard-index", "0"],  # a share of what
        ["--shards", "2", "--shard-index", "0", "--finish"],
        ["--shards", "2", "--shard-index", "2"],  # past the last share
        ["--workers", "2", "--email"],  # a night mailed before its monitoring
    ],
)
def test_backfill_refuses_options_that_do_not_go_together(settings_env, options):
    outcome = CliRunner().invoke(
        main, ["backfill", "--start", "2026-01-01", "--end", "2026-01-10", *options]
    )
    assert outcome.exit_code == 2, outcome.output
