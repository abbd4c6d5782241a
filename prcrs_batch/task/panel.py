"""The prediction task as data: the 42-analyte panel, the six factor sets, the horizons,
and the rule for which rows are scored (the target is target.py's).

Every other module takes these names from here, so the panel is declared once.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

import numpy as np

from prcrs_batch.resources import bundled_data

HORIZONS = (1, 2, 3)  # days ahead
MIN_OBSERVED_INPUTS = 5  # a model is scored only with this many observed inputs (or all, if fewer)

# The paper's recommended order: the report uses the first set whose inputs are there.
FACTOR_SETS: dict[str, tuple[int, ...]] = {
    "all": (1, 2, 3, 4),
    "no_cytokines": (1, 2, 3),
    "cytokines": (4,),
    "biochem_blood": (2, 3),
    "biochem": (3,),
    "blood_routine": (2,),
}
GROUP_NAMES = {
    1: "coagulation and tumour load",
    2: "blood routine",
    3: "biochemistry",
    4: "cytokines",
}


@dataclass(frozen=True)
class Analyte:
    code: str
    group: int
    display_name: str
    unit: str  # the unit the models use (the CAR-T cohort's)
    unit_covid19: str | None  # the COVID-19 cohort's unit; None where it lacks the analyte


def _read_panel() -> tuple[Analyte, ...]:
    text = bundled_data("analytes.csv").read_text("utf-8")
    return tuple(
        Analyte(
            code=row["code"],
            group=int(row["group"]),
            display_name=row["display_name"],
            unit=row["unit_cart"],
            unit_covid19=row["unit_covid19"] or None,
        )
        for row in csv.DictReader(text.splitlines())
    )


ANALYTES: tuple[Analyte, ...] = _read_panel()
ANALYTE_CODES: tuple[str, ...] = tuple(a.code for a in ANALYTES)
BY_CODE: dict[str, Analyte] = {a.code: a for a in ANALYTES}


def inputs_for(factor_set: str) -> list[str]:
    """The analyte codes a factor set's model takes, in panel order.

    >>> inputs_for("cytokines")
    ['il2', 'il4', 'il6', 'il10', 'tnf_alpha', 'ifn_gamma', 'il17a']
    """
    groups = FACTOR_SETS[factor_set]
    return [a.code for a in ANALYTES if a.group in groups]


def min_observed(factor_set: str) -> int:
    """How many observed inputs a factor set needs before it is scored."""
    return min(MIN_OBSERVED_INPUTS, len(inputs_for(factor_set)))


def scorable(n_observed: np.ndarray, factor_set: str) -> np.ndarray:
    """The scorability rule: does a row with `n_observed` of the set's inputs get a score.

    The nightly job scores exactly these rows, and training learns from exactly these.

    >>> scorable(np.array([4, 5, 7]), "cytokines").tolist()
    [False, True, True]
    """
    return np.asarray(n_observed) >= min_observed(factor_set)
