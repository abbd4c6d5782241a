"""The rules behind the figures EVALUATION.md and the README quote: the default alert
threshold, the threshold table and the lead times, on risks whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prcrs_batch.offline.evaluation import (
    default_threshold,
    lead_times,
    nested_tiers,
    threshold_table,
)
from prcrs_batch.task.panel import HORIZONS
from prcrs_batch.task.thresholds import ALERT_CATCH

ONSET_RISKS = [0.02, 0.1, 0.23, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]  # 3-day risks of 10 onsets


def _risks(seed: int = 0) -> pd.DataFrame:
    """One CV repeat: 10 rows with an onset within 1 day (risk ONSET_RISKS at every horizon)
    and 30 without (risk 0.5 for 10 of them, 0.01 for 20)."""
    rows = []
    others = [0.5] * 10 + [0.01] * 20
    for row, (y, c) in enumerate([(1, r) for r in ONSET_RISKS] + [(0, r) for r in others]):
        for h in HORIZONS:
            rows.append(
                {"seed": seed, "row": row, "patient_id": f"p{row}", "day": 0, "horizon": h}
                | {"y": float(y), "c": c}
            )
    return pd.DataFrame(rows)


def test_default_threshold_is_the_highest_that_catches_enough_onsets():
    assert ALERT_CATCH == 0.8
    # 8 of the 10 onsets must reach it: the third-lowest onset risk, 0.23
    assert default_threshold(_risks()) == pytest.approx(0.23)
    shifted = _risks()
    shifted.loc[shifted["c"] == 0.23, "c"] = 0.29
    assert default_threshold(shifted) == pytest.approx(0.29)


def test_threshold_table_counts_by_hand():
    table = threshold_table(_risks(), thresholds=(0.25,)).iloc[0]
    # at 0.25: 7 of 10 onsets flagged, and 10 of the 30 others: PPV 7/17, 17 of 40 rows
    assert table["sensitivity_1"] == pytest.approx(0.7)
    assert table["ppv_1"] == pytest.approx(7 / 17)
    assert table["alerts_per_100_1"] == pytest.approx(100 * 17 / 40)
    assert table["alert_sensitivity_1"] == pytest.approx(0.7)


def _patient_days(risk: dict[tuple[str, int], float], onset_days: dict[str, int]) -> pd.DataFrame:
    """One CV repeat: each patient scored on days 0 .. onset - 1 (risk 0.05 unless given)
    with the labels those days have, at every horizon."""
    rows = []
    for patient, onset in onset_days.items():
        for day in range(onset):
            for h in HORIZONS:
                y = 1.0 if onset - day <= h else 0.0
                c = risk.get((patient, day), 0.05)
                rows.append(
                    {"seed": 0, "row": len(rows) // len(HORIZONS), "patient_id": patient}
                    | {"day": day, "horizon": h, "y": y, "c": c}
                )
    return pd.DataFrame(rows)


def test_lead_time_is_the_earliest_flag_within_three_days_before_onset():
    risk = {("A", 2): 0.5, ("A", 3): 0.1, ("A", 4): 0.6, ("C", 2): 0.4, ("C", 1): 0.1}
    risks = _patient_days(risk, {"A": 5, "B": 4, "C": 3})
    leads = lead_times(risks, threshold=0.3)
    # A flagged 3 days ahead (day 2), B never, C 1 day ahead (day 2)
    assert leads["onsets"] == 3
    assert leads["warned"] == pytest.approx(2 / 3)
    assert leads["median_lead_days"] == pytest.approx(2.0)
    assert leads["mean_lead_days"] == pytest.approx(4 / 3)
    assert np.isnan(lead_times(risks, threshold=0.9)["median_lead_days"])


def test_nested_tiers_judge_each_fold_at_thresholds_chosen_without_it():
    # Two folds of five onsets each. Fold 0's onsets are flagged on the night before at
    # 0.8, fold 1's at 0.2: chosen on fold 1 alone, fold 0's threshold is 0.2 (it flags all
    # of fold 0); chosen on fold 0 alone, fold 1's is 0.8 (it flags none of fold 1).
    risk, folds = {}, {}
    for i in range(10):
        patient = f"p{i}"
        risk[(patient, 3)] = 0.8 if i < 5 else 0.2
        folds[patient] = 0 if i < 5 else 1
    risks = _patient_days(risk, {f"p{i}": 4 for i in range(10)})
    risks["fold"] = risks["patient_id"].map(folds)
    tiers = nested_tiers(risks)
    assert tiers["alert"]["onsets"] == 10
    assert tiers["alert"]["flagged_night_before"] == pytest.approx(0.5)
    assert (tiers["alert"]["threshold_low"], tiers["alert"]["threshold_high"]) == (0.2, 0.8)
    # in sample the rule would pick 0.2 and flag every onset: nesting shows the optimism
    assert default_threshold(risks) == pytest.approx(0.2)
