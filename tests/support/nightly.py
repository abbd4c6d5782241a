"""The nightly-job tests' pieces: the tiny cohort, its busiest night, quick models, settings."""

from __future__ import annotations

import os
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from prcrs_batch.app import pipeline
from prcrs_batch.devdata.cohort import load_cohort, read_cohort
from prcrs_batch.offline import training
from prcrs_batch.settings import Settings, load_settings
from tests.support import TEST_DATA

COHORT = read_cohort(TEST_DATA / "tiny_cohort.csv")
CALENDAR_DAYS = [d + timedelta(days=int(n)) for d, n in zip(COHORT["infusion_date"], COHORT["day"])]
# The night on which the most patients of the tiny cohort have labs.
AS_OF = Counter(CALENDAR_DAYS).most_common(1)[0][0]


def patient_with_labs_on_as_of() -> str:
    return str(COHORT.loc[[d == AS_OF for d in CALENDAR_DAYS], "patient_id"].iloc[0])


def run_night(settings, warehouse, as_of=AS_OF, **kwargs):  # type: ignore[no-untyped-def]
    """run_nightly with the warehouse and results in the same test database."""
    return pipeline.run_nightly(
        settings, as_of=as_of, warehouse=warehouse, results_db=warehouse, **kwargs
    )


def count_rows(engine, table, **where) -> int:  # type: ignore[no-untyped-def]
    query = select(func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with engine.connect() as connection:
        return connection.execute(query).scalar_one()


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Clear PRCRS_* from the environment and run in an empty folder (no stray .env)."""
    for key in list(os.environ):
        if key.startswith("PRCRS_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the quick models trains them (once a session): it is slow."""
    for item in items:
        if "quick_models" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def quick_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Models trained once per test session with --quick settings on the tiny cohort."""
    out = tmp_path_factory.mktemp("quick_models")
    training.train(out, seed=7, quick=True, cohort_path=TEST_DATA / "tiny_cohort.csv")
    return out


@pytest.fixture
def warehouse(engine: Engine) -> Engine:
    """The test database with the tiny cohort loaded into the warehouse tables."""
    load_cohort(engine, COHORT)
    return engine


@pytest.fixture
def settings(settings_env: Path, db_url: str, quick_models: Path, tmp_path: Path) -> Settings:
    """Settings for a night on the test database, quick models, email off."""
    return load_settings(
        warehouse_url=db_url, model_dir=quick_models, report_dir=tmp_path / "reports", device="cpu"
    )
