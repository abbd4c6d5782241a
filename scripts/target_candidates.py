"""Issue 23 item 4, first step: how each candidate target decides which patient-days count,
on a cohort file (default: the bundled cart_dev.csv). Prints, per horizon, the rows, the
onsets and the prevalence each rule gives, and how many rows each keeps or drops because a
day of the window has no grade. No model is trained: these figures say which rows and labels
a model would learn from, and how far the prevalence (what calibrators learn) moves.

Usage: python scripts/target_candidates.py [--cohort FILE] [--cv [--quick]]

With --cv, each candidate is also learnt and judged (evaluation.target_comparison: `all`,
PrCRS transfer and logistic regression, one CV repeat, with the shipped models' pre-trained
bodies) and the rule fixed before the run (evaluation_decisions.choose_target) is applied;
`prcrs-batch evaluate` writes the same table into EVALUATION.md.

Rules: task.target.TARGET_RULES (kept_by_outcome, unassessed_not_severe,
censored_at_record_end); task.target.TARGET is the one the models learn.
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta

import pandas as pd

from prcrs_batch.devdata.cohort import read_cohort
from prcrs_batch.resources import bundled_data
from prcrs_batch.task.panel import HORIZONS
from prcrs_batch.task.target import SEVERE_GRADE, TARGET_RULES, already_severe, daily_grades


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
                {"horizon": h, "onset": onset, "unassessed_days": unassessed}
                | {rule: label(nexts, past_end) for rule, label in TARGET_RULES.items()}
            )
    return pd.DataFrame(rows)


def summary(labels: pd.DataFrame) -> pd.DataFrame:
    out = []
    for rule in TARGET_RULES:
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
    parser.add_argument("--cv", action="store_true", help="also learn and judge each target")
    parser.add_argument("--quick", action="store_true", help="with --cv: tiny settings")
    parser.add_argument("--model-dir", default="models", help="the pre-trained bodies' folder")
    args = parser.parse_args()
    cohort = read_cohort(args.cohort or bundled_data("cart_dev.csv"))
    table = summary(candidates(cohort))
    print(
        f"cohort: {args.cohort or 'cart_dev.csv'}, {cohort['patient_id'].nunique()} patients, "
        f"{len(cohort)} patient-days"
    )
    print(table.to_string(index=False, float_format="{:.4f}".format))
    if args.cv:
        learnt(args)


def learnt(args: argparse.Namespace) -> None:
    """Each candidate learnt and judged, and the rule's choice."""
    from threadpoolctl import threadpool_limits

    from prcrs_batch.modeling import device, store
    from prcrs_batch.offline import datasets, evaluation, evaluation_decisions
    from prcrs_batch.offline.training import TrainConfig

    started = time.perf_counter()
    cfg = TrainConfig.quick() if args.quick else TrainConfig()
    device.set_torch_threads(cfg.threads)
    methods, _ = evaluation.all_methods(store.load_bodies(args.model_dir), cfg)
    frame = datasets.training_frame(args.cohort)
    with threadpool_limits(limits=cfg.threads):
        table = evaluation.target_comparison(frame, methods, 0, cfg.n_folds)
    print(table.to_string(index=False, float_format="{:.4f}".format))
    print(f"the rule chooses: {evaluation_decisions.choose_target(table)}")
    print(f"{time.perf_counter() - started:.0f} s{' (QUICK settings)' if args.quick else ''}")


if __name__ == "__main__":
    main()
