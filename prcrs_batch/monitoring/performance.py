"""How the stored risks did, once the outcomes arrived: per model and horizon, over rolling
windows, with metrics.py's figures (the ones `evaluate` reports).

A prediction (a stored `ok` row of night n, horizon h) is judged once, by the first night
whose as-of date is on or after its `target_date` = n + h (watch.py stores it in
prediction_outcomes; a grade charted after that is not seen). Its outcome is the early-warning
target of task.target.horizon_label on the CRS grades known tonight: onset of grade >= 3 on
days n+1..n+h, among patients not yet severe on day n (a day without a grade reads as not
severe, as in training). A window of W days holds the predictions whose
target date lies in the last W days (as_of - W, as_of].

Too few to say: with fewer than `MIN_EVENTS` events or `MIN_EVENTS` non-events, AUROC, its
interval, AUPRC and the calibration intercept and slope are NULL (counts, Brier, mean
predicted and observed rate are still given); sensitivity is NULL without events, PPV
without alerts, the median lead without a flagged onset.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import numpy as np
import pandas as pd

from prcrs_batch.task import metrics
from prcrs_batch.task.panel import HORIZONS
from prcrs_batch.task.target import horizon_label, onset_days
from prcrs_batch.task.thresholds import Tiers

MIN_EVENTS = 5  # events and non-events a window needs for discrimination and calibration
PAGED_MODEL = "all"  # the model `monitor` pages on: the only one with per-row figures nightly
COLUMNS = [
    "model",
    "horizon_days",
    "window_days",
    "n_predictions",
    "n_patients",
    "n_events",
    "auroc",
    "auroc_low",
    "auroc_high",
    "auprc",
    "brier",
    "mean_predicted",
    "observed_rate",
    "calibration_intercept",
    "calibration_slope",
    "alert_sensitivity",
    "alert_ppv",
    "median_lead_days",
]


def outcomes(predictions: pd.DataFrame, grades: dict[str, dict[date, int]]) -> np.ndarray:
    """Each prediction's outcome (1, 0, or NaN when the patient turned out already severe
    that night): task.target.horizon_label on the grades known tonight, training's label."""
    labels = {}
    keys = list(
        zip(
            predictions["patient_id"].astype(str),
            predictions["as_of"],
            predictions["horizon_days"].astype(int),
        )
    )
    for key in set(keys):
        pid, night, horizon = key
        labels[key] = horizon_label(grades.get(pid, {}), night, horizon)
    return np.array([labels[key] for key in keys], dtype=float)


def figures(
    judged: pd.DataFrame,
    grades: dict[str, dict[date, int]],
    as_of: date,
    windows: Sequence[int],
    threshold: Tiers | float,
) -> pd.DataFrame:
    """One row (COLUMNS) per model, horizon and window, from judged predictions
    (prediction_outcomes' rows: patient_id, as_of, model, horizon_days, calibrated_risk,
    `target` date and outcome `y`, NaN when not judged); the alert figures at each model's alert
    threshold (`threshold`: thresholds.Tiers, or one for every model). The AUROC interval
    only for the `all` model, whose figures `monitor` pages on."""
    tiers = threshold if isinstance(threshold, Tiers) else Tiers.fixed(threshold)
    judged = judged[judged["y"].notna() & (judged["target"] <= as_of)]
    rows = []
    for (model, _), mine in judged.groupby(["model", "horizon_days"]):
        horizon = int(mine["horizon_days"].iloc[0])
        for window in windows:
            part = mine[mine["target"] > as_of - timedelta(days=window)]
            at = tiers.alert_for(str(model))
            rows.append(_row(str(model), horizon, window, part, at, grades))
    return pd.DataFrame(rows, columns=COLUMNS)


def _row(
    model: str,
    horizon: int,
    window: int,
    part: pd.DataFrame,
    threshold: float,
    grades: dict[str, dict[date, int]],
) -> dict[str, object]:
    y = part["y"].to_numpy(int)
    p = part["calibrated_risk"].to_numpy(float)
    n_events = int(y.sum())
    row: dict[str, object] = dict.fromkeys(COLUMNS)
    row.update(
        model=model,
        horizon_days=horizon,
        window_days=window,
        n_predictions=len(y),
        n_patients=int(part["patient_id"].nunique()),
        n_events=n_events,
    )
    if not len(y):
        return row
    flagged = p >= threshold
    row.update(
        brier=metrics.brier(p, y),
        mean_predicted=float(p.mean()),
        observed_rate=float(y.mean()),
        alert_sensitivity=float(flagged[y == 1].mean()) if n_events else None,
        alert_ppv=float(y[flagged].mean()) if flagged.any() else None,
        median_lead_days=_median_lead(part, horizon, threshold, grades),
    )
    if n_events >= MIN_EVENTS and len(y) - n_events >= MIN_EVENTS:
        found = metrics.binary_metrics(y, p, threshold)
        row.update(
            auroc=found["auroc"],
            auprc=found["auprc"],
            calibration_intercept=found["calibration_intercept"],
            calibration_slope=found["calibration_slope"],
        )
        if model == PAGED_MODEL:
            patients = pd.factorize(part["patient_id"])[0]  # integers: a cheaper sort than text
            low, high = metrics.clustered_auroc_ci(y, p, patients)
            row.update(auroc_low=low, auroc_high=high)
    return row


