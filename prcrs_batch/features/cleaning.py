"""Raw warehouse lab rows -> clean numeric values in the models' units.

Each value is parsed, converted and checked on its own; a value that cannot be trusted
becomes missing and the decision is recorded with a reason, so one bad result never
stops a night. Training and the nightly run both clean their labs here. The night uses
each analyte's latest *usable* result in the lookback window (`clean_labs(...,
latest_only=True)`): a newer result that is set aside is recorded and the next older one
is tried. Patient ids and analyte codes are checked by row_keys.py.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from prcrs_batch.task.row_keys import (
    ANALYTE_NORMALISED,
    ISSUE_COLUMNS,
    MISSING_PATIENT_ID,
    canonical_code,
    excerpt,
    is_missing,
    patient_id_problem,
)
from prcrs_batch.task.units import to_model_unit

# Reasons recorded in data_quality_issues.reason
UNKNOWN_ANALYTE = "unknown_analyte"
FUTURE_TIMESTAMP = "future_timestamp"
MISSING_TIMESTAMP = "missing_timestamp"  # NULL or unreadable collection time
NO_NUMBER = "no_number"  # "hemolyzed", "see comment", empty
NON_ASCII_NUMBER = "non_ascii_digits"  # "１２": digits other than 0-9 are not read
VALUE_TOO_LONG = "value_too_long"  # over MAX_VALUE_CHARS: not parsed
CENSORED = "censored_bound_used"  # "<0.5" -> 0.5 (kept, but recorded)
UNKNOWN_UNIT = "unknown_unit"
IMPLAUSIBLE = "implausible_value"
DUPLICATE = "duplicate_result"
CONVERSION_TOLERANCE = 0.025  # relative: a converted value's rounding (2 significant digits)
CONFLICTING_DUPLICATE = "conflicting_duplicate"

MAX_VALUE_CHARS = 64  # "< 0.5", "1.2e3": a result longer than this is not a number we read

# Plausibility limits in the models' units: wide limits of what a living patient can
# show, not reference intervals. They catch unit mix-ups and decimal-shift entry errors
# (e.g. sodium 14.5 for 145, haemoglobin in g/dL in a g/L column). Source: critical-value
# and analytical-measuring-range tables of Tietz Textbook of Laboratory Medicine (7th ed.)
# and the NIH/NLM MedlinePlus reference pages, widened about 2x at both ends.
PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    "d_dimer": (0.0, 200.0),
    "procalcitonin": (0.0, 1000.0),
    "bnp": (0.0, 100_000.0),
    "hbdh": (1.0, 20_000.0),
    "prealbumin": (1.0, 1000.0),
    "blast_fraction": (0.0, 1.0),
    "pt": (6.0, 150.0),
    "aptt": (10.0, 250.0),
    "fibrinogen": (0.1, 20.0),
    "rbc": (0.3, 10.0),
    "hemoglobin": (30.0, 250.0),
    "wbc": (0.0, 500.0),
    "neutrophil_pct": (0.0, 1.0),
    "neutrophil_count": (0.0, 400.0),
    "lymphocyte_pct": (0.0, 1.0),
    "lymphocyte_count": (0.0, 400.0),
    "platelet": (0.0, 2000.0),
    "monocyte_pct": (0.0, 1.0),
    "monocyte_count": (0.0, 200.0),
    "sodium": (100.0, 200.0),
    "potassium": (1.5, 10.0),
    "chloride": (60.0, 150.0),
    "calcium": (0.5, 5.0),
    "uric_acid": (1.0, 2000.0),
    "glucose": (0.5, 60.0),
    "triglyceride": (0.05, 100.0),
    "ggt": (1.0, 5000.0),
    "albumin": (5.0, 70.0),
    "alt": (1.0, 20_000.0),
    "ast": (1.0, 20_000.0),
    "alp": (1.0, 10_000.0),
    "ldh": (10.0, 50_000.0),
    "creatinine": (5.0, 2500.0),
    "crp": (0.0, 1000.0),
    "ferritin": (0.0, 500_000.0),
    "il2": (0.0, 1_000_000.0),
    "il4": (0.0, 1_000_000.0),
    "il6": (0.0, 1_000_000.0),
    "il10": (0.0, 1_000_000.0),
    "tnf_alpha": (0.0, 1_000_000.0),
    "ifn_gamma": (0.0, 1_000_000.0),
    "il17a": (0.0, 1_000_000.0),
}

# Linear in its input: no two quantifiers can match the same characters (a value of a
# million digits is refused by length first anyway). ASCII digits only.
_NUMBER = re.compile(
    r"(?P<op><=|>=|<|>|≤|≥)?\s*(?P<num>\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
)


@dataclass(frozen=True)
class ParsedValue:
    value: float | None
    reason: str | None  # None: clean; CENSORED: bound used; other: value is missing


def parse_value(raw: object) -> ParsedValue:
    """Parse a warehouse result: numbers, censored text ("<0.5" -> 0.5), or nothing.

    >>> parse_value("< 0.5")
    ParsedValue(value=0.5, reason='censored_bound_used')
    >>> parse_value("hemolyzed").reason, parse_value("１２").reason
    ('no_number', 'non_ascii_digits')
    """
    if is_missing(raw):
        return ParsedValue(None, NO_NUMBER)
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        try:
            number = float(raw)
        except OverflowError:
            return ParsedValue(None, NO_NUMBER)
        return ParsedValue(number, None) if math.isfinite(number) else ParsedValue(None, NO_NUMBER)
    text = str(raw).strip()
    if len(text) > MAX_VALUE_CHARS:
        return ParsedValue(None, VALUE_TOO_LONG)
    match = _NUMBER.fullmatch(text)
    if match is None:
        other_digits = any(ch.isdigit() and not ch.isascii() for ch in text)
        return ParsedValue(None, NON_ASCII_NUMBER if other_digits else NO_NUMBER)
    number = float(match["num"])
    if not math.isfinite(number):
        return ParsedValue(None, NO_NUMBER)
    return ParsedValue(number, CENSORED if match["op"] else None)


CLEAN_COLUMNS = ["patient_id", "collected_at", "analyte", "value"]


def clean_labs(
    raw: pd.DataFrame, now: pd.Timestamp | None = None, *, latest_only: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Clean long-format lab rows.

    Args:
        raw: columns patient_id, collected_at, analyte, value (text or number), unit.
        now: results collected after this moment are rejected as future-dated.
        latest_only: keep each patient's latest usable result per analyte (the night's
            inputs). Rows are judged newest first; once a usable result is found, older
            rows of that analyte are neither judged nor recorded.

    Returns:
        (clean, issues): clean has patient_id, collected_at, analyte (panel code), value
        (float, model units); issues has one row per decision, columns ISSUE_COLUMNS.

    >>> raw = pd.DataFrame({"patient_id": ["p1", "p1"], "analyte": ["il6", "crp"],
    ...     "collected_at": pd.to_datetime(["2026-01-01 06:00"] * 2),
    ...     "value": ["<2", "hemolyzed"], "unit": ["pg/mL", "mg/L"]})
    >>> clean, issues = clean_labs(raw)
    >>> clean["value"].tolist(), issues["reason"].tolist()
    ([2.0], ['censored_bound_used', 'no_number'])
    """
    frame = _prepared(raw)
    if not latest_only:
        return _clean(frame, now)
    keyed = _keyed(frame)
    clean, issues = _clean(frame[~keyed], now)  # these rows can never be a value
    latest, latest_issues = _newest_usable(frame[keyed], now)
    return _concat([clean, latest], CLEAN_COLUMNS), _concat([issues, latest_issues], ISSUE_COLUMNS)


