"""How the stored risks did, once the outcomes arrived: per model and horizon, over rolling
windows, with metrics.py's figures (the ones `evaluate` reports).

A prediction (a stored `ok` row of night n, horizon h) is judged when its target window
has ended: `target_date` = n + h on or before the as-of date. Its outcome is the early-warning
target of task.target.onset_label on the CRS grades known tonight: onset of grade >= 3 on
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
from prcrs_batch.task.target import SEVERE_GRADE, onset_label
from prcrs_batch.task.thresholds import Tiers

MIN_EVENTS = 5  # events and non-events a window needs for discrimination and calibration
N_BOOT = 200  # patient-bootstrap resamples of the AUROC interval (nightly: kept small)
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


def daily_grades(assessments: pd.DataFrame) -> dict[str, dict[date, int]]:
    """patient -> day -> the highest grade assessed that day."""
    out: dict[str, dict[date, int]] = {}
    for pid, day, grade in assessments[["patient_id", "assessed_on", "grade"]].itertuples(
        index=False
    ):
        if pid is None or pd.isna(grade) or day is None:
            continue
        days = out.setdefault(str(pid), {})
        day = pd.Timestamp(day).date()
        days[day] = max(int(grade), days.get(day, -1))
    return out


def outcomes(predictions: pd.DataFrame, grades: dict[str, dict[date, int]]) -> np.ndarray:
    """Each prediction's outcome (1, 0, or NaN when still open), by panel.onset_label."""
    labels = {}
    for pid, night, horizon in predictions[["patient_id", "as_of", "horizon_days"]].itertuples(
        index=False
    ):
        key = (str(pid), night, int(horizon))
        if key in labels:
            continue
        days = grades.get(key[0], {})
        before = [d for d in days if d <= night]
        latest = days[max(before)] if before else None
        later = [days.get(night + timedelta(days=k)) for k in range(1, key[2] + 1)]
        labels[key] = onset_label(latest, later)
    keys = zip(
        predictions["patient_id"].astype(str), predictions["as_of"], predictions["horizon_days"]
    )
    return np.array([labels[(p, n, int(h))] for p, n, h in keys], dtype=float)


def performance(
    predictions: pd.DataFrame,
    grades: dict[str, dict[date, int]],
    as_of: date,
    windows: Sequence[int],
    threshold: Tiers | float,
) -> pd.DataFrame:
    """One row (COLUMNS) per model, horizon and window; the alert figures at each model's
    alert threshold (`threshold`: thresholds.Tiers, or one for every model).

    `predictions`: stored rows with patient_id, as_of (date), model, horizon_days,
    calibrated_risk, status; only `ok` rows whose target window has ended are judged.
    """
    tiers = threshold if isinstance(threshold, Tiers) else Tiers.fixed(threshold)
    rows = []
    judged = predictions[predictions["status"] == "ok"].copy()
    judged["as_of"] = [pd.Timestamp(d).date() for d in judged["as_of"]]
    judged["target"] = [
        n + timedelta(days=int(h)) for n, h in zip(judged["as_of"], judged["horizon_days"])
    ]
    judged = judged[judged["target"] <= as_of]
    judged["y"] = outcomes(judged, grades) if len(judged) else []
    judged = judged[judged["y"].notna()]
    for (model, horizon), mine in judged.groupby(["model", "horizon_days"]):
        for window in windows:
            part = mine[mine["target"] > as_of - timedelta(days=window)]
            at = tiers.alert_for(str(model))
            rows.append(_row(str(model), int(horizon), window, part, at, grades))
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
        figures = metrics.binary_metrics(y, p, threshold)
        interval = metrics.bootstrap_ci(y, [p], part["patient_id"].to_numpy(), n_boot=N_BOOT)
        row.update(
            auroc=figures["auroc"],
            auroc_low=interval["auroc"][0],
            auroc_high=interval["auroc"][1],
            auprc=figures["auprc"],
            calibration_intercept=figures["calibration_intercept"],
            calibration_slope=figures["calibration_slope"],
        )
    return row


def _median_lead(
    part: pd.DataFrame, horizon: int, threshold: float, grades: dict[str, dict[date, int]]
) -> float | None:
    """Median over the window's onsets of how many days before the onset this model first
    crossed the threshold (within `horizon` days before it); None without a flagged onset."""
    leads = []
    flagged = part[part["calibrated_risk"] >= threshold]
    nights = flagged.groupby(flagged["patient_id"].astype(str))["as_of"].apply(set).to_dict()
    for pid, day in onsets(grades, part["target"].min(), part["target"].max()):
        before = [day - timedelta(days=k) for k in range(horizon, 0, -1)]
        first = next((n for n in before if n in nights.get(pid, ())), None)
        if first is not None:
            leads.append((day - first).days)
    return float(np.median(leads)) if leads else None


def onsets(grades: dict[str, dict[date, int]], first: date, last: date) -> list[tuple[str, date]]:
    """(patient, day) of each onset of grade >= 3 in [first, last]: a severe day whose
    latest earlier assessment was not severe."""
    out = []
    for pid, days in grades.items():
        previous = None
        for day in sorted(days):
            severe = days[day] >= SEVERE_GRADE
            if severe and previous is not None and previous < SEVERE_GRADE and first <= day <= last:
                out.append((pid, day))
            previous = days[day]
    return out


def flagged_ahead(
    nights: pd.DataFrame, grades: dict[str, dict[date, int]], as_of: date, window: int
) -> tuple[int, int]:
    """(onsets in the last `window` days, those whose patient was an alert on at least one of
    the `max(HORIZONS)` nights before): what the team was warned of, from crs_patient_nights."""
    alerted = {
        (str(p), pd.Timestamp(n).date())
        for p, n, a in nights[["patient_id", "as_of", "alert"]].itertuples(index=False)
        if a
    }
    found = onsets(grades, as_of - timedelta(days=window - 1), as_of)
    warned = [
        (pid, day)
        for pid, day in found
        if any((pid, day - timedelta(days=k)) in alerted for k in range(1, max(HORIZONS) + 1))
    ]
    return len(found), len(warned)
