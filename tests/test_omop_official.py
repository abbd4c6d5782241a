"""The OMOP path on the official CDM v5.4 DDL (issue 25): OHDSI's tables, primary keys and 176
foreign keys in schema `cdm` with a vocabulary as Athena leaves it (tests/support/
official_cdm.py), the tiny cohort loaded through `load-cohort --format omop` with
PRCRS_WAREHOUSE_SCHEMA=cdm, the results in schema `results` (PRCRS_RESULTS_SCHEMA), nights
run by the command line: the risks are the contract path's. PostgreSQL only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, text

from prcrs_batch.app.cli import main
from prcrs_batch.results.engines import make_engine
from tests.support import TEST_DATA
from tests.support.nightly import AS_OF, COHORT
from tests.support.official_cdm import build_official_cdm, foreign_keys

postgres_only = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
NIGHTS = [AS_OF - timedelta(days=2), AS_OF, AS_OF + timedelta(days=2)]
KEY = ["as_of", "patient_id", "model", "horizon_days"]
TINY = str(TEST_DATA / "tiny_cohort.csv")


@pytest.fixture
def site(settings_env: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """An OMOP site's database: the official CDM in `cdm`, nothing else; the job's settings
    point at it (warehouse schema cdm, results schema results)."""
    build_official_cdm(db_url)
    for name, value in {
        "PRCRS_WAREHOUSE_URL": db_url,
        "PRCRS_WAREHOUSE_MODEL": "omop",
        "PRCRS_WAREHOUSE_SCHEMA": "cdm",
        "PRCRS_RESULTS_SCHEMA": "results",
        "PRCRS_REPORT_DIR": str(settings_env / "reports"),
        "PRCRS_DEVICE": "cpu",
    }.items():
        monkeypatch.setenv(name, value)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def cli(*args: str, **env: str) -> Result:
    result = CliRunner().invoke(main, list(args), env=env or None)
    assert "Traceback" not in result.output, result.output
    return result


def tables(engine: Engine, schema: str) -> set[str]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}
        )
        return set(rows.scalars())


def scalar(engine: Engine, sql: str) -> object:
    with engine.connect() as connection:
        return connection.execute(text(sql)).scalar()


def scores(engine: Engine, schema: str) -> pd.DataFrame:
    """The nights' risks of the latest run of each night, in a results schema."""
    query = f"""
        SELECT s.as_of, s.patient_id, s.model, s.horizon_days, s.status, s.calibrated_risk,
               s.probability, s.inputs_observed
        FROM "{schema}".crs_risk_scores AS s
        JOIN "{schema}".scoring_runs AS r ON r.run_id = s.run_id
        WHERE r.status <> 'superseded'
        ORDER BY s.as_of, s.patient_id, s.model, s.horizon_days
    """
    with engine.connect() as connection:
        return pd.read_sql_query(text(query), connection)


def run_nights(**env: str) -> list[dict]:
    records = []
    for night in NIGHTS:
        result = cli("run", "--as-of", night.isoformat(), "--no-email", "--json", **env)
        assert result.exit_code == 0, result.output
        records.append(json.loads(result.stdout.splitlines()[-1]))
    return records


