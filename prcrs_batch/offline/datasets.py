"""Offline cohorts, built through the nightly path: the CAR-T training frame and the COVID-19
pre-training cohort.

The task, as training sees it:
- features of patient-day t: each analyte's latest clean result collected before the end of
  day t and within the lookback window, read with the nightly job's SQL (queries.py) from
  a temporary SQLite warehouse and cleaned by cleaning.clean_labs, so that training and serving
  share one path (matrix.lab_matrix);
- label for horizon h: onset of CRS grade >= 3 within h days among patient-days not yet
  severe (target.horizon_label); the paper's "grade on day t+h" kept as `paper_label_h`.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prcrs_batch.devdata.cohort import load_cohort, read_cohort
from prcrs_batch.features.cleaning import clean_labs
from prcrs_batch.features.matrix import lab_matrix
from prcrs_batch.features.temporal import PREVIOUS_PREFIX, previous_matrix
from prcrs_batch.modeling.store import sha256
from prcrs_batch.resources import bundled_data
from prcrs_batch.results.engines import make_engine
from prcrs_batch.task.panel import ANALYTE_CODES, BY_CODE, HORIZONS
from prcrs_batch.task.target import (
    SEVERE_GRADE,
    TARGET_RULES,
    already_severe,
    daily_grades,
    horizon_label,
    latest_grade,
)
from prcrs_batch.warehouse.queries import Window, crs_assessments, latest_labs

log = logging.getLogger(__name__)

DEFAULT_LOOKBACK_HOURS = 72
LABEL_COLUMNS = [f"label_{h}" for h in HORIZONS]


def horizon_labels(days: pd.DataFrame, assessments: pd.DataFrame) -> pd.DataFrame:
    """The targets of each (patient_id, as_of) row, from the CRS assessments.

    - `severe_today`: the latest grade on or before as_of is >= 3 (target.already_severe);
    - `label_h`: onset within h days (target.horizon_label), NaN when severe today;
    - `paper_label_h`: the paper's target, grade on day as_of + h >= 3 (NaN if unassessed),
      kept for the comparison with the published figures only;
    - `target_<rule>_h`: each candidate rule of target.TARGET_RULES, for their comparison.

    >>> days = pd.DataFrame({"patient_id": ["p"], "as_of": [pd.Timestamp("2026-01-01").date()]})
    >>> grades = pd.DataFrame({"patient_id": ["p", "p"], "grade": [3, 1],
    ...     "assessed_on": [pd.Timestamp(d).date() for d in ("2026-01-02", "2026-01-03")]})
    >>> horizon_labels(days, grades)[LABEL_COLUMNS].values.tolist()
    [[1.0, 1.0, 1.0]]
    """
    by_day = daily_grades(assessments)  # a day's grade: the day's highest (task.target)
    out = days.copy()
    keys = list(zip(days["patient_id"].astype(str), days["as_of"]))
    grades = [by_day.get(p, {}) for p, _ in keys]
    out["severe_today"] = [already_severe(latest_grade(g, d)) for g, (_, d) in zip(grades, keys)]
    for h in HORIZONS:
        out[f"label_{h}"] = [horizon_label(g, d, h) for g, (_, d) in zip(grades, keys)]
        for rule in TARGET_RULES:
            out[f"target_{rule}_{h}"] = [
                horizon_label(g, d, h, rule) for g, (_, d) in zip(grades, keys)
            ]
        on_day_h = [g.get(d + timedelta(days=h)) for g, (_, d) in zip(grades, keys)]
        out[f"paper_label_{h}"] = [
            np.nan if g is None else float(g >= SEVERE_GRADE) for g in on_day_h
        ]
    return out


def training_frame(
    cohort_path: Path | None = None,
    lookback_hours: int = DEFAULT_LOOKBACK_HOURS,
    *,
    previous: bool = False,
) -> pd.DataFrame:
    """One row per patient-day of a cohort file, with features built as the nightly job builds them.

    The file is loaded into a temporary SQLite warehouse; each day's features come from the
    nightly SQL and lab cleaning. Columns: patient_id, as_of, day, crs_grade, the 42 analytes
    (model units, NaN = missing), severe_today, label_1..label_3, paper_label_1..3; with
    `previous`, also `prev_<analyte>`: the result before the latest one in the same window
    (temporal.previous_matrix), for the temporal-context options of model_choices.py.
    """
    cohort = read_cohort(cohort_path or bundled_data("cart_dev.csv"))
    cohort["as_of"] = [
        d + timedelta(days=int(n)) for d, n in zip(cohort["infusion_date"], cohort["day"])
    ]
    active_days = int(cohort["day"].max()) + 1
    issues: Counter[str] = Counter()
    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/warehouse.db")
        load_cohort(engine, cohort)
        with engine.connect() as connection:
            for as_of, day_rows in cohort.groupby("as_of"):
                assert isinstance(as_of, date)
                window = Window(as_of=as_of, active_days=active_days, lookback_hours=lookback_hours)
                clean, rejected = clean_labs(latest_labs(connection=connection, window=window))
                issues.update(rejected["reason"])
                wide = lab_matrix(clean, day_rows["patient_id"].tolist())
                if previous:
                    earlier = previous_matrix(clean, day_rows["patient_id"].tolist())
                    wide = wide.join(earlier.add_prefix(PREVIOUS_PREFIX))
                parts.append(wide.assign(as_of=as_of).reset_index())
            assessments = crs_assessments(
                connection=connection,
                first_infusion=min(cohort["infusion_date"]),
                last_infusion=max(cohort["infusion_date"]),
            )
        engine.dispose()
    log.info("training features: %d patient-days; lab decisions %s", len(cohort), dict(issues))
    features = pd.concat(parts, ignore_index=True)
    days = cohort[["patient_id", "as_of", "day", "crs_grade"]].astype({"patient_id": str})
    frame = days.merge(features, on=["patient_id", "as_of"], how="left", validate="one_to_one")
    return (
        horizon_labels(frame, assessments).sort_values(["patient_id", "day"]).reset_index(drop=True)
    )


def covid_frame(path: Path | None = None) -> pd.DataFrame:
    """The COVID-19 pre-training cohort in the CAR-T units, cleaned by cleaning.clean_labs.

    Columns: subject_id, sample_id, max_severity, and the 42 analytes (NaN where absent).
    """
    raw = pd.read_csv(path or bundled_data("covid19.csv"))
    codes = [c for c in ANALYTE_CODES if c in raw.columns]
    long = raw.melt(id_vars=["sample_id"], value_vars=codes, var_name="analyte", value_name="value")
    long = long.dropna(subset=["value"])
    long = long.assign(
        patient_id=long["sample_id"],
        collected_at=pd.Timestamp("2020-01-01"),
        unit=long["analyte"].map(lambda c: BY_CODE[c].unit_covid19),
    )
    clean, rejected = clean_labs(long)
    log.info(
        "COVID-19 cohort: %d samples; lab decisions %s", len(raw), dict(Counter(rejected["reason"]))
    )
    wide = lab_matrix(clean, raw["sample_id"].tolist()).reset_index(drop=True)
    return pd.concat([raw[["subject_id", "sample_id", "max_severity"]], wide], axis=1)


def fingerprint(
    frame: pd.DataFrame, cohort_path: Path | None, covid_path: Path | None
) -> dict[str, Any]:
    """Hashes of the training files and of the feature frame, plus its extent: the
    manifest's record of what the models learned from."""
    cart = Path(cohort_path or bundled_data("cart_dev.csv"))
    covid = Path(covid_path or bundled_data("covid19.csv"))
    frame_hash = hashlib.sha256(
        pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    ).hexdigest()
    return {
        "cart_file": cart.name,
        "cart_sha256": sha256(cart),
        "covid19_file": covid.name,
        "covid19_sha256": sha256(covid),
        "feature_frame_sha256": frame_hash,
        "patient_days": int(len(frame)),
        "patients": int(frame["patient_id"].nunique()),
        "last_as_of": str(max(frame["as_of"])),
    }
