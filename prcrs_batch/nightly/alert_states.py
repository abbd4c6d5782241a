"""Stage 5: each patient against its earlier nights, pure: the previous night, the alert
state, and the history the trend charts draw.

Each patient is compared with its latest earlier night on the same model within
`HISTORY_DAYS` (`alert_state`): an alert is `new` when that night was under the threshold
or there was none, `rising` / `falling` when its highest risk moved by at least
`STATE_MARGIN` since, else `continuing`. A change of recommended model (new labs allowing
a fuller one) has no earlier night on that model, so it reads `new`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import date

import pandas as pd

from prcrs_batch.nightly.alerts import PatientSummary, as_tiers
from prcrs_batch.task.thresholds import Tiers

HISTORY_DAYS = 7  # earlier nights read for the "previous night" and the trend charts
HISTORY_COLUMNS = ["patient_id", "as_of", "model", "horizon_days", "calibrated_risk"]
STATE_MARGIN = 0.05  # change in highest risk since the previous night that is rising/falling
ALERT_STATES = (
    "new",
    "rising",
    "continuing",
    "falling",
    "none",
    "already_severe",
    "not_scorable",
)


def recent_history(history: pd.DataFrame | None, as_of: date) -> pd.DataFrame:
    """History rows of the `HISTORY_DAYS` days before `as_of` (tonight's own rows dropped),
    typed for speed: str ids and models, datetime64 as_of (midnight), float risks."""
    if history is None or history.empty:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in HISTORY_COLUMNS})
        frame["as_of"] = pd.Series(dtype="datetime64[ns]")
        return frame
    nights = pd.to_datetime(history["as_of"]).dt.normalize()
    tonight = pd.Timestamp(as_of)
    keep = (nights < tonight) & (nights >= tonight - pd.Timedelta(days=HISTORY_DAYS))
    frame = history.loc[keep, HISTORY_COLUMNS].copy()
    frame["as_of"] = nights[keep]
    frame["patient_id"] = frame["patient_id"].astype(str)
    frame["model"] = frame["model"].astype(str)
    frame["calibrated_risk"] = pd.to_numeric(frame["calibrated_risk"], errors="coerce")
    return frame


def with_previous(
    summaries: Sequence[PatientSummary], recent: pd.DataFrame, threshold: Tiers | float
) -> list[PatientSummary]:
    """Each patient with its latest earlier night on the same model (from `recent_history`)
    and its `alert_state` (judged at that model's alert threshold)."""
    tiers = as_tiers(threshold)
    latest = _previous_night_max(recent)
    out = []
    for s in summaries:
        previous = latest.get((s.patient_id, s.model)) if s.model else None
        state = alert_state(s, previous, tiers.alert_for(s.model))
        out.append(replace(s, previous=previous, alert_state=state))
    return out


def alert_state(
    summary: PatientSummary, previous: tuple[date, float] | None, threshold: float
) -> str:
    """How tonight compares with the previous night on the same model (module docstring).

    >>> s = PatientSummary("p1", 3, 1, "all", (0.3, 0.4, 0.5), 0.5, True, "", 30, 42, ())
    >>> [alert_state(s, p, 0.27) for p in (None, (date(2026, 1, 1), 0.2),
    ...     (date(2026, 1, 1), 0.4), (date(2026, 1, 1), 0.52), (date(2026, 1, 1), 0.6))]
    ['new', 'new', 'rising', 'continuing', 'falling']
    """
    if summary.already_severe:
        return "already_severe"
    if not summary.scorable:
        return "not_scorable"
    if not summary.alert or summary.max_risk is None:
        return "none"
    if previous is None or previous[1] < threshold:
        return "new"
    change = summary.max_risk - previous[1]
    if change >= STATE_MARGIN - 1e-12:
        return "rising"
    if change <= -STATE_MARGIN + 1e-12:
        return "falling"
    return "continuing"


def _previous_night_max(recent: pd.DataFrame) -> dict[tuple[str, str], tuple[date, float]]:
    """(patient, model) -> (date, max risk over horizons) of the latest earlier night."""
    if recent.empty:
        return {}
    last = recent.groupby(["patient_id", "model"])["as_of"].transform("max")
    latest = recent[recent["as_of"] == last]
    out = latest.groupby(["patient_id", "model", "as_of"])["calibrated_risk"].max().dropna()
    return {
        (str(p), str(m)): (pd.Timestamp(night).date(), float(v))
        for (p, m, night), v in zip(out.index.tolist(), out.tolist(), strict=True)
    }
