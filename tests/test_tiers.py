"""Each model's own alert threshold and the watch tier (task/thresholds.Tiers), from the
alert decision to the report and the stored patient-night."""

from __future__ import annotations

import json
import shutil

from prcrs_batch.task.thresholds import Tiers
from tests.support.nightly import run_night
from tests.support.report_data import (
    EMPTY_HISTORY,
    make_data_issues,
    make_patients,
    make_run,
    make_scores,
    render_report,
    summarise,
)

MANIFEST = {
    "models": [
        {"factor_set": "all", "thresholds": {"alert": 0.30, "watch": 0.15}},
        {"factor_set": "no_cytokines", "thresholds": {"alert": 0.20, "watch": None}},
    ]
}
SPEC = {
    "SYN-ALERT": {"all": (0.10, 0.20, 0.35)},
    "SYN-WATCH": {"all": (0.05, 0.10, 0.16)},  # under 30%, over all's watch 15%
    "SYN-QUIET": {"all": (0.01, 0.02, 0.03)},
    # no cytokines: its own 20% makes 0.22 an alert, where `all`'s 30% would not
    "SYN-OWN": {"all": "insufficient", "no_cytokines": (0.10, 0.15, 0.22)},
    "SYN-OWN-LOW": {"all": "insufficient", "no_cytokines": (0.10, 0.15, 0.18)},  # no watch tier
}


def _summaries(tiers: Tiers):
    ids = list(SPEC)
    got = summarise(make_patients(ids), make_scores(SPEC), EMPTY_HISTORY, tiers)
    return {s.patient_id: s for s in got}


def test_each_model_alerts_and_watches_at_its_own_thresholds():
    got = _summaries(Tiers.of(MANIFEST))
    assert {p: s.tier for p, s in got.items()} == {
        "SYN-ALERT": "alert",
        "SYN-WATCH": "watch",
        "SYN-QUIET": None,
        "SYN-OWN": "alert",
        "SYN-OWN-LOW": None,
    }
    assert got["SYN-OWN"].threshold == 0.20 and got["SYN-ALERT"].threshold == 0.30
    assert got["SYN-OWN"].alert_state == "new"


def test_a_setting_overrides_every_models_thresholds():
    got = _summaries(Tiers.of(MANIFEST, alert_override=0.3, watch_override=0.17))
    assert got["SYN-OWN"].tier == "watch"  # 0.22: under 30%, over 17%
    assert got["SYN-WATCH"].tier is None  # 0.16 < 0.17


def test_the_report_lists_watch_patients_under_the_alerts_and_names_a_models_own_threshold():
    ids = list(SPEC)
    report = render_report(
        run=make_run(len(ids)),
        patients=make_patients(ids),
        scores=make_scores(SPEC),
        history=EMPTY_HISTORY,
        data_issues=make_data_issues(),
        threshold=Tiers.of(MANIFEST),
    )
    assert report.n_alerts == 2
    for part in (report.html, report.text):
        watch = part.index("Watch: under the alert threshold")
        assert part.index("SYN-OWN") < watch < part.index("SYN-WATCH") < part.index("SYN-QUIET")
        assert "alert at ≥ 20% on this model" in part
    assert "Alert at ≥ 30%." in report.html  # the heading states `all`'s
    assert report.html.count("alert at ≥") == 1  # SYN-ALERT is on `all`: nothing to name


def test_models_without_thresholds_fail_the_night_until_retrained_or_overridden(
    settings, warehouse, tmp_path
):
    """No threshold is typed in the code: a manifest from before per-model thresholds is
    refused with what to do, and PRCRS_ALERT_THRESHOLD makes it usable."""
    old = tmp_path / "old_models"
    shutil.copytree(settings.model_dir, old)
    manifest = json.loads((old / "manifest.json").read_text())
    for model in manifest["models"]:
        model.pop("thresholds", None)
    (old / "manifest.json").write_text(json.dumps(manifest))
    settings = settings.model_copy(update={"model_dir": old})

    failed = run_night(settings, warehouse)
    assert failed.status == "failed"
    assert "retrain" in failed.error and "PRCRS_ALERT_THRESHOLD" in failed.error
    overridden = run_night(settings.model_copy(update={"alert_threshold": 0.3}), warehouse)
    assert overridden.status == "succeeded"
