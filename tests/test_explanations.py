"""Explanations are the model's own answer: each contribution is the nightly score with and
without that one lab, and the lines the report shows come with their times and previous
values."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from prcrs_batch.modeling import store
from prcrs_batch.nightly import explanations, scoring
from prcrs_batch.task.panel import ANALYTE_CODES, HORIZONS
from tests.support.nightly import COHORT


def _features() -> pd.DataFrame:
    frame = COHORT.drop_duplicates("patient_id").set_index("patient_id")[list(ANALYTE_CODES)]
    return frame.apply(pd.to_numeric, errors="coerce").iloc[:6]


def _risk(scores: pd.DataFrame, pid: str, horizon: int) -> float:
    row = scores[
        (scores["patient_id"] == pid)
        & (scores["model"] == "all")
        & (scores["horizon_days"] == horizon)
    ]
    return float(row["calibrated_risk"].iloc[0])


def test_contribution_is_the_score_without_that_lab(quick_models):
    bundle = store.load_models(quick_models, "cpu")
    features = _features()
    explained = explanations.explain(bundle, features, {p: "all" for p in features.index}, "cpu")
    assert list(explained.columns) == explanations.COLUMNS
    assert len(explained) > 0
    assert (explained["contribution"] > 0).all() and explained["rank"].between(1, 5).all()
    for _, rows in explained.groupby(["patient_id", "horizon_days"]):
        assert rows["rank"].tolist() == list(range(1, len(rows) + 1))
        assert rows["contribution"].is_monotonic_decreasing
    pid, horizon, analyte, contribution = explained.iloc[0][
        ["patient_id", "horizon_days", "analyte", "contribution"]
    ]
    full = scoring.score(bundle, features.loc[[pid]], "cpu")
    without = features.loc[[pid]].copy()
    without[analyte] = np.nan
    occluded = scoring.score(bundle, without, "cpu")
    expected = _risk(full, pid, horizon) - _risk(occluded, pid, horizon)
    assert abs(contribution - expected) < 1e-6
    assert explained.iloc[0]["value"] == features.at[pid, analyte]


def test_patients_explained_a_few_at_a_time_give_the_same_rows(quick_models, monkeypatch):
    # PER_PASS bounds the occluded copies held at once; the rows and their order stay.
    bundle = store.load_models(quick_models, "cpu")
    features = _features()
    chosen = {p: m for p, m in zip(features.index, ["all", "no_cytokines"] * 3)}
    whole = explanations.explain(bundle, features, chosen, "cpu")
    monkeypatch.setattr(explanations, "PER_PASS", 2)
    pd.testing.assert_frame_equal(explanations.explain(bundle, features, chosen, "cpu"), whole)


def test_lab_lines_carry_time_and_previous_result():
    explained = pd.DataFrame(
        {
            "patient_id": ["p1", "p1", "p1"],
            "model": "all",
            "horizon_days": [1, HORIZONS[-1], HORIZONS[-1]],
            "rank": [1, 1, 2],
            "analyte": ["crp", "il6", "crp"],
            "value": [96.0, 1240.0, 96.0],
            "unit": ["mg/L", "pg/mL", "mg/L"],
            "contribution": [0.2, 0.14, 0.08],
        }
    )
    now, before = datetime(2026, 11, 26, 6, 10), datetime(2026, 11, 25, 6, 0)
    clean = pd.DataFrame(
        {
            "patient_id": ["p1", "p1"],
            "analyte": ["il6", "crp"],
            "collected_at": [now, now],
            "value": [1240.0, 96.0],
        }
    )
    previous = pd.DataFrame(
        {"patient_id": ["p1"], "analyte": ["il6"], "collected_at": [before], "value": [85.0]}
    )
    [il6, crp] = explanations.lab_lines(explained, clean, previous)["p1"]
    assert (il6.analyte, il6.collected_at, il6.previous_value, il6.previous_at) == (
        "il6",
        now,
        85.0,
        before,
    )
    assert crp.previous_value is None and crp.horizon_days == HORIZONS[-1]
