"""deploy/: the Kubernetes manifests validated offline against the Kubernetes schemas
(kubernetes-validate ships them), and the systemd units checked by systemd itself
(`systemd-analyze verify`, where installed), plus the settings they name."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes_validate import utils as kubernetes

from prcrs_batch.app.cli import backfill
from prcrs_batch.settings import Settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
MANIFEST = DEPLOY / "kubernetes" / "prcrs-batch.yaml"
BACKFILL = DEPLOY / "kubernetes" / "prcrs-batch-backfill.yaml"
UNITS = ["prcrs-batch-nightly.service", "prcrs-batch-nightly.timer", "prcrs-batch.service"]
SETTINGS = {f"PRCRS_{name.upper()}" for name in Settings.model_fields}
# CronJob.spec.timeZone is GA from 1.27; the newest schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ["1.27.0", "1.30.0", kubernetes.latest_version() + ".0"]


def _documents() -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text()) if d}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifest_is_valid_against_the_kubernetes_schemas(version):
    documents = _documents()
    assert set(documents) == {"ConfigMap", "Secret", "PersistentVolumeClaim", "CronJob"}
    for document in documents.values():
        kubernetes.validate(document, version, strict=True)  # raises on any error


def test_a_misspelt_field_fails_validation():
    cronjob = _documents()["CronJob"]
    cronjob["spec"]["concurencyPolicy"] = cronjob["spec"].pop("concurrencyPolicy")
    with pytest.raises(kubernetes.ValidationError):
        kubernetes.validate(cronjob, KUBERNETES_VERSIONS[-1], strict=True)


def test_cronjob_runs_one_night_at_a_time_as_non_root_on_a_read_only_root():
    documents = _documents()
    spec = documents["CronJob"]["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["timeZone"] == documents["ConfigMap"]["data"]["PRCRS_TIMEZONE"]
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    for container in pod["initContainers"] + pod["containers"]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert "memory" in container["resources"]["limits"]
    (job,) = pod["containers"]
    assert job["command"] == ["prcrs-batch", "run", "--json"]
    assert pod["initContainers"][0]["command"] == ["prcrs-batch", "init-db"]
    # docs/benchmarks.md: 10,000 patients peak at 1.4-1.6 GiB on 2 cores.
    assert job["resources"]["requests"] == {"cpu": "2", "memory": "2Gi"}
    assert (
        documents["ConfigMap"]["data"]["PRCRS_TORCH_THREADS"] == job["resources"]["limits"]["cpu"]
    )


def test_manifest_names_only_real_settings_and_keeps_secrets_in_the_secret():
    documents = _documents()
    config = set(documents["ConfigMap"]["data"])
    secret = set(documents["Secret"]["stringData"])
    assert config <= SETTINGS and secret <= SETTINGS
    assert not config & secret
    assert "PRCRS_SMTP_PASSWORD" in secret and "PRCRS_SMTP_PASSWORD" not in config
    assert {k for k in SETTINGS if k.endswith("_URL")} <= secret  # URLs carry passwords here


def _backfill_jobs() -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in yaml.safe_load_all(BACKFILL.read_text()) if d}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_backfill_manifest_is_valid_against_the_kubernetes_schemas(version):
    jobs = _backfill_jobs()
    assert set(jobs) == {"prcrs-batch-backfill", "prcrs-batch-backfill-finish"}
    for job in jobs.values():
        assert job["kind"] == "Job"
        kubernetes.validate(job, version, strict=True)


def test_backfill_shares_by_completion_index_then_finishes_once_as_the_cli_parses_it():
    jobs = _backfill_jobs()
    shares, finish = jobs["prcrs-batch-backfill"], jobs["prcrs-batch-backfill-finish"]
    assert shares["spec"]["completionMode"] == "Indexed"
    assert finish["spec"]["suspend"] is True  # started once the shares are complete
    (share,) = shares["spec"]["template"]["spec"]["containers"]
    (last,) = finish["spec"]["template"]["spec"]["containers"]
    assert "--shard-index=$(JOB_COMPLETION_INDEX)" in share["command"]
    assert f"--shards={shares['spec']['completions']}" in share["command"]
    assert [a for a in share["command"] if "--shard-index" not in a] == [
        a for a in last["command"] if a != "--finish"
    ]  # the same range and shares
    config = set(_documents()["ConfigMap"]["data"]) | set(_documents()["Secret"]["stringData"])
    for job, container in ((shares, share), (finish, last)):
        pod = job["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["envFrom"] == [
            {"configMapRef": {"name": "prcrs-batch"}},
            {"secretRef": {"name": "prcrs-batch"}},
        ]  # prcrs-batch.yaml's settings
        named = {e["name"] for e in container["env"] if e["name"].startswith("PRCRS_")}
        assert named <= SETTINGS and not named & config - {"PRCRS_REPORT_DIR"}
        assert container["command"][:2] == ["prcrs-batch", "backfill"]
        args = [a.replace("$(JOB_COMPLETION_INDEX)", "3") for a in container["command"][2:]]
        backfill.make_context("backfill", args)  # raises on an option the CLI lacks


def _units() -> dict[str, configparser.ConfigParser]:
    parsed = {}
    for name in UNITS:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string((DEPLOY / name).read_text())
        parsed[name] = parser
    return parsed


def test_timer_starts_the_oneshot_service_and_catches_up_missed_nights():
    units = _units()
    timer = units["prcrs-batch-nightly.timer"]
    assert timer["Timer"]["Unit"] == "prcrs-batch-nightly.service"
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["OnCalendar"].startswith("*-*-* 02:00:00")
    service = units["prcrs-batch-nightly.service"]["Service"]
    assert service["Type"] == "oneshot"
    assert service["ExecStartPre"].endswith("prcrs-batch init-db")
    assert service["ExecStart"].endswith("prcrs-batch run --json")
    for name in ("prcrs-batch-nightly.service", "prcrs-batch.service"):
        assert "PRCRS_RESULTS_URL=" not in units[name]["Service"]["ExecStartPre"]


def test_units_pass_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    # verify insists that ExecStart's program exists: point it at this environment's.
    here = Path(sys.executable).parent / "prcrs-batch"
    if not here.exists():
        pytest.skip("prcrs-batch console script not installed in this environment")
    for name in UNITS:
        text = (DEPLOY / name).read_text()
        (tmp_path / name).write_text(
            text.replace("/opt/prcrs-batch/.venv/bin/prcrs-batch", str(here))
        )
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(tmp_path / n) for n in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
