"""Synthetic warehouse rows for the benchmark, drawn from the development cohort.

Each synthetic patient follows one development patient's daily rows
(prcrs_batch/data/cart_dev.csv, cycled past its last day), so values, CRS grades and
their correlations look like the real cohort, including its known entry errors. On top:

- missingness per panel and day: coagulation/tumour-load panel missing together on 35 %
  of days, biochemistry on 30 %, the blood count on 2 %, cytokines on 35-48 % (panel
  35 % plus 0-20 % per cytokine), and 2 % of any single result;
- about 0.2 % of results are text: "<0.5", "< 2.0", ">5000", "hemolyzed", "see comment";
- about 2 % of glucose, creatinine, haemoglobin, albumin, calcium and uric acid results
  are in US units (mg/dL, g/dL), converted with the factors the job itself uses
  (`units.UNIT_FACTORS`).

A library: `Templates()` reads the cohort once, `generate_chunk` returns COPY text for
one chunk of patients. bench_load.py loads it.

>>> rng = np.random.default_rng(0)
>>> chunk = generate_chunk(rng, Templates(), 1, 10, date(2026, 11, 25), active=True)
>>> sorted(chunk) == sorted(WAREHOUSE_TABLES) + ["n_labs"]
True
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from prcrs_batch.devdata.cohort import read_cohort
from prcrs_batch.resources import bundled_data
from prcrs_batch.settings import Settings
from prcrs_batch.task.panel import ANALYTE_CODES, BY_CODE, GROUP_NAMES, inputs_for
from prcrs_batch.task.units import UNIT_FACTORS, canonical_unit
from prcrs_batch.warehouse.contract import cart_infusions, crs_assessments, lab_results

# The contract tables; generate_chunk writes their columns in this order.
WAREHOUSE_TABLES = {
    t.name: [c.name for c in t.columns] for t in (cart_infusions, lab_results, crs_assessments)
}

ACTIVE_DAYS = Settings.model_fields["active_days"].default  # active: 0-30 days after infusion

# Share of patient-days on which a whole panel is missing (keys: panel.GROUP_NAMES).
PANEL_MISSING = {1: 0.35, 2: 0.02, 3: 0.30, 4: 0.35}
CYTOKINE_EXTRA_MISSING = (0.0, 0.20)  # per cytokine, spread evenly: 35-48 % missing overall
SINGLE_MISSING = 0.02
TEXT_RATE = 0.002
US_UNIT_RATE = 0.02
# Analyte -> unit as a US laboratory writes it; the factor comes from units.UNIT_FACTORS.
US_UNITS = {
    "glucose": "mg/dL",
    "creatinine": "mg/dL",
    "hemoglobin": "g/dL",
    "albumin": "g/dL",
    "calcium": "mg/dL",
    "uric_acid": "mg/dL",
}
# Analytes whose assays report "below/above the measuring range" as text.
LOW_CENSORED = {"procalcitonin", "crp", "d_dimer", *inputs_for("cytokines")}
HIGH_CENSORED = {"il6", "ferritin", "bnp", "il10", "ifn_gamma"}
# Panel draw times (minutes after midnight): blood count, biochemistry and coagulation in
# the morning round, cytokines from a separate sample later in the morning.
PANEL_MINUTES = {1: 360, 2: 360, 3: 360, 4: 540}
PANEL_JITTER_MINUTES = 120

assert set(PANEL_MISSING) == set(PANEL_MINUTES) == set(GROUP_NAMES)
GROUP = np.array([BY_CODE[c].group for c in ANALYTE_CODES])  # panel group of each column
UNITS = [BY_CODE[c].unit for c in ANALYTE_CODES]  # the models' units
CYTOKINE_COLUMNS = [ANALYTE_CODES.index(c) for c in inputs_for("cytokines")]


class Templates:
    """The development cohort as arrays: one row per patient-day, values kept as text."""

    def __init__(self) -> None:
        cohort = read_cohort(bundled_data("cart_dev.csv")).sort_values(["patient_id", "day"])
        cohort = cohort.reset_index(drop=True)
        self.values = cohort[list(ANALYTE_CODES)].astype(object).to_numpy()  # (R, 42)
        missing = pd.isna(cohort[list(ANALYTE_CODES)]).to_numpy()
        self.values[missing] = None
        self.pools = [self.values[~missing[:, j], j] for j in range(len(ANALYTE_CODES))]
        self.grades = cohort["crs_grade"].to_numpy(dtype=float)
        starts = cohort.groupby("patient_id", sort=False).indices
        self.starts = np.array([v[0] for v in starts.values()])
        self.lengths = np.array([len(v) for v in starts.values()])
        first = cohort.drop_duplicates("patient_id")
        self.sex = first["sex"].astype(object).where(first["sex"].notna(), None).to_numpy()
        self.age = first["age"].to_numpy(dtype=float)


def copy_text(columns: list[np.ndarray]) -> str:
    """Rows for COPY ... FROM STDIN (text format); None becomes \\N."""
    frame = pd.DataFrame({str(i): c for i, c in enumerate(columns)})
    return frame.to_csv(sep="\t", header=False, index=False, na_rep="\\N", lineterminator="\n")


def generate_chunk(
    rng: np.random.Generator,
    templates: Templates,
    first_id: int,
    n: int,
    as_of: date,
    active: bool,
) -> dict[str, str]:
    """COPY text for n patients: infusions, lab results and daily CRS assessments.

    Active patients were infused 0-ACTIVE_DAYS days before `as_of`, with a row per day
    up to `as_of`; inactive ones finished their course months ago. Keys: the table names
    of WAREHOUSE_TABLES (columns in that order), plus "n_labs" (rows of lab_results).
    """
    ids = np.array([f"BENCH-{i:07d}" for i in range(first_id, first_id + n)], dtype=object)
    template = rng.integers(0, len(templates.starts), n)
    if active:
        days_since = rng.integers(0, ACTIVE_DAYS + 1, n)
    else:
        days_since = rng.integers(ACTIVE_DAYS + 1, 400, n)
    n_days = np.minimum(days_since, ACTIVE_DAYS) + 1
    infusion = np.datetime64(as_of, "D") - days_since.astype("timedelta64[D]")

    # One row per patient-day: the D axis.
    patient = np.repeat(np.arange(n), n_days)  # (D,)
    day = np.arange(n_days.sum()) - np.repeat(np.cumsum(n_days) - n_days, n_days)
    source = templates.starts[template[patient]] + day % templates.lengths[template[patient]]
    values = templates.values[source].copy()  # (D, 42) object
    for j, pool in enumerate(templates.pools):  # template gaps filled from the column
        empty = np.flatnonzero(pd.isna(values[:, j]))
        values[empty, j] = pool[rng.integers(0, len(pool), len(empty))]

    n_pd = len(patient)
    present = _draw_present(rng, n_pd)  # (D, 42)
    units = _convert_some_to_us_units(rng, values, present)  # (D, 42)
    _write_some_as_text(rng, values, present)

    # Draw time of each panel on each patient-day.
    day_start = infusion[patient] + day.astype("timedelta64[D]")  # (D,) datetime64[D]
    minutes = {
        g: PANEL_MINUTES[g] + rng.integers(0, PANEL_JITTER_MINUTES, n_pd) for g in PANEL_MINUTES
    }
    r, c = np.nonzero(present)
    group_minutes = np.stack([minutes[g] for g in GROUP], axis=1)  # (D, 42)
    collected = day_start[r].astype("datetime64[m]") + group_minutes[r, c].astype("timedelta64[m]")
    labs = copy_text(
        [
            ids[patient[r]],
            np.datetime_as_string(collected, unit="s"),
            np.array(ANALYTE_CODES, dtype=object)[c],
            values[r, c],
            units[r, c],
        ]
    )

    age = templates.age[template]
    infusions = copy_text(
        [
            ids,
            np.datetime_as_string(infusion, unit="D"),
            templates.sex[template],
            np.array([None if np.isnan(a) else str(int(a)) for a in age], dtype=object),
        ]
    )
    grades = templates.grades[source]
    graded = ~np.isnan(grades)
    assessments = copy_text(
        [
            ids[patient[graded]],
            np.datetime_as_string(day_start[graded], unit="D"),
            grades[graded].astype(int),
        ]
    )
    return {
        cart_infusions.name: infusions,
        lab_results.name: labs,
        crs_assessments.name: assessments,
        "n_labs": str(len(r)),
    }


def _draw_present(rng: np.random.Generator, n_pd: int) -> np.ndarray:
    """(D, 42) bool: which results exist (whole panels, single cytokines, single results)."""
    present = np.ones((n_pd, len(ANALYTE_CODES)), dtype=bool)
    for group, rate in PANEL_MISSING.items():
        present[:, GROUP == group] &= (rng.random(n_pd) >= rate)[:, None]
    for k, j in enumerate(CYTOKINE_COLUMNS):
        extra = np.interp(k, [0, len(CYTOKINE_COLUMNS) - 1], CYTOKINE_EXTRA_MISSING)
        present[:, j] &= rng.random(n_pd) >= extra
    present &= rng.random(present.shape) >= SINGLE_MISSING
    return present


def _convert_some_to_us_units(
    rng: np.random.Generator, values: np.ndarray, present: np.ndarray
) -> np.ndarray:
    """Rewrite about US_UNIT_RATE of the US_UNITS analytes' values in place; returns the units."""
    n_pd = len(values)
    units = np.array(UNITS, dtype=object)[None, :].repeat(n_pd, axis=0)  # (D, 42)
    for code, unit in US_UNITS.items():
        factor = UNIT_FACTORS[(code, str(canonical_unit(unit)))]  # model unit = US unit * factor
        j = ANALYTE_CODES.index(code)
        rows = np.flatnonzero(present[:, j] & (rng.random(n_pd) < US_UNIT_RATE))
        numbers = pd.to_numeric(pd.Series(values[rows, j]), errors="coerce").to_numpy()
        ok = ~np.isnan(numbers)
        values[rows[ok], j] = [f"{v:.4g}" for v in numbers[ok] / factor]
        units[rows[ok], j] = unit
    return units


def _write_some_as_text(rng: np.random.Generator, values: np.ndarray, present: np.ndarray) -> None:
    """Replace about TEXT_RATE of the present results, in place, by text a laboratory writes."""
    r, c = np.nonzero(present & (rng.random(present.shape) < TEXT_RATE))
    for row, col in zip(r, c):
        code = ANALYTE_CODES[col]
        choices = ["hemolyzed", "see comment"]
        if code in LOW_CENSORED:
            choices += ["<0.5", "< 2.0"] * 2
        if code in HIGH_CENSORED:
            choices += [">5000"] * 2
        values[row, col] = choices[rng.integers(0, len(choices))]
