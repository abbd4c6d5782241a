"""Whether a warehouse row can be keyed: patient ids, analyte codes and CRS grades, and the
text a recorded decision keeps.

A patient id must key the results tables (PostgreSQL indexes hold at most 2,704 bytes per
entry), an analyte code must name one panel analyte (case and whitespace aside, recorded
when they had to be set aside), a grade must be an integer 0-4; whatever is recorded
about a row is cut to `RECORDED_TEXT_CHARS` with its length stated. cleaning.py applies these
to each lab row; the pipeline to each active patient.
"""

from __future__ import annotations

import math
from functools import lru_cache

import pandas as pd

from prcrs_batch.task.panel import BY_CODE

# Reasons recorded in data_quality_issues.reason
MISSING_PATIENT_ID = "missing_patient_id"  # NULL, empty or blank
PATIENT_ID_UNSTORABLE = "patient_id_unstorable"  # over MAX_PATIENT_ID_BYTES, NUL, not UTF-8
ANALYTE_NORMALISED = "analyte_code_normalised"  # " CRP " read as crp (kept, but recorded)
INVALID_CRS_GRADE = "invalid_crs_grade"  # not an integer grade 0-4: shown as not assessed

# crs_risk_scores' unique key holds the patient id: a longer id would fail the night's write.
MAX_PATIENT_ID_BYTES = 1000
MAX_CODE_CHARS = 64  # analyte codes and units longer than this are not looked up
RECORDED_TEXT_CHARS = 200  # of a raw value, unit, code or id kept in data_quality_issues
ISSUE_COLUMNS = ["patient_id", "analyte", "collected_at", "raw_value", "unit", "reason"]


def is_missing(value: object) -> bool:
    """None, NaN, pd.NA or NaT: nothing was there."""
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float) and math.isnan(value))
    )


def excerpt(value: object) -> str | None:
    """Text as data_quality_issues keeps it: whole up to RECORDED_TEXT_CHARS, else cut with
    its length stated; always storable (NUL and unencodable characters escaped).

    >>> excerpt("7" * 205)[-40:]
    '777...[205 characters, first 200 kept]'
    """
    if is_missing(value):
        return None
    text = str(value)
    if len(text) > RECORDED_TEXT_CHARS:
        text = f"{text[:RECORDED_TEXT_CHARS]}...[{len(text)} characters, first 200 kept]"
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00")


def patient_id_problem(patient_id: object) -> str | None:
    """Why a patient id cannot key a patient's rows, or None when it can.

    >>> patient_id_problem("  "), patient_id_problem("p" * 1001), patient_id_problem(42)
    ('missing_patient_id', 'patient_id_unstorable', None)
    """
    if is_missing(patient_id):
        return MISSING_PATIENT_ID
    text = str(patient_id)
    if not text.strip():
        return MISSING_PATIENT_ID
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return PATIENT_ID_UNSTORABLE
    return PATIENT_ID_UNSTORABLE if size > MAX_PATIENT_ID_BYTES or "\x00" in text else None


@lru_cache(maxsize=4096)
def _fold_code(text: str) -> str | None:
    folded = "".join(text.split()).casefold()
    return folded if folded in BY_CODE else None


def canonical_code(analyte: object) -> tuple[str | None, bool]:
    """The panel code an analyte spelling means (case and whitespace aside), and whether
    the spelling had to be normalised; (None, False) when it means none.

    >>> canonical_code("crp"), canonical_code(" IL6 "), canonical_code("il-6")
    (('crp', False), ('il6', True), (None, False))
    """
    if is_missing(analyte):
        return None, False
    text = str(analyte)
    if text in BY_CODE:
        return text, False
    if len(text) > MAX_CODE_CHARS:
        return None, False
    code = _fold_code(text)
    return code, code is not None


def _grade(raw: object) -> int | None:
    """An ASTCT grade 0-4 from an integer, an integral number or its text; else None."""
    if isinstance(raw, bool):
        return None
    try:
        number = float(str(raw).strip() if isinstance(raw, str) else raw)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return int(number) if number.is_integer() and 0 <= number <= 4 else None


def screen_patients(patients: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The active patients whose ids can key their rows, their CRS grades checked.

    A patient whose id is blank or cannot be stored is set aside; a grade that is not an
    integer 0-4 is shown as not assessed. Each decision is an issue row (ISSUE_COLUMNS).

    >>> kept, issues = screen_patients(pd.DataFrame(
    ...     {"patient_id": ["p1", " ", "p3"], "crs_grade": [2, 1, "severe"]}))
    >>> kept["crs_grade"].tolist(), issues["reason"].tolist()
    ([2, <NA>], ['missing_patient_id', 'invalid_crs_grade'])
    """
    issues: list[tuple[object, ...]] = []
    keep = []
    grades: list[int | None] = []
    for pid, raw_grade in zip(patients["patient_id"], patients["crs_grade"]):
        problem = patient_id_problem(pid)
        keep.append(problem is None)
        if problem is not None:
            issues.append((excerpt(pid), None, None, None, None, problem))
        grade = None if is_missing(raw_grade) else _grade(raw_grade)
        if grade is None and not is_missing(raw_grade) and problem is None:
            issues.append(
                (excerpt(pid), "crs_grade", None, excerpt(raw_grade), None, INVALID_CRS_GRADE)
            )
        grades.append(grade)
    screened = patients.assign(crs_grade=pd.array(grades, dtype="Int64"))
    kept = screened.loc[pd.Series(keep, index=screened.index, dtype=bool)]
    return kept.reset_index(drop=True), pd.DataFrame(issues, columns=ISSUE_COLUMNS)