def previous_results(
    raw: pd.DataFrame, latest: pd.DataFrame, now: pd.Timestamp | None = None
) -> pd.DataFrame:
    """The usable result before each of `latest`'s (clean_labs(..., latest_only=True)), from
    the same raw rows and judged the same way: what the report compares a value with. Not
    a model input, so nothing is recorded about the older rows judged here.

    >>> raw = pd.DataFrame({"patient_id": ["p1"] * 3, "analyte": ["il6"] * 3,
    ...     "collected_at": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"]),
    ...     "value": ["85", "hemolyzed", "1240"], "unit": ["pg/mL"] * 3})
    >>> latest, _ = clean_labs(raw, latest_only=True)
    >>> previous_results(raw, latest)[["collected_at", "value"]].values.tolist()
    [[Timestamp('2026-01-01 00:00:00'), 85.0]]
    """
    if latest.empty:
        return pd.DataFrame(columns=CLEAN_COLUMNS)
    frame = _prepared(raw)
    frame = frame[_keyed(frame)]
    newest = latest.set_index(latest["patient_id"].astype(str) + "\x1f" + latest["analyte"])
    keys = frame["patient_id"].astype(str) + "\x1f" + frame["code"]
    older = frame["collected_at"] < keys.map(newest["collected_at"])
    return _newest_usable(frame[older.fillna(False).astype(bool)], now)[0]


