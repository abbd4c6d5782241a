"""Models compared on the same rows: the paired bootstrap and which model serves each
pattern of observed lab groups (offline/comparisons.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prcrs_batch.offline import comparisons
from prcrs_batch.task.panel import ANALYTES, HORIZONS


def _cohort(n_patients: int = 60) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Patients of two kinds: the first half without cytokines, on whom `all` (imputing them)
    is uninformative and `no_cytokines` is right; the second half with every group, on whom
    both are right. One day each, every third patient an onset at every horizon."""
    rng = np.random.default_rng(0)
    frame_rows, risk_rows = [], []
    for i in range(n_patients):
        pid, lacks_cytokines, y = f"p{i:02d}", i < n_patients // 2, float(i % 3 == 0)
        labs = {a.code: (np.nan if lacks_cytokines and a.group == 4 else 1.0) for a in ANALYTES}
        frame_rows.append({"patient_id": pid, "day": 0} | labs)
        right = 0.1 + 0.8 * y + rng.normal(0, 0.05)
        for fs in ("all", "no_cytokines"):
            c = rng.uniform(0, 1) if (fs == "all" and lacks_cytokines) else right
            for h in HORIZONS:
                risk_rows.append(
                    {"seed": 0, "method": "prcrs_transfer", "factor_set": fs, "horizon": h}
                    | {"patient_id": pid, "day": 0, "y": y, "c": c}
                )
    return pd.DataFrame(frame_rows), pd.DataFrame(risk_rows)


def test_patterns_name_the_groups_a_day_lacks():
    frame, _ = _cohort(4)
    assert comparisons.observed_groups(frame).tolist() == ["1+2+3", "1+2+3", "1+2+3+4"] + [
        "1+2+3+4"
    ]


def test_a_model_that_ranks_better_on_a_pattern_is_found():
    frame, risks = _cohort()
    table = comparisons.by_pattern(frame, risks, n_boot=100)
    row = table[(table["pattern"] == "1+2+3") & (table["model"] == "no_cytokines")]
    assert len(row) == len(HORIZONS)
    assert (row["recommended"] == "all").all()
    assert (row["low"] > 0).all() and (row["auroc"] == 1.0).all()
    same = table[(table["pattern"] == "1+2+3+4") & (table["model"] == "no_cytokines")]
    assert (same["vs_recommended"] == 0).all()


def test_paired_difference_of_a_model_with_itself_is_exactly_zero():
    y = np.array([0, 1, 0, 1, 0, 0])
    p = np.array([0.1, 0.9, 0.3, 0.4, 0.2, 0.5])
    patients = np.array(["a", "a", "b", "c", "c", "d"])
    assert comparisons.paired_auroc_difference(y, patients, [(p, p)], 50) == (0.0, 0.0, 0.0)
    gap, low, high = comparisons.paired_auroc_difference(y, patients, [(p, 1 - p)], 50)
    assert gap == pytest.approx(2 * 0.875 - 1) and low <= gap <= high
