"""Signals for monitoring: `--json` prints one JSON line per night on stdout, and the
night's Prometheus metrics land in PRCRS_METRICS_FILE (node_exporter's textfile format)."""

from __future__ import annotations

import json
import shutil
import stat
from datetime import timedelta

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from prcrs_batch.app import pipeline
from prcrs_batch.app.cli import main
from prcrs_batch.results import engines
from tests.support.nightly import AS_OF, run_night


@pytest.fixture
def cli_env(settings_env, monkeypatch, db_url, quick_models, warehouse, tmp_path):
    monkeypatch.setenv("PRCRS_WAREHOUSE_URL", db_url)
    monkeypatch.setenv("PRCRS_MODEL_DIR", str(quick_models))
    monkeypatch.setenv("PRCRS_REPORT_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("PRCRS_METRICS_FILE", str(tmp_path / "textfile" / "prcrs_batch.prom"))
    return tmp_path


def metrics(path) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, parsed by prometheus_client's own parser."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }


def test_run_json_is_one_line_and_the_metrics_file_describes_the_night(cli_env):
    outcome = CliRunner().invoke(main, ["run", "--as-of", AS_OF.isoformat(), "--json"])
    assert outcome.exit_code == 0, outcome.output
    lines = outcome.stdout.splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["as_of"] == AS_OF.isoformat() and record["status"] == "succeeded"
    assert record["ok"] is True and record["patients"] > 0
    assert record["scores"] == sum(record["score_statuses"].values())
    assert set(record["seconds"]) >= {"read warehouse", "read feed", "score", "write results"}
    assert record["models_in_error"] == 0 and record["infusion_age_days"] >= 0
    assert record["newest_lab"] is not None

    path = cli_env / "textfile" / "prcrs_batch.prom"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # node_exporter reads it as another user
    values = metrics(path)
    assert values[("prcrs_last_run_status", (("status", "succeeded"),))] == 1
    assert values[("prcrs_last_run_status", (("status", "failed"),))] == 0
    assert values[("prcrs_last_run_status", (("status", "stale_data"),))] == 0
    assert values[("prcrs_last_run_ok", ())] == 1
    assert values[("prcrs_last_run_patients", ())] == record["patients"]
    assert values[("prcrs_last_run_alerts", ())] == record["alerts"]
    assert values[("prcrs_last_run_data_issues", ())] == record["data_issues"]
    assert values[("prcrs_last_run_models_in_error", ())] == 0
    assert values[("prcrs_last_run_stage_seconds", (("stage", "score"),))] > 0
    assert values[("prcrs_last_run_lab_age_seconds", ())] == record["lab_age_hours"] * 3600
    assert ("prcrs_last_run_infusion_age_seconds", ()) in values
    assert values[("prcrs_last_run_duration_seconds", ())] > 0
    assert not list(path.parent.glob(".*.tmp"))  # written atomically, nothing left over


def test_a_failed_night_is_in_the_metrics(settings, engine, tmp_path, monkeypatch):
    settings = settings.model_copy(update={"metrics_file": tmp_path / "m.prom"})
    monkeypatch.setattr(engines, "DB_BACKOFF_SECONDS", 0.0)
    # The warehouse tables are missing: the night fails and is recorded.
    summary = next(pipeline.run_nights(settings, [AS_OF], send_email=False))
    assert summary.status == "failed"
    values = metrics(tmp_path / "m.prom")
    assert values[("prcrs_last_run_status", (("status", "failed"),))] == 1
    assert values[("prcrs_last_run_ok", ())] == 0


def test_metrics_that_cannot_be_written_never_fail_the_night(settings, warehouse, tmp_path):
    (tmp_path / "a-file").write_text("")
    settings = settings.model_copy(update={"metrics_file": tmp_path / "a-file" / "m.prom"})
    summary = next(pipeline.run_nights(settings, [AS_OF], send_email=False))
    assert summary.status == "succeeded"
    assert summary.ok


def test_backfill_shows_progress_and_a_total_and_json_stays_on_stdout(cli_env):
    nights = [(AS_OF - timedelta(days=1)).isoformat(), AS_OF.isoformat()]
    outcome = CliRunner().invoke(
        main, ["backfill", "--start", nights[0], "--end", nights[1], "--json"]
    )
    assert outcome.exit_code == 0, outcome.output
    records = [json.loads(line) for line in outcome.stdout.splitlines()]
    assert [r["as_of"] for r in records] == nights
    assert "night 1/2" in outcome.stderr and "night 2/2" in outcome.stderr
    assert "s left" in outcome.stderr
    assert f"2 nights from {nights[0]} to {nights[1]}" in outcome.stderr
    assert "2 succeeded" in outcome.stderr


def test_run_night_summary_counts_models_in_error(settings, warehouse, quick_models, tmp_path):
    broken = tmp_path / "models"
    shutil.copytree(quick_models, broken)
    (broken / "all_h1.safetensors").unlink()
    summary = run_night(settings.model_copy(update={"model_dir": broken}), warehouse)
    assert summary.n_model_errors == 1