def _prepared(raw: pd.DataFrame) -> pd.DataFrame:
    """The raw rows with their panel code, whether the code was normalised, and any id problem."""
    frame = raw[["patient_id", "collected_at", "analyte", "value", "unit"]].reset_index(drop=True)
    names = frame["analyte"].dropna().unique()
    spellings = {name: canonical_code(name) for name in names}
    frame["code"] = frame["analyte"].map({k: v[0] for k, v in spellings.items()})
    frame["normalised"] = frame["analyte"].map({k: v[1] for k, v in spellings.items()})
    ids = frame["patient_id"].dropna().unique()
    problems = frame["patient_id"].map({p: patient_id_problem(p) for p in ids})
    frame["id_problem"] = problems.where(frame["patient_id"].notna(), MISSING_PATIENT_ID)
    return frame


def _keyed(frame: pd.DataFrame) -> pd.Series:
    """Rows that can be a patient's value of an analyte at a time."""
    return frame["id_problem"].isna() & frame["code"].notna() & frame["collected_at"].notna()


def _newest_usable(
    keyed: pd.DataFrame, now: pd.Timestamp | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each patient's newest usable result per analyte: rows judged newest first, older ones
    only while the newer were unusable; (clean, issues of the rows judged)."""
    cleans, issue_parts = [], []
    ids = keyed["patient_id"]
    if pd.api.types.infer_dtype(ids, skipna=True) != "string":
        ids = ids.map(str)  # as clean_labs writes them: 42 and "42" are one patient
    pending = keyed.assign(patient_id=ids)
    while not pending.empty:
        key = [pending["patient_id"], pending["code"]]
        newest = pending.groupby(key, sort=False)["collected_at"].transform("max")
        at_newest = (pending["collected_at"] == newest).to_numpy()
        clean, issues = _clean(pending[at_newest], now)
        cleans.append(clean)
        issue_parts.append(issues)
        older = pending[~at_newest]
        found = pd.MultiIndex.from_arrays([clean["patient_id"], clean["analyte"]])
        pending = older[
            ~pd.MultiIndex.from_arrays([older["patient_id"], older["code"]]).isin(found)
        ]
    return _concat(cleans, CLEAN_COLUMNS), _concat(issue_parts, ISSUE_COLUMNS)


def _concat(parts: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


def _clean(frame: pd.DataFrame, now: pd.Timestamp | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each row judged on its own, then duplicates resolved (see clean_labs).

    The checks run column by column in the order a row meets them, its first failed check
    being its reason; a value's text is parsed once however many rows carry it and a unit's
    factor found once per analyte and unit, so a night is not one Python loop per row.
    """
    n = len(frame)
    when = pd.to_datetime(frame["collected_at"], errors="coerce")  # unreadable: missing
    codes = frame["code"].to_numpy(dtype=object)
    reasons = np.full(n, None, dtype=object)
    usable = np.ones(n, dtype=bool)

    def set_aside(failed: np.ndarray, why: object) -> None:
        hit = usable & failed
        reasons[hit] = why[hit] if isinstance(why, np.ndarray) else why
        usable[hit] = False

    set_aside(frame["id_problem"].notna().to_numpy(), frame["id_problem"].to_numpy(dtype=object))
    set_aside(frame["code"].isna().to_numpy(), UNKNOWN_ANALYTE)
    set_aside(when.isna().to_numpy(), MISSING_TIMESTAMP)
    if now is not None:
        set_aside((when > now).to_numpy(), FUTURE_TIMESTAMP)
    number, note = np.full(n, np.nan), np.full(n, None, dtype=object)
    rows = np.flatnonzero(usable)
    number[rows], note[rows] = _parsed(frame["value"].to_numpy(dtype=object)[rows])
    set_aside(np.isnan(number), note)
    factor = np.full(n, np.nan)
    rows = np.flatnonzero(usable)
    factor[rows] = _factors(codes[rows], frame["unit"].to_numpy(dtype=object)[rows])
    value = number * factor
    set_aside(np.isnan(value), UNKNOWN_UNIT)
    low, high = (frame["code"].map({c: r[i] for c, r in PLAUSIBLE_RANGES.items()}) for i in (0, 1))
    set_aside(~((low.to_numpy(float) <= value) & (value <= high.to_numpy(float))), IMPLAUSIBLE)

    censored = usable & (note == CENSORED)
    normalised = usable & (frame["normalised"].to_numpy(dtype=object) == True)  # noqa: E712
    why = pd.concat(
        [
            pd.Series(reasons[~usable], index=np.flatnonzero(~usable), dtype=object),
            pd.Series(CENSORED, index=np.flatnonzero(censored), dtype=object),
            pd.Series(ANALYTE_NORMALISED, index=np.flatnonzero(normalised), dtype=object),
        ]
    ).sort_index(kind="stable")  # in row order; a row's censored note before its other
    as_written = ["patient_id", "analyte", "collected_at", "value", "unit"]
    columns = [frame[c].iloc[why.index].to_numpy(dtype=object) for c in as_written]
    issues = [
        (excerpt(p), excerpt(a), None if is_missing(t) else t, excerpt(v), excerpt(u), reason)
        for p, a, t, v, u, reason in zip(*columns, why)
    ]
    kept = np.flatnonzero(usable)
    clean = pd.DataFrame([], columns=CLEAN_COLUMNS)
    if len(kept):
        clean = pd.DataFrame(
            {
                "patient_id": [str(p) for p in frame["patient_id"].to_numpy(dtype=object)[kept]],
                "collected_at": when.to_numpy()[kept],
                "analyte": codes[kept],
                "value": value[kept],
            }
        )
    clean, duplicate_issues = _resolve_duplicates(clean, factor[kept] != 1.0)
    issues_frame = pd.DataFrame(issues, columns=ISSUE_COLUMNS)
    if len(duplicate_issues):
        issues_frame = pd.concat([issues_frame, duplicate_issues], ignore_index=True)
    return clean, issues_frame


def _parsed(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """parse_value of each raw value as (number, NaN where none; reason), each distinct text
    or float parsed once."""
    seen: dict[object, int] = {}
    parsed: list[ParsedValue] = []
    index = []
    for raw in values:
        cached = type(raw) is str or type(raw) is float
        if cached and raw in seen:
            index.append(seen[raw])
            continue
        if cached:
            seen[raw] = len(parsed)
        index.append(len(parsed))
        parsed.append(parse_value(raw))
    number = np.array([math.nan if p.value is None else p.value for p in parsed], dtype=float)
    reason = np.array([p.reason for p in parsed], dtype=object)
    return number[index], reason[index]


def _factors(codes: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Each row's factor from its unit into its analyte's model unit (NaN: a unit not known
    for the analyte), found once per analyte and unit."""
    seen: dict[tuple[object, object], float] = {}
    out = []
    for key in zip(codes, units):
        factor = seen.get(key)
        if factor is None:
            one = to_model_unit(key[0], 1.0, key[1])  # value * factor: the conversion is linear
            factor = seen[key] = math.nan if one is None else one
        out.append(factor)
    return np.array(out, dtype=float)


def _resolve_duplicates(
    clean: pd.DataFrame, converted: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Same patient, analyte and time: equal values keep one; different values keep none.

    Values are equal when they are the same number, or, where one of them was converted
    from another unit (`converted`), within `CONVERSION_TOLERANCE` of each other: one draw
    reported under two codes (creatinine in umol/L and in mg/dL: 35.0 and 0.40 x 88.42 =
    35.37). The value reported in the models' unit is the one kept.
    """
    key = ["patient_id", "analyte", "collected_at"]
    if clean.empty or not clean.duplicated(key).any():
        return clean, pd.DataFrame(columns=ISSUE_COLUMNS)
    grouped = clean.assign(converted=converted).groupby(key)
    spread = grouped["value"].transform(lambda v: v.max() - v.min())
    tolerance = np.where(grouped["converted"].transform("any"), CONVERSION_TOLERANCE, 1e-9)
    conflicting = spread > tolerance * clean["value"].abs().clip(lower=1.0)
    in_models_unit_first = clean.assign(converted=converted).sort_values("converted", kind="stable")
    repeated = in_models_unit_first.duplicated(key, keep="first").reindex(clean.index)
    repeated &= ~conflicting
    records = []
    for mask, reason in ((repeated, DUPLICATE), (conflicting, CONFLICTING_DUPLICATE)):
        part = clean[mask]
        records.append(
            pd.DataFrame(
                {
                    "patient_id": part["patient_id"],
                    "analyte": part["analyte"],
                    "collected_at": part["collected_at"],
                    "raw_value": part["value"].map(repr),
                    "unit": None,
                    "reason": reason,
                }
            )
        )
    return clean[~repeated & ~conflicting].reset_index(drop=True), pd.concat(
        records, ignore_index=True
    )


KEPT_REASONS = (CENSORED, ANALYTE_NORMALISED, DUPLICATE)  # recorded, but a value was used


def set_aside_by_patient(issues: pd.DataFrame) -> dict[str, list[str]]:
    """Each patient's lab values set aside tonight, as "analyte as written: reason".

    >>> set_aside_by_patient(pd.DataFrame({"patient_id": ["p1", "p1"], "analyte": ["IL6", "crp"],
    ...     "reason": ["unknown_unit", "censored_bound_used"]}))
    {'p1': ['IL6: unknown unit']}
    """
    out: dict[str, list[str]] = {}
    for pid, analyte, reason in zip(issues["patient_id"], issues["analyte"], issues["reason"]):
        if is_missing(pid) or reason in KEPT_REASONS or is_missing(analyte):
            continue
        out.setdefault(str(pid), []).append(f"{analyte}: {str(reason).replace('_', ' ')}")
    return out