@postgres_only
def test_official_cdm_scores_as_the_contract_path(site, quick_models, monkeypatch):
    monkeypatch.setenv("PRCRS_MODEL_DIR", str(quick_models))
    assert foreign_keys(site.url.render_as_string(hide_password=False)) == 176
    loaded = cli("load-cohort", TINY, "--format", "omop")
    assert loaded.exit_code == 0, loaded.output
    assert cli("load-cohort", TINY, "--format", "omop").output == loaded.output  # idempotent
    assert tables(site, "public") == set()  # nothing created outside the site's schemas
    patients = COHORT["patient_id"].nunique()
    assert scalar(site, "SELECT count(*) FROM cdm.person") == patients
    migrated = cli("init-db")
    assert migrated.exit_code == 0 and "(schema results)" in migrated.output, migrated.output
    assert "alembic_version" in tables(site, "results")

    # The contract path on the same cohort, in schemas of its own (created by the site).
    with site.begin() as connection:
        connection.execute(text("CREATE SCHEMA contract"))
    contract = {"PRCRS_WAREHOUSE_MODEL": "contract", "PRCRS_WAREHOUSE_SCHEMA": "contract",
                "PRCRS_RESULTS_SCHEMA": "results_contract"}  # fmt: skip
    assert cli("load-cohort", TINY, **contract).exit_code == 0
    assert tables(site, "contract") == {"cart_infusions", "lab_results", "crs_assessments"}
    assert cli("init-db", **contract).exit_code == 0

    omop_nights, contract_nights = run_nights(), run_nights(**contract)
    assert [r["status"] for r in omop_nights] == [r["status"] for r in contract_nights]
    assert all(r["status"] == "succeeded" and r["patients"] > 0 for r in omop_nights)
    assert tables(site, "public") == set()
    omop, reference = scores(site, "results"), scores(site, "results_contract")
    assert len(omop) == len(reference) and (reference["status"] == "ok").any()
    risky = ["calibrated_risk", "probability"]
    pd.testing.assert_frame_equal(omop.drop(columns=risky), reference.drop(columns=risky))
    pd.testing.assert_frame_equal(omop[risky], reference[risky], check_exact=True)

    checked = cli("check")
    assert "ok    results    " in checked.output and "(schema results)" in checked.output
    assert "measurement rows per analyte" in checked.output  # the CDM was found in cdm
    historical = cli("check", "--as-of", AS_OF.isoformat())  # a CDM refreshed long ago
    for name in ("warehouse", "freshness"):
        assert f"ok    {name}" in historical.output, historical.output


@postgres_only
def test_loader_uses_the_vocabularys_concepts_and_adds_only_its_own(site):
    assert cli("load-cohort", TINY, "--format", "omop").exit_code == 0
    measurement = "SELECT count(*) FROM cdm.measurement"
    assert scalar(site, f"{measurement} WHERE measurement_type_concept_id <> 32856") == 0
    for table, column in [("procedure_occurrence", "procedure_type_concept_id"),
                          ("condition_occurrence", "condition_type_concept_id"),
                          ("observation", "observation_type_concept_id")]:  # fmt: skip
        assert scalar(site, f"SELECT count(*) FROM cdm.{table} WHERE {column} <> 32817") == 0
    # unit 0 only where the vocabulary has no concept: chloride's "as recorded" (no UCUM
    # code) and mg/L{FEU} (left out of the seeded vocabulary); every other unit is UCUM's
    units = "SELECT DISTINCT unit_source_value FROM cdm.measurement WHERE unit_concept_id = 0"
    with site.connect() as connection:
        assert set(connection.execute(text(units)).scalars()) == {
            "as recorded (see README)",
            "mg/L FEU",
        }
        ucum = connection.execute(text(
            "SELECT DISTINCT c.vocabulary_id FROM cdm.measurement m"
            " JOIN cdm.concept c ON c.concept_id = m.unit_concept_id WHERE c.concept_id <> 0"
        )).scalars().all()  # fmt: skip
        assert ucum == ["UCUM"]
        local = connection.execute(text(
            "SELECT vocabulary_id, concept_code FROM cdm.concept"
            " WHERE concept_id > 2000000000 ORDER BY concept_id"
        )).all()  # fmt: skip
        vocabulary = connection.execute(
            text("SELECT vocabulary_concept_id FROM cdm.vocabulary WHERE vocabulary_id = 'PRCRS'")
        ).scalar_one()
    assert local == [("Vocabulary", "OMOP generated"), ("PRCRS", "ASTCT-CRS-GRADE"),
                     ("PRCRS", "hbdh"), ("PRCRS", "il4"), ("PRCRS", "il17a")]  # fmt: skip
    assert vocabulary > 2_000_000_000


