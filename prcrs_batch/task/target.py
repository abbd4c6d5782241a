"""The target, defined once: a day's grade, severe CRS, already severe, and the early-warning
label.

METHOD.md, "an early-warning target": among patient-days not yet severe, the onset of CRS
grade >= 3 within h days (any of days t+1..t+h), so that a risk for 2 days is never below
the risk for 1 day.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

SEVERE_GRADE = 3  # ASTCT CRS grade counted as severe


def already_severe(latest_grade: object) -> bool:
    """Is a patient whose latest CRS grade (on or before the day) is this already severe.

    Such a patient-day is not a warning to give: the nightly job marks it `already_severe`,
    and training and evaluation leave it out.

    >>> [already_severe(g) for g in (None, float("nan"), 2, 3)]
    [False, False, False, True]
    """
    if latest_grade is None:
        return False
    try:
        grade = float(latest_grade)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return not np.isnan(grade) and grade >= SEVERE_GRADE


def onset_label(latest_grade: object, next_grades: list[int | None]) -> float:
    """The early-warning target for one patient-day and horizon h = len(next_grades).

    1 when any of days t+1..t+h has grade >= SEVERE_GRADE; 0 when all of them were assessed
    and none had; NaN (no row) when the patient is already severe on day t, or when a day
    without an assessment leaves the answer open.

    >>> onset_label(1, [None, 3]), onset_label(1, [0, 1]), onset_label(1, [0, None])
    (1.0, 0.0, nan)
    >>> onset_label(3, [0, 0])
    nan
    """
    if already_severe(latest_grade):
        return float("nan")
    if any(g is not None and g >= SEVERE_GRADE for g in next_grades):
        return 1.0
    if all(g is not None for g in next_grades):
        return 0.0
    return float("nan")


def daily_grades(assessments: pd.DataFrame) -> dict[str, dict[date, int]]:
    """patient -> day -> that day's CRS grade: the highest assessed that day (the SQL's
    shared/daily_grades.sql says the same). Rows without a patient, day or grade are none.

    >>> frame = pd.DataFrame({"patient_id": ["p", "p", None], "grade": [1, 3, 4],
    ...     "assessed_on": [date(2026, 1, 2)] * 3})
    >>> daily_grades(frame)
    {'p': {datetime.date(2026, 1, 2): 3}}
    """
    out: dict[str, dict[date, int]] = {}
    for pid, day, grade in assessments[["patient_id", "assessed_on", "grade"]].itertuples(
        index=False
    ):
        if pd.isna(pid) or pd.isna(day) or pd.isna(grade):
            continue
        days = out.setdefault(str(pid), {})
        day = pd.Timestamp(day).date()
        days[day] = max(int(grade), days.get(day, -1))
    return out
