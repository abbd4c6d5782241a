"""`prcrs-batch check` on real databases, a real SMTP server and real model files: exit 0
only when every check passes; each failure is one line naming what to fix."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, make_url, text

from prcrs_batch.app.cli import main
from prcrs_batch.devdata.cohort import create_warehouse_tables
from prcrs_batch.resources import model_dir
from prcrs_batch.results.engines import make_engine
from tests.support.nightly import AS_OF
from tests.support.smtp import SMTP_PASSWORD, SMTP_USER

SECRET = "pw-Secret-9"


@pytest.fixture
def installed(settings_env: Path, warehouse: Engine, db_url: str, monkeypatch, smtp_sink) -> Path:
    """A healthy installation: warehouse and results in the test database (its URL with a
    password, which the check must never show), the shipped models, an SMTP server."""
    url = make_url(db_url)
    if url.get_backend_name() == "postgresql":  # trust authentication ignores the password
        url = url.set(password=SECRET)
    monkeypatch.setenv("PRCRS_WAREHOUSE_URL", url.render_as_string(hide_password=False))
    monkeypatch.setenv("PRCRS_REPORT_DIR", str(settings_env / "reports"))
    monkeypatch.setenv("PRCRS_METRICS_FILE", str(settings_env / "metrics" / "prcrs.prom"))
    monkeypatch.setenv("PRCRS_SMTP_HOST", smtp_sink.host)
    monkeypatch.setenv("PRCRS_SMTP_PORT", str(smtp_sink.port))
    monkeypatch.setenv("PRCRS_SMTP_STARTTLS", "false")
    monkeypatch.setenv("PRCRS_ALERT_TO", "oncall@example.org")
    return settings_env


def check(*options: str) -> Result:
    return CliRunner().invoke(main, ["check", *options])


def lines(result: Result, status: str) -> dict[str, str]:
    """The check lines with this status ("ok" or "FAIL"), by check name."""
    found = {}
    for line in result.output.splitlines():
        if line.startswith(f"{status} "):
            _, name, detail = line.split(maxsplit=2)
            found[name] = detail
    return found


def test_healthy_installation_passes_every_check(installed, smtp_sink):
    result = check("--as-of", AS_OF.isoformat())  # the test warehouse's data day
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    passed = lines(result, "ok")
    assert list(passed) == [
        "settings",
        "warehouse",
        "results",
        "models",
        "smtp",
        "reports",
        "metrics",
        "freshness",
    ]
    assert result.output.rstrip().endswith("all 8 checks passed")
    assert "cart_infusions, lab_results, crs_assessments present" in passed["warehouse"]
    assert "schema at revision" in passed["results"]
    assert "checksums verified" in passed["models"] and "not quick" in passed["models"]
    assert "EHLO accepted (nothing sent)" in passed["smtp"]
    assert "active patients tonight" in passed["freshness"]
    assert "PRCRS_ACTIVE_DAYS" in result.output and "PRCRS_SMTP_PASSWORD" in result.output
    assert SECRET not in result.output
    assert smtp_sink.handler.received == []
    assert not (installed / "reports").exists()  # checked, not created


def test_renamed_contract_table_fails_naming_it(installed, warehouse):
    with warehouse.begin() as connection:
        connection.execute(text("ALTER TABLE lab_results RENAME TO lab_results_old"))
    result = check()
    assert result.exit_code == 1
    failed = lines(result, "FAIL")
    assert "table or view lab_results is missing" in failed["warehouse"]
    assert list(failed) == ["warehouse", "freshness"]
    assert "1 of" not in result.output and "2 of 8 checks failed" in result.output


def test_unusable_column_type_fails_naming_the_column(installed, warehouse):
    with warehouse.begin() as connection:
        connection.execute(text("DROP TABLE crs_assessments"))
        connection.execute(
            text("CREATE TABLE crs_assessments (patient_id TEXT, assessed_on DATE, grade TEXT)")
        )
    failed = lines(check(), "FAIL")
    assert "crs_assessments.grade is text, expected integer" in failed["warehouse"]


def test_missing_results_schema_says_run_init_db(settings_env, db_url, monkeypatch):
    engine = make_engine(db_url)
    create_warehouse_tables(engine)  # the warehouse only
    engine.dispose()
    monkeypatch.setenv("PRCRS_WAREHOUSE_URL", db_url)
    result = check()
    assert result.exit_code == 1
    assert "no results schema: run `prcrs-batch init-db`" in lines(result, "FAIL")["results"]


def test_corrupt_model_file_fails_the_models_check(installed, monkeypatch, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(model_dir(), models)
    weights = models / "all_h1.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    monkeypatch.setenv("PRCRS_MODEL_DIR", str(models))
    failed = lines(check(), "FAIL")
    assert failed["models"].endswith("all_h1.safetensors checksum differs from manifest.json")


def test_quick_trained_models_fail_the_models_check(installed, monkeypatch, quick_models):
    monkeypatch.setenv("PRCRS_MODEL_DIR", str(quick_models))
    assert "QUICK-TRAINED" in lines(check(), "FAIL")["models"]


def test_smtp_login_is_tried_and_the_password_never_shown(installed, monkeypatch, smtp_auth_sink):
    monkeypatch.setenv("PRCRS_SMTP_PORT", str(smtp_auth_sink.port))
    monkeypatch.setenv("PRCRS_SMTP_USER", SMTP_USER)
    monkeypatch.setenv("PRCRS_SMTP_PASSWORD", SMTP_PASSWORD)
    assert f"login as {SMTP_USER} accepted" in lines(check(), "ok")["smtp"]
    monkeypatch.setenv("PRCRS_SMTP_PASSWORD", "wrong-" + SMTP_PASSWORD)
    result = check()
    assert "SMTPAuthenticationError" in lines(result, "FAIL")["smtp"]
    assert SMTP_PASSWORD not in result.output
    assert smtp_auth_sink.handler.received == []


def test_smtp_starttls_with_the_sites_ca(installed, monkeypatch, smtp_tls_sink):
    monkeypatch.setenv("PRCRS_SMTP_PORT", str(smtp_tls_sink.port))
    monkeypatch.setenv("PRCRS_SMTP_STARTTLS", "true")
    monkeypatch.setenv("PRCRS_SMTP_CA_FILE", smtp_tls_sink.ca_file)
    assert "EHLO, STARTTLS accepted" in lines(check(), "ok")["smtp"]
    monkeypatch.delenv("PRCRS_SMTP_CA_FILE")  # the system's CAs do not know the test CA
    assert "SSLCertVerificationError" in lines(check(), "FAIL")["smtp"]


def test_report_folder_that_cannot_be_made_fails(installed, monkeypatch):
    (installed / "a-file").write_text("")
    monkeypatch.setenv("PRCRS_REPORT_DIR", str(installed / "a-file" / "reports"))
    assert "is not a folder" in lines(check(), "FAIL")["reports"]


def test_bad_setting_is_one_failed_line(settings_env, monkeypatch):
    monkeypatch.setenv("PRCRS_ACTIVE_DAYS", "thirty")
    result = check()
    assert result.exit_code == 1
    assert result.output.startswith("FAIL  settings   PRCRS_ACTIVE_DAYS")
    assert len(result.output.strip().splitlines()) == 1


def test_unknown_variable_fails_the_settings_check(installed, monkeypatch):
    monkeypatch.setenv("PRCRS_ALERT_THRESHHOLD", "0.4")
    result = check()
    assert result.exit_code == 1
    assert "did you mean PRCRS_ALERT_THRESHOLD?" in lines(result, "FAIL")["settings"]


def test_check_as_of_judges_a_cdm_refreshed_weeks_ago_by_its_last_day(
    installed, warehouse, monkeypatch
):
    """An OMOP CDM whose last refresh ended on AS_OF: today nothing was measured in the last
    30 days, so the warehouse check fails; `--as-of AS_OF` judges it as that night would."""
    from prcrs_batch.devdata.omop import load_cohort_omop
    from tests.support.nightly import COHORT

    load_cohort_omop(warehouse, COHORT)
    monkeypatch.setenv("PRCRS_WAREHOUSE_MODEL", "omop")
    today = lines(check(), "FAIL")
    assert "0 of 42 analytes matched" in today["warehouse"]
    result = CliRunner().invoke(main, ["check", "--as-of", AS_OF.isoformat()])
    assert "warehouse" in lines(result, "ok") and "freshness" in lines(result, "ok"), result.output
    assert "warehouse" not in lines(result, "FAIL")


def test_a_dead_feed_fails_the_check_naming_the_setting(installed, smtp_sink):
    result = check()  # tonight's data day: the test warehouse's labs are long past
    assert result.exit_code != 0
    assert "PRCRS_MAX_LAB_AGE_HOURS" in lines(result, "FAIL")["freshness"]


def test_check_names_what_an_omop_mapping_silently_misses(installed, warehouse, monkeypatch):
    from sqlalchemy import text

    from prcrs_batch.devdata.omop import load_cohort_omop
    from tests.support.nightly import COHORT

    load_cohort_omop(warehouse, COHORT)
    monkeypatch.setenv("PRCRS_WAREHOUSE_MODEL", "omop")
    as_of = ["--as-of", AS_OF.isoformat()]
    before = lines(check(*as_of), "ok")["warehouse"]
    found = re.search(r"infusions found: (\d+) through drug_exposure, (\d+) through", before)
    assert found and int(found[1]) + int(found[2]) > 0, before
    assert "person_source_value" not in before and "value_as_concept_id" not in before
    with warehouse.begin() as connection:
        infused = "SELECT person_id FROM procedure_occurrence ORDER BY procedure_date LIMIT 1"
        first = connection.execute(text(infused)).scalar_one()
        connection.execute(
            text("UPDATE person SET person_source_value = NULL WHERE person_id = :p"), {"p": first}
        )
        connection.execute(
            text(
                "UPDATE measurement SET value_as_number = NULL, value_as_concept_id = 4181412 "
                "WHERE measurement_id = (SELECT MAX(measurement_id) FROM measurement)"
            )
        )
    after = check(*as_of).output
    assert "1 infused persons have no person_source_value" in after
    assert "PRCRS_OMOP_PATIENT_ID=person_id" in after
    assert "1 lab results in the last 30 days carry only value_as_concept_id" in after
