"""Alembic environment: metadata from prcrs_batch.results.tables, URL and schema
(PRCRS_RESULTS_SCHEMA: the search_path, so that the tables, views and alembic_version all go
there) from Settings."""

from logging.config import fileConfig

from alembic import context
from prcrs_batch.results.engines import make_engine
from prcrs_batch.results.tables import metadata
from prcrs_batch.settings import load_settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = metadata


def database_url() -> str:
    return config.attributes.get("url") or load_settings().results_database_url


def results_schema() -> str | None:
    if "url" in config.attributes:  # migrations.alembic_config: the caller's settings
        return config.attributes.get("schema")
    return load_settings().results_schema


def run_migrations_offline() -> None:
    url = database_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        compare_type=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = database_url()
    engine = make_engine(url, results_schema())
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            compare_type=True,
            render_as_batch=url.startswith("sqlite"),
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