def from_totals(totals: Sequence[pd.DataFrame], windows: Sequence[int]) -> pd.DataFrame:
    """Rows (COLUMNS) from SQL totals (watch._totals, one frame per window: counts, sums of
    risks and squared errors, flagged counts): counts, Brier, mean predicted and observed
    rate, the alert's sensitivity and PPV. The figures that need every row (AUROC, AUPRC,
    calibration intercept and slope, lead time) stay NULL: the nightly job computes those
    for PAGED_MODEL only, so that a night's work does not grow with every model's history."""
    found = {(str(m), int(h)) for t in totals for m, h in zip(t["model"], t["horizon_days"])}
    rows = []
    for model, horizon in sorted(found):
        for window, frame in zip(windows, totals, strict=True):
            row: dict[str, object] = dict.fromkeys(COLUMNS)
            row.update(model=model, horizon_days=horizon, window_days=window)
            row.update(n_predictions=0, n_patients=0, n_events=0)
            match = frame[(frame["model"] == model) & (frame["horizon_days"] == horizon)]
            if len(match):
                t = match.iloc[0]
                n, events, flagged = int(t.n_predictions), int(t.n_events), int(t.n_flagged)
                row.update(
                    n_predictions=n,
                    n_patients=int(t.n_patients),
                    n_events=events,
                    brier=float(t.sum_squared_error) / n,
                    mean_predicted=float(t.sum_predicted) / n,
                    observed_rate=events / n,
                    alert_sensitivity=int(t.n_flagged_events) / events if events else None,
                    alert_ppv=int(t.n_flagged_events) / flagged if flagged else None,
                )
            rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def _median_lead(
    part: pd.DataFrame, horizon: int, threshold: float, grades: dict[str, dict[date, int]]
) -> float | None:
    """Median over the window's onsets of how many days before the onset this model first
    crossed the threshold (within `horizon` days before it); None without a flagged onset."""
    leads = []
    flagged = part[part["calibrated_risk"] >= threshold]
    nights = set(zip(flagged["patient_id"].astype(str), flagged["as_of"]))
    for pid, day in onsets(grades, part["target"].min(), part["target"].max()):
        before = [day - timedelta(days=k) for k in range(horizon, 0, -1)]
        first = next((n for n in before if (pid, n) in nights), None)
        if first is not None:
            leads.append((day - first).days)
    return float(np.median(leads)) if leads else None


def onsets(grades: dict[str, dict[date, int]], first: date, last: date) -> list[tuple[str, date]]:
    """(patient, day) of each onset of grade >= 3 in [first, last] (task.target.onset_days)."""
    found = ((pid, day) for pid, days in grades.items() for day in onset_days(days))
    return [(pid, day) for pid, day in found if first <= day <= last]


def flagged_ahead(
    nights: pd.DataFrame, grades: dict[str, dict[date, int]], as_of: date, window: int
) -> tuple[int, int, int]:
    """(onsets in the last `window` days that a stored night could have warned of - the
    patient was on the report on one of the `max(HORIZONS)` nights before -, those whose
    patient was an alert on one of them, and those on alert or watch on one of them): what
    the team was warned of, from crs_patient_nights (patient_id, as_of, alert, tier). A
    first night, with no night before it, counts no onset."""
    listed = nights[["patient_id", "as_of", "alert", "tier"]].itertuples(index=False)
    reported = {
        (str(p), pd.Timestamp(n).date()): (bool(a), bool(a) or t == "watch")
        for p, n, a, t in listed
    }
    lookback = [timedelta(days=k) for k in range(1, max(HORIZONS) + 1)]
    found = [
        (pid, day)
        for pid, day in onsets(grades, as_of - timedelta(days=window - 1), as_of)
        if any((pid, day - k) in reported for k in lookback)
    ]
    nights_before = [[reported.get((p, d - k), (False, False)) for k in lookback] for p, d in found]
    alerted = sum(any(a for a, _ in before) for before in nights_before)
    watched = sum(any(w for _, w in before) for before in nights_before)
    return len(found), alerted, watched
