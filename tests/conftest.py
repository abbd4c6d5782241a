"""Shared fixtures: a fresh database per test, on SQLite and (with TEST_DATABASE_URL) PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from smtp_server import smtp_auth_sink, smtp_sink, smtp_tls_sink  # noqa: F401  (fixtures for every test module)
from sqlalchemy import Engine, text

from prcrs_batch.db import make_engine, migrate

TEST_DATA = Path(__file__).parent / "data"
BACKENDS = ["sqlite", "postgresql"]


def _postgres_admin_url() -> str | None:
    return os.environ.get("TEST_DATABASE_URL")


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a brand-new empty database, dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    admin_url = _postgres_admin_url()
    if not admin_url:
        pytest.skip("TEST_DATABASE_URL not set: PostgreSQL tests skipped")
    name = f"prcrs_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    base = admin.url.set(database=name)
    try:
        yield base.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a fresh database with the results schema migrated to head."""
    migrate(db_url)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Clear PRCRS_* from the environment and run in an empty folder (no stray .env)."""
    for key in list(os.environ):
        if key.startswith("PRCRS_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def quick_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Models trained once per test session with --quick settings on the tiny cohort."""
    from prcrs_batch import training

    out = tmp_path_factory.mktemp("quick_models")
    training.train(out, seed=7, quick=True, cohort_path=TEST_DATA / "tiny_cohort.csv")
    return out


@pytest.fixture
def warehouse(engine: Engine) -> Engine:
    """The test database with the tiny cohort loaded into the warehouse tables."""
    from prcrs_batch.cohort import load_cohort
    from tests.nightly import COHORT

    load_cohort(engine, COHORT)
    return engine


@pytest.fixture
def settings(settings_env: Path, db_url: str, quick_models: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Settings for a night on the test database, quick models, email off."""
    from prcrs_batch.settings import load_settings

    return load_settings(
        warehouse_url=db_url, model_dir=quick_models, report_dir=tmp_path / "reports", device="cpu"
    )