@postgres_only
def test_censored_values_use_the_snomed_operators(site, tmp_path):
    cohort = pd.read_csv(TINY, dtype=str)
    cohort.loc[0, "il6"], cohort.loc[1, "ferritin"] = "<1.5", ">2000"
    cohort.to_csv(tmp_path / "censored.csv", index=False)
    assert cli("load-cohort", str(tmp_path / "censored.csv"), "--format", "omop").exit_code == 0
    with site.connect() as connection:
        operators = connection.execute(text(
            "SELECT c.concept_id, c.vocabulary_id FROM cdm.measurement m"
            " JOIN cdm.concept c ON c.concept_id = m.operator_concept_id ORDER BY 1"
        )).all()  # fmt: skip
    assert operators == [(4171756, "SNOMED"), (4172704, "SNOMED")]  # '<' and '>'


@postgres_only
def test_loader_refuses_a_code_the_vocabulary_lacks_and_writes_nothing(db_url, settings_env,
                                                                       monkeypatch):  # fmt: skip
    build_official_cdm(db_url, without=(("LOINC", "26881-3"), ("ICD10CM", "D89.833")))
    monkeypatch.setenv("PRCRS_WAREHOUSE_URL", db_url)
    monkeypatch.setenv("PRCRS_WAREHOUSE_SCHEMA", "cdm")
    result = cli("load-cohort", TINY, "--format", "omop")
    assert result.exit_code == 1
    assert "lacks LOINC 26881-3, ICD10CM D89.833" in result.output, result.output
    engine = make_engine(db_url)
    assert scalar(engine, "SELECT count(*) FROM cdm.person") == 0
    assert scalar(engine, "SELECT count(*) FROM cdm.concept WHERE concept_id > 2e9") == 0
    engine.dispose()


@postgres_only
def test_loader_never_completes_a_cdm_it_did_not_create(db_url, settings_env, monkeypatch):
    build_official_cdm(db_url)
    engine = make_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE cdm.measurement RENAME TO measurement_old"))
    monkeypatch.setenv("PRCRS_WAREHOUSE_URL", db_url)
    monkeypatch.setenv("PRCRS_WAREHOUSE_SCHEMA", "cdm")
    result = cli("load-cohort", TINY, "--format", "omop")
    assert result.exit_code == 1
    assert "schema cdm holds an OMOP CDM without measurement" in result.output, result.output
    assert "measurement" not in tables(engine, "cdm") and tables(engine, "public") == set()
    monkeypatch.setenv("PRCRS_WAREHOUSE_SCHEMA", "nowhere")
    missing = cli("load-cohort", TINY, "--format", "omop")
    assert missing.exit_code == 1 and "schema nowhere does not exist" in missing.output
    engine.dispose()


@postgres_only
def test_loader_creates_its_own_cdm_in_the_schema_and_ids_in_a_given_range(
    db_url, settings_env, monkeypatch
):
    engine = make_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE SCHEMA trial"))
    monkeypatch.setenv("PRCRS_WAREHOUSE_URL", db_url)
    monkeypatch.setenv("PRCRS_WAREHOUSE_SCHEMA", "trial")
    result = cli("load-cohort", TINY, "--format", "omop", "--concept-ids", "2100000000-2100000999")
    assert result.exit_code == 0, result.output
    assert "person" in tables(engine, "trial") and tables(engine, "public") == set()
    ids = "SELECT min(concept_id), max(concept_id) FROM trial.concept WHERE concept_id > 40000"
    with engine.connect() as connection:
        low, high = connection.execute(text(ids)).one()
        types = connection.execute(text(
            "SELECT DISTINCT measurement_type_concept_id FROM trial.measurement"
        )).scalars().all()  # fmt: skip
    assert 2_100_000_000 <= low <= high <= 2_100_000_999
    assert types == [32856]  # no vocabulary: the type concepts are added under OHDSI's ids
    engine.dispose()
