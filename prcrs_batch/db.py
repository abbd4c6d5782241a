"""Engines for the warehouse and results databases, and the results schema's migrations."""

from __future__ import annotations

from typing import Any

from alembic.config import Config
from sqlalchemy import Engine, create_engine, event

from prcrs_batch import resources
from prcrs_batch.settings import normalise_database_url


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets foreign keys and a busy timeout, PostgreSQL a pool check."""
    url = normalise_database_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})


def alembic_config(url: str) -> Config:
    """Alembic configuration for the repo's migrations, aimed at `url`."""
    config = Config()
    config.set_main_option("script_location", str(resources.alembic_dir()))
    config.attributes["url"] = normalise_database_url(url)
    config.attributes["configure_logging"] = False
    return config


def migrate(url: str) -> None:
    """Bring the results schema to the newest revision (`alembic upgrade head`)."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")
