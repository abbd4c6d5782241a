import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import inspect, text

from alembic import command
from prcrs_batch.app.cli import main
from prcrs_batch.results.engines import DatabaseSetupError, make_engine
from prcrs_batch.results.migrations import alembic_config, migrate, require_usable
from prcrs_batch.results.tables import metadata
from prcrs_batch.settings import load_settings


def test_upgrade_creates_schema_and_view(engine):
    names = set(inspect(engine).get_table_names())
    assert {"scoring_runs", "crs_risk_scores", "data_quality_issues", "night_claims"} <= names
    assert "crs_risk_latest" in inspect(engine).get_view_names()
    unique = inspect(engine).get_unique_constraints("crs_risk_scores")
    assert any(
        u["column_names"] == ["as_of", "patient_id", "model", "horizon_days", "run_id"]
        for u in unique
    )  # run_id: an emailed run's rows stay beside a rerun's (0008)


def test_downgrade_and_upgrade_round_trip(db_url):
    migrate(db_url)
    command.downgrade(alembic_config(db_url), "base")
    engine = make_engine(db_url)
    assert not set(inspect(engine).get_table_names()) & set(metadata.tables)
    migrate(db_url)
    inspector = inspect(make_engine(db_url))
    assert set(metadata.tables) <= set(inspector.get_table_names())
    engine.dispose()


def test_schema_matches_the_metadata(engine):
    """Alembic autogenerate finds nothing to do: the migrations and tables.py agree."""
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
    assert diff == []


def test_check_constraints_reject_bad_rows(engine):
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO scoring_runs (run_id, as_of, started_at, status, n_patients, "
                "n_scores, n_alerts, n_data_issues)"
                " VALUES ('r1', '2026-11-26', '2026-11-26 02:00:00', 'succeeded', 0, 0, 0, 0)"
            )
        )
    bad = (
        "INSERT INTO crs_risk_scores (run_id, as_of, patient_id, model, horizon_days, "
        "target_date, status,"
        " inputs_observed, inputs_expected, created_at) VALUES ('r1', '2026-11-26', 'p', 'all', 4,"
        " '2026-11-30', 'ok', 1, 1, '2026-11-26 02:00:00')"
    )
    import pytest
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(text(bad))


def test_long_warehouse_text_and_the_new_statuses_are_stored(engine):
    """Ids and codes are TEXT as in the warehouse contract; 0002's statuses are allowed."""
    long_id = "P" * 500
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO scoring_runs (run_id, as_of, started_at, status, n_patients, "
                "n_scores, n_alerts, n_data_issues) "
                "VALUES ('r1', '2026-11-26', '2026-11-26 02:00:00', 'stale_data', 0, 0, 0, 0)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO crs_risk_scores (run_id, as_of, patient_id, model, horizon_days, "
                "target_date, status, inputs_observed, inputs_expected, created_at) VALUES "
                "('r1', '2026-11-26', :pid, 'all', 1, '2026-11-27', 'already_severe', 0, 42, "
                "'2026-11-26 02:00:00')"
            ),
            {"pid": long_id},
        )
        connection.execute(
            text(
                "INSERT INTO data_quality_issues (run_id, patient_id, analyte, unit, reason) "
                "VALUES ('r1', :pid, :code, :unit, 'unknown_analyte')"
            ),
            {"pid": long_id, "code": "x" * 300, "unit": "u" * 100},
        )
        stored = connection.execute(text("SELECT patient_id FROM crs_risk_latest")).scalar_one()
    assert stored == long_id


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_results_schema_setting_puts_every_table_view_and_the_version_there(
    db_url, settings_env, monkeypatch
):
    """PRCRS_RESULTS_SCHEMA (an unquoted name: PostgreSQL folds it) for init-db, check,
    monitor and the night's set-up check; round trip and autogenerate inside the schema."""
    monkeypatch.setenv("PRCRS_WAREHOUSE_URL", db_url)
    monkeypatch.setenv("PRCRS_RESULTS_SCHEMA", "Results")
    created = CliRunner().invoke(main, ["init-db"])
    assert created.exit_code == 0 and "(schema Results)" in created.output, created.output
    engine = make_engine(db_url)
    inspector = inspect(engine)
    assert set(inspector.get_table_names(schema="results")) == {*metadata.tables, "alembic_version"}
    assert "crs_risk_latest" in inspector.get_view_names(schema="results")
    assert inspector.get_table_names(schema="public") == []
    assert CliRunner().invoke(main, ["monitor", "--json"]).exit_code == 0
    require_usable(load_settings())  # the night's check finds the schema at its revision
    in_schema = make_engine(db_url, "Results")
    with in_schema.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
    assert diff == []
    command.downgrade(alembic_config(db_url, "results"), "base")
    assert set(inspect(in_schema).get_table_names()) == {"alembic_version"}
    assert migrate(db_url, "results").before is None
    monkeypatch.delenv("PRCRS_RESULTS_SCHEMA")  # the same database, the default schema
    with pytest.raises(DatabaseSetupError, match="no results schema: run `prcrs-batch init-db`"):
        require_usable(load_settings())
    in_schema.dispose()
    engine.dispose()


