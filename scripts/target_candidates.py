"""Issue 23 item 4, first step: how each candidate target decides which patient-days count,
on a cohort file (default: the bundled cart_dev.csv). Prints, per horizon, the rows, the
onsets and the prevalence each rule gives, and how many rows each keeps or drops because a
day of the window has no grade. No model is trained: these figures say which rows and labels
a model would learn from, and how far the prevalence (what calibrators learn) moves.

Usage: python scripts/target_candidates.py [--cohort FILE]

Rules (a patient-day t not yet severe; days t+1..t+h the window):
- current (task.target.onset_label): 1 if a day of the window has grade >= 3; 0 if every
  day was graded; no row otherwise - a row is kept or dropped by its outcome;
- unassessed_not_severe: a day without a grade reads as not severe, inside the record or
  after its end: every not-yet-severe day counts (assumes severe CRS is always charted);
- censored_at_record_end: no row when the window runs past the patient's last graded day,
  whatever the outcome (onset or not): rows chosen by follow-up only.
"""

from __future__ import annotations

import argparse
from datetime import timedelta

import pandas as pd

from prcrs_batch.devdata.cohort import read_cohort
from prcrs_batch.resources import bundled_data
from prcrs_batch.task.panel import HORIZONS
from prcrs_batch.task.target import SEVERE_GRADE, already_severe, daily_grades, onset_label


def candidates(cohort: pd.DataFrame) -> pd.DataFrame:
    """One row per (patient-day not yet severe, horizon) with each rule's label (NaN: no row)."""
    dated = cohort.assign(
        assessed_on=[
            d + timedelta(days=int(n)) for d, n in zip(cohort["infusion_date"], cohort["day"])
        ],
        grade=cohort["crs_grade"],
    )
    grades = daily_grades(dated)
    last_graded = {p: max(days) for p, days in grades.items()}
    rows = []
    for p, day in zip(dated["patient_id"].astype(str), dated["assessed_on"]):
        mine = grades.get(p, {})
        known = [d for d in mine if d <= day]
        latest = mine[max(known)] if known else None
        if already_severe(latest):
            continue
        for h in HORIZONS:
            window = [day + timedelta(days=k) for k in range(1, h + 1)]
            nexts = [mine.get(d) for d in window]
            onset = any(g is not None and g >= SEVERE_GRADE for g in nexts)
            unassessed = sum(g is None for g in nexts)
            past_end = window[-1] > last_graded.get(p, day)
            rows.append(
                {
                    "horizon": h,
                    "onset": onset,
                    "unassessed_days": unassessed,
                    "current": onset_label(latest, nexts),
                    "unassessed_not_severe": float(onset),
                    "censored_at_record_end": float("nan") if past_end else float(onset),
                }
            )
    return pd.DataFrame(rows)


def summary(labels: pd.DataFrame) -> pd.DataFrame:
    out = []
    for rule in ("current", "unassessed_not_severe", "censored_at_record_end"):
        for h, g in labels.groupby("horizon"):
            kept = g[rule].notna()
            out.append(
                {
                    "rule": rule,
                    "horizon": h,
                    "rows": int(kept.sum()),
                    "onsets": int(g.loc[kept, rule].sum()),
                    "prevalence": float(g.loc[kept, rule].mean()),
                    "kept_with_unassessed_day": int((kept & (g["unassessed_days"] > 0)).sum()),
                    "dropped_onsets": int((~kept & g["onset"]).sum()),
                    "dropped_without_onset": int((~kept & ~g["onset"]).sum()),
                }
            )
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", default=None, help="a cart_dev.csv-format file")
    args = parser.parse_args()
    cohort = read_cohort(args.cohort or bundled_data("cart_dev.csv"))
    table = summary(candidates(cohort))
    print(
        f"cohort: {args.cohort or 'cart_dev.csv'}, {cohort['patient_id'].nunique()} patients, "
        f"{len(cohort)} patient-days"
    )
    print(table.to_string(index=False, float_format="{:.4f}".format))


if __name__ == "__main__":
    main()
