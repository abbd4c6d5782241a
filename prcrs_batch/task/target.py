"""The target, defined once: a day's grade, severe CRS, already severe, and the early-warning
label.

METHOD.md, "an early-warning target": among patient-days not yet severe, the onset of CRS
grade >= 3 within h days (any of days t+1..t+h), so that a risk for 2 days is never below
the risk for 1 day.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

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


def kept_by_outcome(next_grades: list[int | None], past_record_end: bool) -> float:
    """The rule until issue 23: 0 only when every day of the window was graded, so a
    window with an ungraded day counts when it holds an onset and is dropped when it does
    not: which rows count depends on the outcome. Kept for the comparison only.

    >>> kept_by_outcome([None, 3], False), kept_by_outcome([0, 1], False)
    (1.0, 0.0)
    >>> kept_by_outcome([0, None], False)
    nan
    """
    if _onset(next_grades):
        return 1.0
    return 0.0 if all(g is not None for g in next_grades) else float("nan")


def unassessed_not_severe(next_grades: list[int | None], past_record_end: bool) -> float:
    """Every not-yet-severe day counts: a day without a grade, inside the record or after
    its end, reads as not severe. Assumes severe CRS is always charted: it is treated in
    hospital, where it is graded daily, and a record ends at discharge or at the end of
    observation (in cart_dev.csv a severe patient's record ends on the onset day, median).

    >>> unassessed_not_severe([0, None], True), unassessed_not_severe([None, 3], True)
    (0.0, 1.0)
    """
    return float(_onset(next_grades))


def censored_at_record_end(next_grades: list[int | None], past_record_end: bool) -> float:
    """No row when the window runs past the patient's last graded day, whatever happened
    in it: rows chosen by follow-up alone (an onset on the record's last day is then lost
    for the longer horizons of the days just before it).

    >>> censored_at_record_end([None, 3], True), censored_at_record_end([0, None], False)
    (nan, 0.0)
    """
    return float("nan") if past_record_end else float(_onset(next_grades))


def _onset(next_grades: list[int | None]) -> bool:
    return any(g is not None and g >= SEVERE_GRADE for g in next_grades)


TARGET_RULES = {
    "kept_by_outcome": kept_by_outcome,
    "unassessed_not_severe": unassessed_not_severe,
    "censored_at_record_end": censored_at_record_end,
}
TARGET = "unassessed_not_severe"  # the rule `horizon_label` applies (EVALUATION.md, "The target")


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


def horizon_label(days: Mapping[date, int], day: date, horizon: int, rule: str = TARGET) -> float:
    """The target of one patient-day and horizon from the patient's daily grades
    (`daily_grades`): what training labels a row with and monitoring judges a stored
    prediction by. `rule`: one of TARGET_RULES (default: the chosen one).

    >>> grades = {date(2026, 1, 1): 1, date(2026, 1, 3): 3}
    >>> [horizon_label(grades, date(2026, 1, 1), h) for h in (1, 2)]
    [0.0, 1.0]
    >>> horizon_label(grades, date(2026, 1, 3), 1)
    nan
    """
    latest = latest_grade(days, day)
    if already_severe(latest):
        return float("nan")
    window = [days.get(day + timedelta(days=k)) for k in range(1, horizon + 1)]
    record_end = max(days, default=day)
    return TARGET_RULES[rule](window, day + timedelta(days=horizon) > record_end)


def latest_grade(days: Mapping[date, int], day: date) -> int | None:
    """The grade of the patient's latest graded day on or before `day` (None: none yet)."""
    before = [d for d in days if d <= day]
    return days[max(before)] if before else None


def onset_days(days: Mapping[date, int]) -> list[date]:
    """The days of a patient's onsets of severe CRS: a severe day while not yet severe the
    day before (`already_severe` of the latest earlier grade, none counting as not severe),
    i.e. the days whose 1-day label of the day before is 1.

    >>> onset_days({date(2026, 1, 1): 1, date(2026, 1, 2): 3, date(2026, 1, 3): 4})
    [datetime.date(2026, 1, 2)]
    """
    out = []
    previous: int | None = None
    for day in sorted(days):
        if days[day] >= SEVERE_GRADE and not already_severe(previous):
            out.append(day)
        previous = days[day]
    return out
