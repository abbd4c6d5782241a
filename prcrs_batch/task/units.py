"""Units: the spellings of one unit folded into one, and the factors that convert a lab's
unit into the unit the models use. cleaning.py applies them; a unit not known for an analyte
makes its value missing there (recorded as unknown_unit).
"""

from __future__ import annotations

import re
from functools import lru_cache

from prcrs_batch.task.panel import BY_CODE
from prcrs_batch.task.row_keys import MAX_CODE_CHARS, is_missing

# Spellings of one unit that mean the same thing, after lower-casing and removing spaces.
_UNIT_ALIASES = {
    "10^9/l": (
        "10*9/l",
        "10e9/l",
        "x10^9/l",
        "x10e9/l",
        "g/l_cells",
        "10^3/ul",
        "10*3/ul",
        "x10^3/ul",
        "k/ul",
        "10^3/mm3",
    ),
    "10^12/l": ("10*12/l", "10e12/l", "x10^12/l", "t/l", "10^6/ul", "10*6/ul", "x10^6/ul", "m/ul"),
    "u/l": ("iu/l", "units/l"),
    "mmol/l": ("meq/l",),
    "umol/l": ("µmol/l", "μmol/l"),
    "pg/ml": ("ng/l",),
    "ng/ml": ("ug/l", "µg/l", "μg/l"),
    "mg/lfeu": ("ug/mlfeu", "µg/mlfeu", "mg/l", "ug/ml", "mg/l{feu}"),  # UCUM: mg/L{FEU}
    "s": ("sec", "secs", "second", "seconds"),
    "fraction": ("ratio", "{ratio}", "1", "l/l"),  # OMOP's UCUM unit 'ratio': {ratio}
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


# UCUM annotations in braces do not change a unit (`10*3/uL{cells}` is 10*3/uL), except the
# D-dimer's, which say what was measured: FEU (fibrinogen-equivalent units, the models') or
# DDU (D-dimer units, about half): kept, so that `mg/L{DDU}` stays unknown to the models.
_MEANINGFUL_ANNOTATION = re.compile(r"\{(feu|ddu)\}")
_ANNOTATION = re.compile(r"\{[^{}]*\}")


@lru_cache(maxsize=1024)
def _canonical_unit_text(text: str) -> str | None:
    text = "".join(text.split()).lower().replace("µ", "u").replace("μ", "u")
    text = _ANNOTATION.sub("", _MEANINGFUL_ANNOTATION.sub(r"\1", text))
    if text in ("", "none", "null"):
        return None
    return _CANONICAL.get(text, text)


def canonical_unit(unit: object) -> str | None:
    """Lower-case, whitespace-free spelling of a unit, with aliases folded.

    >>> canonical_unit(" x10^9/L "), canonical_unit("10*3/uL{cells}"), canonical_unit("mg/L{FEU}")
    ('10^9/l', '10^9/l', 'mg/lfeu')
    """
    if is_missing(unit):
        return None
    text = str(unit)
    if len(text) > MAX_CODE_CHARS:
        return "?" + text[:MAX_CODE_CHARS]  # unknown to every analyte
    return _canonical_unit_text(text)


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
