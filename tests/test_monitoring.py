"""The job watches itself: model_performance agrees with an independent computation on the
same stored predictions, a unit change at the source shows as drift, and silent mode mails
only the validation team."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sqlalchemy import select

from prcrs_batch.app.cli import main
from prcrs_batch.monitoring import drift, performance, watch
from prcrs_batch.offline.datasets import training_frame
from prcrs_batch.results.tables import (
    crs_risk_scores,
    input_drift,
    model_performance,
    prediction_outcomes,
)
from prcrs_batch.task.target import daily_grades
from prcrs_batch.task.thresholds import Tiers
from prcrs_batch.warehouse.contract import crs_assessments
from tests.support import TEST_DATA
from tests.support.nightly import AS_OF, run_night

NIGHTS = [AS_OF + timedelta(days=k) for k in range(-3, 3)]


def _table(engine, query) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    with engine.connect() as connection:
        result = connection.execute(query)
        return pd.DataFrame([tuple(r) for r in result], columns=list(result.keys()))


def _independent(stored: pd.DataFrame, grades: pd.DataFrame, last, window: int) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """The target written out again: onset of grade >= 3 on days n+1..n+h, patient not yet
    severe on day n; a day without a grade is not severe."""
    day_grade: dict[tuple[str, object], int] = {}
    for pid, day, grade in grades.itertuples(index=False):
        key = (str(pid), pd.Timestamp(day).date())
        day_grade[key] = max(int(grade), day_grade.get(key, -1))
    rows = []
    for r in stored.itertuples():
        night = pd.Timestamp(r.as_of).date()
        target = night + timedelta(days=int(r.horizon_days))
        if not (last - timedelta(days=window) < target <= last):
            continue
        earlier = [d for (p, d) in day_grade if p == r.patient_id and d <= night]
        if earlier and day_grade[(r.patient_id, max(earlier))] >= 3:
            continue
        later = [
            day_grade.get((r.patient_id, night + timedelta(days=k)))
            for k in range(1, int(r.horizon_days) + 1)
        ]
        y = int(any(g is not None and g >= 3 for g in later))
        rows.append((r.model, int(r.horizon_days), r.patient_id, r.calibrated_risk, y))
    return pd.DataFrame(rows, columns=["model", "horizon_days", "patient_id", "risk", "y"])


def test_performance_matches_an_independent_computation(settings, warehouse):
    # two windows, as at a site: one read of the stored outcomes serves both
    settings = settings.model_copy(update={"monitor_windows": [2, 30]})
    for night in NIGHTS:
        assert run_night(settings, warehouse, as_of=night).status == "succeeded"
    last = NIGHTS[-1]
    s = crs_risk_scores.c
    stored = _table(
        warehouse,
        select(s.patient_id, s.as_of, s.model, s.horizon_days, s.calibrated_risk).where(
            s.status == "ok", s.as_of < last
        ),
    )
    grades = _table(
        warehouse,
        select(
            crs_assessments.c.patient_id, crs_assessments.c.assessed_on, crs_assessments.c.grade
        ),
    )
    tiers = Tiers.of(json.loads((settings.model_dir / "manifest.json").read_text()))
    got = _table(warehouse, select(model_performance).where(model_performance.c.as_of == last))
    assert len(got) == 36 and set(got["window_days"]) == {2, 30}
    expected = {w: _independent(stored, grades, last, w) for w in (2, 30)}
    for row in got.itertuples():
        mine = expected[row.window_days][
            (expected[row.window_days]["model"] == row.model)
            & (expected[row.window_days]["horizon_days"] == row.horizon_days)
        ]
        assert row.n_predictions == len(mine), (row.model, row.horizon_days)
        assert row.n_events == int(mine["y"].sum())
        assert row.n_patients == mine["patient_id"].nunique()
        flagged = mine["risk"] >= tiers.alert_for(row.model)  # each model at its own
        if row.n_events:
            assert np.isclose(row.alert_sensitivity, flagged[mine["y"] == 1].mean())
        if flagged.any():
            assert np.isclose(row.alert_ppv, mine["y"][flagged].mean())
        if len(mine):
            assert np.isclose(row.observed_rate, mine["y"].mean())
            assert np.isclose(row.mean_predicted, mine["risk"].mean())
            assert np.isclose(row.brier, np.mean((mine["risk"] - mine["y"]) ** 2))
        # the stated too-few rule; per-row figures for the paged `all` model only
        enough = row.n_events >= 5 and row.n_predictions - row.n_events >= 5
        assert pd.isna(row.auroc) == (not enough or row.model != "all")
        if enough and row.model == "all":
            assert np.isclose(row.auroc, roc_auc_score(mine["y"], mine["risk"]))
        if enough and row.model == "all":  # the interval only where monitor pages
            assert row.auroc_low <= row.auroc <= row.auroc_high
        else:
            assert pd.isna(row.auroc_low)
    assert (got["n_predictions"] > 0).any()
    drifted = _table(warehouse, select(input_drift).where(input_drift.c.as_of == last))
    assert len(drifted) == 42
    outcome = CliRunner().invoke(
        main,
        ["monitor"],
        env={
            "PRCRS_WAREHOUSE_URL": settings.warehouse_url,
            "PRCRS_MODEL_DIR": str(settings.model_dir),
        },
    )
    breached = watch.breaches(got)
    assert outcome.exit_code == (2 if breached else 0), outcome.output
    assert "monitoring as of" in outcome.output


def test_discrimination_and_calibration_figures_on_many_predictions():
    """The tiny cohort's nights have too few onsets for an AUROC: here 300 synthetic
    patients over 20 nights, judged by performance.outcomes and .figures and by sklearn."""
    rng = np.random.default_rng(3)
    last = AS_OF
    rows, assessed = [], []
    for i in range(300):
        pid = f"SYN-{i}"
        risk = rng.uniform(0.01, 0.6)
        onset = rng.random() < risk  # riskier patients have their onset more often
        onset_day = last - timedelta(days=int(rng.integers(1, 20)))
        for k in range(25, -1, -1):
            day = last - timedelta(days=k)
            grade = 3 if onset and day >= onset_day else int(rng.integers(0, 2))
            assessed.append((pid, day, grade))
            rows.append(
                (pid, day, "all", 1, float(np.clip(risk + rng.normal(0, 0.05), 0, 1)), "ok")
            )
    stored = pd.DataFrame(
        rows, columns=["patient_id", "as_of", "model", "horizon_days", "calibrated_risk", "status"]
    )
    grades = pd.DataFrame(assessed, columns=["patient_id", "assessed_on", "grade"])
    by_day = daily_grades(grades)
    judged = stored.assign(target=stored["as_of"] + timedelta(days=1))  # horizon 1
    judged = judged[judged["target"] <= last]
    judged = judged.assign(y=performance.outcomes(judged, by_day))
    got = performance.figures(judged, by_day, last, [14], 0.27).iloc[0]
    expected = _independent(stored, grades, last, 14)
    assert got["n_events"] == expected["y"].sum() >= 5
    assert np.isclose(got["auroc"], roc_auc_score(expected["y"], expected["risk"]))
    logit = np.log(
        expected["risk"].clip(1e-6, 1 - 1e-6) / (1 - expected["risk"].clip(1e-6, 1 - 1e-6))
    )
    slope = (
        LogisticRegression(C=np.inf, solver="newton-cg", tol=1e-10, max_iter=1000)
        .fit(logit.to_numpy()[:, None], expected["y"])
        .coef_[0, 0]
    )
    assert np.isclose(got["calibration_slope"], slope, atol=1e-3)
    flagged = expected["risk"] >= 0.27
    assert np.isclose(got["alert_sensitivity"], flagged[expected["y"] == 1].mean())
    assert np.isclose(got["alert_ppv"], expected["y"][flagged].mean())


def test_a_unit_change_at_the_source_shows_as_drift():
    frame = training_frame(TEST_DATA / "tiny_cohort.csv")
    reference = drift.reference(frame)
    night = frame.sample(120, replace=True, random_state=0).reset_index(drop=True)
    steady = drift.drift(night, reference).set_index("analyte")
    shifted_night = night.assign(crp=night["crp"] * 10)  # mg/dL values sent as mg/L
    shifted = drift.drift(shifted_night, reference).set_index("analyte")
    assert not steady.loc["crp", "drifting"] and steady.loc["crp", "psi"] < 0.1
    assert shifted.loc["crp", "drifting"] and shifted.loc["crp", "psi"] > 1.0
    assert shifted.drop(index="crp")["psi"].equals(steady.drop(index="crp")["psi"])


def test_silent_mode_mails_only_the_validation_team(settings, warehouse, smtp_sink):
    settings = settings.model_copy(
        update={
            "smtp_host": smtp_sink.host,
            "smtp_port": smtp_sink.port,
            "smtp_starttls": False,
            "alert_to": ["oncall@hospital.example"],
            "alert_mode": "silent",
            "silent_to": ["validation@hospital.example"],
        }
    )
    summary = run_night(settings, warehouse)
    assert summary.email.startswith("sent"), summary.email
    [(_, recipients, _)] = smtp_sink.handler.received
    assert recipients == ["validation@hospital.example"]
    [message] = smtp_sink.messages
    assert message["Subject"].startswith("[SILENT] ")
    assert "not for clinical use" in message.get_body(("plain",)).get_content()


def test_each_prediction_is_judged_once(settings, warehouse):
    settings = settings.model_copy(update={"monitor_windows": [30]})
    for night in NIGHTS[:4]:
        assert run_night(settings, warehouse, as_of=night).status == "succeeded"
    first = _table(warehouse, select(prediction_outcomes))
    assert len(first) and first["judged_on"].nunique() > 1  # each by the night its date came
    keys = ["as_of", "patient_id", "model", "horizon_days"]
    assert not first.duplicated(keys).any()
    for _, row in first.iterrows():
        assert row["target_date"] <= row["judged_on"]
    # a later night judges only what had not been judged: the earlier rows stay as they were
    assert run_night(settings, warehouse, as_of=NIGHTS[4]).status == "succeeded"
    second = _table(warehouse, select(prediction_outcomes))
    kept = second.merge(first, on=keys, suffixes=("", "_before"))
    assert len(kept) == len(first)
    assert (kept["judged_on"] == kept["judged_on_before"]).all()
    assert (kept["id"] == kept["id_before"]).all()
    assert set(second["judged_on"]) - set(first["judged_on"]) <= {NIGHTS[4]}
    # a rerun of a night drops its own predictions' outcomes, to be judged again
    assert run_night(settings, warehouse, as_of=NIGHTS[0]).status == "succeeded"
    rerun = _table(warehouse, select(prediction_outcomes))
    assert not (rerun["as_of"] == NIGHTS[0]).any()


def test_a_first_night_counts_no_onset_and_later_ones_only_those_a_night_could_warn():
    nights = pd.DataFrame(
        {
            "patient_id": ["A", "A", "B"],
            "as_of": [
                AS_OF - timedelta(days=2),
                AS_OF - timedelta(days=1),
                AS_OF - timedelta(days=1),
            ],
            "alert": [True, False, False],
            "tier": ["alert", None, "watch"],
        }
    )
    grades = {
        "A": {AS_OF - timedelta(days=3): 1, AS_OF: 3},  # on the report the 2 nights before
        "B": {AS_OF - timedelta(days=1): 1, AS_OF: 3},  # on watch the night before, no alert
        "C": {AS_OF - timedelta(days=1): 0, AS_OF: 4},  # never on a stored night
    }
    assert performance.flagged_ahead(nights, grades, AS_OF, 7) == (2, 1, 2)
    first = nights.iloc[:0]
    assert performance.flagged_ahead(first, grades, AS_OF, 7) == (0, 0, 0)


def test_monitor_pages_on_the_all_models_limits_only():
    row = dict.fromkeys(performance.COLUMNS)
    row |= {"model": "all", "horizon_days": 1, "window_days": 30, "auroc": 0.9}
    row |= {"calibration_slope": 1.0, "observed_rate": 0.05, "mean_predicted": 0.05}
    fine = pd.DataFrame([row])
    assert watch.breaches(fine) == []
    low = pd.DataFrame([row | {"auroc": 0.65}])
    assert watch.breaches(low) == ["all 1d, 30 days: AUROC 0.65 < 0.7"]
    steep = pd.DataFrame([row | {"calibration_slope": 2.5}])
    assert "calibration slope 2.50 outside" in watch.breaches(steep)[0]
    under = pd.DataFrame([row | {"observed_rate": 0.2}])
    assert "observed / expected events 4.00 outside" in watch.breaches(under)[0]
    other = pd.DataFrame([row | {"model": "biochem", "auroc": 0.5}])
    assert watch.breaches(other) == []