def _kept_night(connection, run_id: str, status: str, sent_at: str | None) -> None:  # type: ignore[no-untyped-def]
    """A run of 2026-11-26 with one score and one patient-night row."""
    connection.execute(
        text(
            "INSERT INTO scoring_runs (run_id, as_of, started_at, status, n_patients, n_scores, "
            "n_alerts, n_data_issues, report_sent_at) VALUES (:run, '2026-11-26', "
            "'2026-11-27 02:00:00', :status, 1, 1, 0, 0, :sent)"
        ),
        {"run": run_id, "status": status, "sent": sent_at},
    )
    connection.execute(
        text(
            "INSERT INTO crs_risk_scores (run_id, as_of, patient_id, model, horizon_days, "
            "target_date, status, inputs_observed, inputs_expected, created_at) VALUES "
            "(:run, '2026-11-26', 'p', 'all', 1, '2026-11-27', 'ok', 9, 42, "
            "'2026-11-27 02:00:00')"
        ),
        {"run": run_id},
    )
    connection.execute(
        text(
            "INSERT INTO crs_patient_nights (run_id, as_of, patient_id, alert, alert_state, "
            "n_inputs_set_aside) VALUES (:run, '2026-11-26', 'p', false, 'none', 0)"
        ),
        {"run": run_id},
    )


def test_0008_keeps_an_emailed_runs_rows_and_its_downgrade_drops_them(db_url):
    """From 0007 with a night stored: 0008 lets an emailed run's rows stay beside a rerun's,
    the views read the current run; back to 0007, the kept rows go (the old unique keys)."""
    config = alembic_config(db_url)
    command.upgrade(config, "0007")
    engine = make_engine(db_url)
    with engine.begin() as connection:
        _kept_night(connection, "emailed", "succeeded", "2026-11-27 06:00:00")
    command.upgrade(config, "0008")
    with engine.begin() as connection:
        connection.execute(text("UPDATE scoring_runs SET status = 'superseded'"))
        _kept_night(connection, "rerun", "succeeded", None)
    with engine.connect() as connection:
        latest = connection.execute(text("SELECT run_id FROM crs_risk_latest")).scalars().all()
        newest = connection.execute(text("SELECT run_id FROM crs_risk_newest_per_patient"))
        sent = connection.execute(text("SELECT run_id, still_current FROM crs_patient_nights_sent"))
        assert latest == ["rerun"] and newest.scalars().all() == ["rerun"]
        assert [(run, bool(current)) for run, current in sent] == [("emailed", False)]
    command.downgrade(config, "0007")
    with engine.connect() as connection:
        for table in ("crs_risk_scores", "crs_patient_nights", "crs_risk_latest"):
            runs = connection.execute(text(f"SELECT run_id FROM {table}")).scalars().all()
            assert runs == ["rerun"], table
    assert "crs_patient_nights_sent" not in inspect(engine).get_view_names()
    command.upgrade(config, "head")
    engine.dispose()
