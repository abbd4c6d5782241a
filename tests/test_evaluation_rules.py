"""The rules behind the figures EVALUATION.md and the README quote: the default alert
threshold, the threshold table and the lead times, on risks whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prcrs_batch.offline.evaluation import (
    MIN_SENSITIVITY_1D,
    default_threshold,
    lead_times,
    threshold_table,
)
from prcrs_batch.task.panel import HORIZONS

ONSET_RISKS = [0.02, 0.1, 0.23, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]  # 3-day risks of 10 onsets


def _risks(seed: int = 0) -> pd.DataFrame:
    """One CV repeat: 10 rows with an onset within 1 day (risk ONSET_RISKS at every horizon)
    and 30 without (risk 0.5 for 10 of them, 0.01 for 20)."""
    rows = []
    others = [0.5] * 10 + [0.01] * 20
    for row, (y, c) in enumerate([(1, r) for r in ONSET_RISKS] + [(0, r) for r in others]):
        for h in HORIZONS:
            rows.append({"seed": seed, "row": row, "horizon": h, "y": float(y), "c": c})
    return pd.DataFrame(rows)


def test_default_threshold_is_the_highest_that_catches_enough_onsets():
    assert MIN_SENSITIVITY_1D == 0.8
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


def test_lead_time_is_the_earliest_flag_within_three_days_before_onset():
    days = []
    for patient, onset_day in (("A", 5), ("B", 4), ("C", 3)):
        for day in range(onset_day + 1):
            days.append({"patient_id": patient, "day": day, "severe_today": day == onset_day})
    frame = pd.DataFrame(days)
    risk = {("A", 2): 0.5, ("A", 3): 0.1, ("A", 4): 0.6, ("C", 2): 0.4, ("C", 1): 0.1}
    risks = pd.DataFrame(
        [
            {"seed": 0, "horizon": 3, "patient_id": p, "day": d, "c": risk.get((p, d), 0.05)}
            for p, d in zip(frame["patient_id"], frame["day"])
        ]
    )
    leads = lead_times(frame, risks, threshold=0.3)
    # A flagged 3 days ahead (day 2), B never, C 1 day ahead (day 2)
    assert leads["onsets"] == 3
    assert leads["warned_share"] == pytest.approx(2 / 3)
    assert leads["median_lead_days"] == pytest.approx(2.0)
    assert leads["mean_lead_days"] == pytest.approx(4 / 3)
    assert np.isnan(lead_times(frame, risks, threshold=0.9)["median_lead_days"])
