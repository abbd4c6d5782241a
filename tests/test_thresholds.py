"""The alert and watch rules (task/thresholds.py) and what a threshold catches, on
patient-days whose answers are counted by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prcrs_batch.task import thresholds
from prcrs_batch.task.thresholds import OnsetRisks


def _rows(nights: dict[str, list[float]], quiet: list[float]) -> pd.DataFrame:
    """Patients with an onset the day after their last listed night (risks of the 3 nights
    before it, oldest first), and patients without onset (one quiet day each)."""
    rows = []
    for patient, risks in nights.items():
        n = len(risks)
        for k, r in enumerate(risks):
            rows.append(
                {"patient_id": patient, "day": k, "risk": r, "y1": float(k == n - 1)}
                | {"y_last": 1.0}
            )
    for i, r in enumerate(quiet):
        rows.append({"patient_id": f"q{i}", "day": 0, "risk": r, "y1": 0.0, "y_last": 0.0})
    return pd.DataFrame(rows)


NIGHTS = {  # the night before the onset is the last
    "a": [0.05, 0.5, 0.6],
    "b": [0.05, 0.05, 0.4],
    "c": [0.3, 0.05, 0.05],
    "d": [0.05, 0.15, 0.1],
    "e": [0.05, 0.05, 0.35],
}


def test_onset_risks_read_the_three_nights_before_each_onset():
    onsets = OnsetRisks.of(_rows(NIGHTS, [0.01, 0.5]))
    assert onsets.night_before.tolist() == [0.6, 0.4, 0.05, 0.1, 0.35]
    assert onsets.nights_before[2].tolist() == [0.3, 0.05, 0.05]
    assert len(onsets.risks) == 17


def test_alert_rule_is_the_highest_threshold_flagging_enough_nights_before():
    onsets = OnsetRisks.of(_rows(NIGHTS, []))
    # 4 of 5 (80%) night-before risks must reach it: 0.6, 0.4, 0.35 and 0.1 -> 0.1
    assert thresholds.alert_threshold([onsets]) == pytest.approx(0.1)


def test_watch_rule_is_lower_and_warns_almost_every_onset():
    onsets = OnsetRisks.of(_rows(NIGHTS, []))
    # at 0.1 the alert already warns a, b, d, e and c (0.3 three nights before): 5 of 5
    assert thresholds.watch_threshold([onsets], 0.1) is None
    # with an alert at 0.4, 95% needs every onset warned: d's highest night is 0.15
    assert thresholds.watch_threshold([onsets], 0.4) == pytest.approx(0.15)


def test_caught_counts_by_hand():
    onsets = OnsetRisks.of(_rows(NIGHTS, [0.01, 0.5, 0.02, 0.03]))
    figures = thresholds.caught(onsets, 0.3)
    assert figures["onsets"] == 5
    assert figures["flagged_night_before"] == pytest.approx(3 / 5)  # a, b, e
    assert figures["warned"] == pytest.approx(4 / 5)  # and c, three nights ahead
    # leads: a 2 days (0.5 on night d-2), b 1, c 3, e 1 -> median 1.5; mean with d's 0: 7 / 5
    assert figures["median_lead_days"] == pytest.approx(1.5)
    assert figures["mean_lead_days"] == pytest.approx(7 / 5)
    # flagged days: a(2), b(1), c(1), e(1) and one quiet: 6 of 19; PPV 5 of 6
    assert figures["flagged_per_100"] == pytest.approx(100 * 6 / 19)
    assert figures["ppv"] == pytest.approx(5 / 6)


def test_no_onsets_gives_no_figures_rather_than_an_error():
    onsets = OnsetRisks.of(_rows({}, [0.1, 0.2]))
    figures = thresholds.caught(onsets, 0.3)
    assert figures["onsets"] == 0 and np.isnan(figures["warned"])
    assert thresholds.alert_threshold([onsets]) == thresholds.GRID[0]
