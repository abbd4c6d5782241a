"""Raw warehouse lab rows -> clean numeric values in the models' units.

Each value is parsed, converted and checked on its own; a value that cannot be trusted
becomes missing and the decision is recorded with a reason, so one bad result never
stops a night. Training and the nightly run both clean their labs here. The night uses
each analyte's latest *usable* result in the lookback window (`clean_labs(...,
latest_only=True)`): a newer result that is set aside is recorded and the next older one
is tried. Patient ids and analyte codes are checked by screening.py.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

from prcrs_batch.panel import BY_CODE
from prcrs_batch.screening import (
    ANALYTE_NORMALISED,
    ISSUE_COLUMNS,
    MAX_CODE_CHARS,
    MISSING_PATIENT_ID,
    canonical_code,
    excerpt,
    is_missing,
    patient_id_problem,
)

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

# Spellings of one unit that mean the same thing, after lower-casing and removing spaces.
_UNIT_ALIASES = {
    "10^9/l": (
        "10*9/l",
        "10e9/l",
        "x10^9/l",
        "x10e9/l",
        "g/l_cells",
        "10^3/ul",
        "x10^3/ul",
        "k/ul",
        "10^3/mm3",
    ),
    "10^12/l": ("10*12/l", "10e12/l", "x10^12/l", "t/l", "10^6/ul", "x10^6/ul", "m/ul"),
    "u/l": ("iu/l", "units/l"),
    "mmol/l": ("meq/l",),
    "umol/l": ("µmol/l", "μmol/l"),
    "pg/ml": ("ng/l",),
    "ng/ml": ("ug/l", "µg/l", "μg/l"),
    "mg/lfeu": ("ug/mlfeu", "µg/mlfeu", "mg/l", "ug/ml"),
    "s": ("sec", "secs", "second", "seconds"),
    "fraction": ("ratio", "1", "l/l"),
}
_CANONICAL = {alias: canon for canon, aliases in _UNIT_ALIASES.items() for alias in aliases}

# (analyte, canonical unit) -> factor into the model's unit, where the units differ.
UNIT_FACTORS: dict[tuple[str, str], float] = {
    ("fibrinogen", "mg/dl"): 0.01,
    ("calcium", "mg/dl"): 1 / 4.008,
    ("glucose", "mg/dl"): 1 / 18.016,
    ("albumin", "g/dl"): 10.0,
    ("creatinine", "mg/dl"): 88.42,
    ("hemoglobin", "g/dl"): 10.0,
    ("uric_acid", "mg/dl"): 59.48,
    ("triglyceride", "mg/dl"): 0.01129,
    ("crp", "mg/dl"): 10.0,
    ("prealbumin", "mg/dl"): 10.0,
    ("prealbumin", "g/l"): 1000.0,
    ("d_dimer", "ng/mlfeu"): 0.001,
    ("d_dimer", "ug/lfeu"): 0.001,
    ("platelet", "/ul"): 0.001,
    ("wbc", "/ul"): 0.001,
}
for _code in ("neutrophil_pct", "lymphocyte_pct", "monocyte_pct", "blast_fraction"):
    UNIT_FACTORS[(_code, "%")] = 0.01

# Linear in its input: no two quantifiers can match the same characters (a value of a
# million digits is refused by length first anyway). ASCII digits only.
_NUMBER = re.compile(
    r"(?P<op><=|>=|<|>|≤|≥)?\s*(?P<num>\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
)


@lru_cache(maxsize=1024)
def _canonical_unit_text(text: str) -> str | None:
    text = "".join(text.split()).lower().replace("µ", "u").replace("μ", "u")
    if text in ("", "none", "null"):
        return None
    return _CANONICAL.get(text, text)


def canonical_unit(unit: object) -> str | None:
    """Lower-case, whitespace-free spelling of a unit, with aliases folded.

    >>> canonical_unit(" x10^9/L ")
    '10^9/l'
    """
    if is_missing(unit):
        return None
    text = str(unit)
    if len(text) > MAX_CODE_CHARS:
        return "?" + text[:MAX_CODE_CHARS]  # unknown to every analyte
    return _canonical_unit_text(text)


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


def to_model_unit(analyte: str, value: float, unit: object) -> float | None:
    """Convert a value into the model's unit; None when the unit is not known for the analyte.

    A missing unit is taken to be the model's unit (the warehouse contract allows NULL).

    >>> round(to_model_unit("glucose", 90.0, "mg/dL"), 2)
    5.0
    """
    given = canonical_unit(unit)
    model = canonical_unit(BY_CODE[analyte].unit)
    if given is None or given == model or analyte == "chloride" and given == "mmol/l":
        return value
    factor = UNIT_FACTORS.get((analyte, given))
    return None if factor is None else value * factor


def is_plausible(analyte: str, value: float) -> bool:
    low, high = PLAUSIBLE_RANGES[analyte]
    return low <= value <= high


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
    frame = raw[["patient_id", "collected_at", "analyte", "value", "unit"]].reset_index(drop=True)
    names = frame["analyte"].dropna().unique()
    spellings = {name: canonical_code(name) for name in names}
    frame["code"] = frame["analyte"].map({k: v[0] for k, v in spellings.items()})
    frame["normalised"] = frame["analyte"].map({k: v[1] for k, v in spellings.items()})
    ids = frame["patient_id"].dropna().unique()
    problems = frame["patient_id"].map({p: patient_id_problem(p) for p in ids})
    frame["id_problem"] = problems.where(frame["patient_id"].notna(), MISSING_PATIENT_ID)
    if not latest_only:
        return _clean(frame, now)
    keyed = frame["id_problem"].isna() & frame["code"].notna() & frame["collected_at"].notna()
    clean, issues = _clean(frame[~keyed], now)  # these rows can never be a value
    cleans, issue_parts = [clean], [issues]
    pending = frame[keyed].assign(key=lambda f: f["patient_id"].astype(str) + "\x1f" + f["code"])
    while not pending.empty:  # newest rows of each analyte first, older only while unusable
        newest = pending.groupby("key", sort=False)["collected_at"].transform("max")
        at_newest = pending["collected_at"] == newest
        clean, issues = _clean(pending[at_newest], now)
        cleans.append(clean)
        issue_parts.append(issues)
        found = set(clean["patient_id"].astype(str) + "\x1f" + clean["analyte"])
        pending = pending[~at_newest & ~pending["key"].isin(found)]
    return _concat(cleans, CLEAN_COLUMNS), _concat(issue_parts, ISSUE_COLUMNS)


def _concat(parts: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


def _clean(frame: pd.DataFrame, now: pd.Timestamp | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each row judged on its own, then duplicates resolved (see clean_labs)."""
    kept: list[tuple] = []
    raw: list[tuple] = []  # (row, reason): made into issue rows (excerpts) at the end
    names = ["patient_id", "collected_at", "analyte", "value", "unit", "code", "normalised"]
    columns = [frame[name].to_numpy(dtype=object) for name in [*names, "id_problem"]]
    for *row, id_problem in zip(*columns):  # plain objects: pandas' per-item access is slow
        pid, collected, _, value, unit, code, normalised = row
        unit = None if is_missing(unit) else unit
        collected = None if is_missing(collected) else collected
        if isinstance(id_problem, str):
            raw.append((row, id_problem))
            continue
        if not isinstance(code, str):
            raw.append((row, UNKNOWN_ANALYTE))
            continue
        if collected is None:
            raw.append((row, MISSING_TIMESTAMP))
            continue
        if now is not None and collected > now:
            raw.append((row, FUTURE_TIMESTAMP))
            continue
        parsed = parse_value(value)
        if parsed.value is None:
            raw.append((row, parsed.reason))
            continue
        converted = to_model_unit(code, parsed.value, unit)
        if converted is None:
            raw.append((row, UNKNOWN_UNIT))
            continue
        if not is_plausible(code, converted):
            raw.append((row, IMPLAUSIBLE))
            continue
        if parsed.reason == CENSORED:
            raw.append((row, CENSORED))
        if normalised is True:
            raw.append((row, ANALYTE_NORMALISED))
        kept.append((str(pid), collected, code, converted))
    issues = [
        (excerpt(p), excerpt(a), None if is_missing(t) else t, excerpt(v), excerpt(u), reason)
        for (p, t, a, v, u, _, _), reason in raw
    ]

    clean = pd.DataFrame(kept, columns=CLEAN_COLUMNS)
    clean, duplicate_issues = _resolve_duplicates(clean)
    issues_frame = pd.DataFrame(issues, columns=ISSUE_COLUMNS)
    if len(duplicate_issues):
        issues_frame = pd.concat([issues_frame, duplicate_issues], ignore_index=True)
    return clean, issues_frame


def _resolve_duplicates(clean: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Same patient, analyte and time: identical values keep one; different values keep none."""
    key = ["patient_id", "analyte", "collected_at"]
    if clean.empty or not clean.duplicated(key).any():
        return clean, pd.DataFrame(columns=ISSUE_COLUMNS)
    spread = clean.groupby(key)["value"].transform(lambda v: v.max() - v.min())
    conflicting = spread > 1e-9 * clean["value"].abs().clip(lower=1.0)
    repeated = clean.duplicated(key, keep="first") & ~conflicting
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
