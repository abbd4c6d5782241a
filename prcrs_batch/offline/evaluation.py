"""Offline evaluation: patient-grouped CV of PrCRS against baselines; writes EVALUATION.md.

Every method (baselines.py) sees exactly the same folds (cv.patient_folds: grouped by
patient, stratified on whether the patient ever has severe CRS), repeated over seeds, the
same features (datasets.training_frame, the nightly job's path), and the same normalisation
per fold (cv.FoldedRows.fold_stats), through the one out-of-fold loop (cv.out_of_fold) that
`train` uses for the shipped models' CV metrics.

Every method's risks are then treated as the shipped ones are: per horizon a calibrator
chosen by calibration.choose and cross-fitted, then made cumulative over the horizons
(calibration.cumulative). The figures are of that risk (`c`) unless they say "raw" (`p`).
EVALUATION.md is rendered by evaluation_report.py.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from prcrs_batch.modeling import calibration, device, store
from prcrs_batch.offline import (
    baselines,
    comparisons,
    cv,
    datasets,
    evaluation_report,
    model_choices,
)
from prcrs_batch.offline.cv import FitPredict
from prcrs_batch.offline.training import TrainConfig
from prcrs_batch.task import metrics, thresholds
from prcrs_batch.task.panel import FACTOR_SETS, HORIZONS, inputs_for
from prcrs_batch.task.target import TARGET_RULES

logger = logging.getLogger(__name__)

THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)  # rows of the threshold table


def cross_validate(
    frame: pd.DataFrame,
    methods: dict[str, FitPredict],
    factor_sets: dict[str, list[str]],
    seeds: list[int],
    n_folds: int,
    neural_seeds: int | None = None,
    repeated_sets: tuple[str, ...] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Out-of-fold risks of every scorable patient-day, and the calibrators chosen.

    Returns (risks, calibrators). `risks` has one row per (seed, factor_set, method,
    horizon, scorable patient-day): patient_id, day, fold, y (NaN where the row has no
    label for the horizon), p (raw), c (calibrated, cumulative). `calibrators` has one row
    per (seed, factor_set, method, horizon): the cross-fitted Brier/ECE of each calibrator
    and the one chosen. CV repeat `seed` folds the patients with fold seed `seed`, and fold
    k's models get seed `seed * 100 + k`. Networks trained from scratch run on the first
    `neural_seeds` repeats only (None: all); factor sets not in `repeated_sets` on the first.
    """
    risks, chosen = [], []
    for i, seed in enumerate(seeds):
        folds = cv.patient_folds(frame, n_folds, seed)
        for factor_set, names in factor_sets.items():
            if repeated_sets is not None and factor_set not in repeated_sets and i > 0:
                continue
            data = cv.FoldedRows.select(frame, folds, factor_set)
            for name in names:
                if (
                    name in baselines.FROM_SCRATCH
                    and neural_seeds is not None
                    and i >= neural_seeds
                ):
                    continue
                started = time.perf_counter()
                raw = {h: cv.out_of_fold(data, methods[name], h, seed * 100) for h in HORIZONS}
                key = {"seed": seed, "factor_set": factor_set, "method": name}
                cal = []
                for h in HORIZONS:
                    choice = calibration.choose_cross_fitted(raw[h], data.y(h), data.folds)
                    cal.append(choice.calibrated)
                    chosen.append(
                        key
                        | {"horizon": h, "chosen": choice.method}
                        | {f"{k}_{m}": v[k] for m, v in choice.comparison.items() for k in v}
                        | {f"{k}_nested": v for k, v in choice.nested.items()}
                    )
                shipped = calibration.cumulative(np.column_stack(cal))
                for j, h in enumerate(HORIZONS):
                    risks.append(
                        pd.DataFrame(
                            key
                            | {
                                "horizon": h,
                                "row": np.arange(len(data.rows)),
                                "patient_id": data.patients,
                                "day": data.rows["day"].to_numpy(),
                                "fold": data.folds,
                                "y": data.y(h),
                                "p": raw[h],
                                "c": shipped[:, j],
                            }
                        )
                    )
                logger.info(
                    "seed %d %s %s: %.1f s", seed, factor_set, name, time.perf_counter() - started
                )
    return pd.concat(risks, ignore_index=True), pd.DataFrame(chosen)


def summarise(
    risks: pd.DataFrame,
    calibrators: pd.DataFrame,
    threshold: float,
    n_boot: int = metrics.N_BOOT,
) -> pd.DataFrame:
    """Metrics per (factor_set, horizon, method), averaged over CV repeats, with patient
    bootstrap CIs of the AUROC and AUPRC of the calibrated cumulative risk."""
    rows = []
    for (fs, h, method), g in risks.groupby(["factor_set", "horizon", "method"], sort=False):
        per_seed, preds = [], []
        labelled = g[g["y"].notna()]
        first = labelled[labelled["seed"] == labelled["seed"].iloc[0]].sort_values("row")
        for _, s in labelled.groupby("seed"):
            s = s.sort_values("row")
            y = s["y"].to_numpy(dtype=int)
            raw = metrics.binary_metrics(y, s["p"].to_numpy(), threshold)
            shipped = metrics.binary_metrics(y, s["c"].to_numpy(), threshold)
            per_seed.append(
                {f"{k}_raw": v for k, v in raw.items() if k in ("auroc", "auprc", "brier", "ece")}
                | {k: v for k, v in shipped.items() if k not in ("n", "n_positive")}
            )
            preds.append(s["c"].to_numpy())
        scored = g[g["seed"] == g["seed"].iloc[0]]
        ci = metrics.bootstrap_ci(
            first["y"].to_numpy(dtype=int), preds, first["patient_id"].to_numpy(), n_boot=n_boot
        )
        df = pd.DataFrame(per_seed)
        row = {"factor_set": fs, "horizon": h, "method": method} | df.mean().to_dict()
        row["auroc_sd_over_seeds"] = float(df["auroc"].std(ddof=0))
        row["auroc_ci"], row["auprc_ci"] = ci["auroc"], ci["auprc"]
        row["alerts_per_100"] = 100 * float((scored["c"] >= threshold).mean())
        row["n"], row["n_positive"] = len(first), int(first["y"].sum())
        row["n_patients"] = int(first["patient_id"].nunique())
        mine = calibrators[
            (calibrators["factor_set"] == fs)
            & (calibrators["horizon"] == h)
            & (calibrators["method"] == method)
        ]
        row["best_calibration"] = mine["chosen"].mode().iloc[0]
        for column in mine.columns:
            if column.startswith(("brier_", "ece_")):
                row[f"cal_{column}"] = float(mine[column].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def threshold_table(
    risks: pd.DataFrame, thresholds: tuple[float, ...] = THRESHOLDS
) -> pd.DataFrame:
    """Per threshold and horizon: sensitivity, PPV and alerts per 100 patient-days of the
    calibrated cumulative risk, and the alert rule's catch of onsets within 1 day (a patient
    is flagged when any horizon's risk reaches the threshold: the 3-day risk, since the risks
    are cumulative). Mean over CV repeats. `risks` is one (factor set, method)."""
    out = []
    repeats = onset_risks(risks)
    for thr in thresholds:
        row: dict[str, float] = {"threshold": thr}
        for h in HORIZONS:
            per_seed = [
                _at_threshold(s, thr) for _, s in risks[risks["horizon"] == h].groupby("seed")
            ]
            for k in ("sensitivity", "ppv", "alerts_per_100"):
                row[f"{k}_{h}"] = float(np.nanmean([m[k] for m in per_seed]))
        row["alert_sensitivity_1"] = _mean_caught(repeats, thr)["flagged_night_before"]
        out.append(row)
    return pd.DataFrame(out)


def _at_threshold(s: pd.DataFrame, thr: float) -> dict[str, float]:
    flagged = s["c"].to_numpy() >= thr
    y = s["y"].to_numpy()
    positive, labelled = y == 1, ~np.isnan(y)
    return {
        "sensitivity": float(flagged[positive].mean()) if positive.any() else float("nan"),
        "ppv": float((y[flagged & labelled] == 1).mean())
        if (flagged & labelled).any()
        else float("nan"),
        "alerts_per_100": 100 * float(flagged.mean()),
    }


def onset_risks(risks: pd.DataFrame) -> list[thresholds.OnsetRisks]:
    """Per CV repeat of one (factor set, method), what the threshold rules read."""
    return [thresholds.OnsetRisks.of(_alert_rows(s)) for _, s in risks.groupby("seed")]


def _alert_rows(repeat: pd.DataFrame) -> pd.DataFrame:
    """One CV repeat's risks, one row per scored patient-day: patient_id, day, fold, risk
    (the longest horizon's cumulative risk: the alert's), y1 and y_last (labels)."""
    last = max(HORIZONS)
    by_horizon = {h: repeat[repeat["horizon"] == h].set_index("row") for h in (1, last)}
    rows = by_horizon[last].drop(columns=["y", "c", "horizon"], errors="ignore")
    return rows.assign(
        risk=by_horizon[last]["c"],
        y1=by_horizon[1]["y"].reindex(rows.index),
        y_last=by_horizon[last]["y"],
    ).reset_index()


def _mean_caught(repeats: list[thresholds.OnsetRisks], thr: float) -> dict[str, float]:
    return _mean_over_repeats([thresholds.caught(r, thr) for r in repeats])


def _mean_over_repeats(figures: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's mean over the CV repeats that have it (NaN where none has)."""
    out = {}
    for key in figures[0] if figures else ():
        values = [f[key] for f in figures if not np.isnan(f[key])]
        out[key] = float(np.mean(values)) if values else float("nan")
    return out


def default_threshold(risks: pd.DataFrame) -> float:
    """thresholds.alert_threshold's rule on every CV repeat of one (factor set, method)."""
    return thresholds.alert_threshold(onset_risks(risks))


def lead_times(risks: pd.DataFrame, threshold: float) -> dict[str, float]:
    """For each onset of severe CRS within 1 day of a scored patient-day, how many days
    before it the patient was first flagged in the 3 days before (thresholds.caught);
    mean over CV repeats. `risks` is one (factor set, method)."""
    return _mean_caught(onset_risks(risks), threshold)


def nested_tiers(risks: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The alert and the alert-or-watch tiers judged out of sample: in each CV repeat, each
    outer fold's patient-days are flagged at the thresholds that the rules
    (thresholds.alert_threshold, watch_threshold) chose on the other folds' risks alone;
    the figures (thresholds.caught) pool the outer folds and average the repeats.

    Each fold is flagged by its risk's margin over its own thresholds (risk - threshold >= 0
    exactly when risk >= threshold), so that one `caught` pools all folds. Also returned:
    the thresholds the folds chose (lowest, highest). One (factor set, method)."""
    tiers: dict[str, list[dict[str, float]]] = {"alert": [], "alert_or_watch": []}
    chosen: dict[str, list[float]] = {"alert": [], "watch": []}
    for _, repeat in risks.groupby("seed"):
        rows = _alert_rows(repeat)
        margin = {tier: rows["risk"].to_numpy(float).copy() for tier in tiers}
        for fold in np.unique(rows["fold"]):
            inner = thresholds.OnsetRisks.of(rows[rows["fold"] != fold])
            alert = thresholds.alert_threshold([inner])
            watch = thresholds.watch_threshold([inner], alert)
            outer = (rows["fold"] == fold).to_numpy()
            margin["alert"][outer] -= alert
            margin["alert_or_watch"][outer] -= alert if watch is None else watch
            chosen["alert"].append(alert)
            chosen["watch"].append(alert if watch is None else watch)
        for tier, values in margin.items():
            tiers[tier].append(
                thresholds.caught(thresholds.OnsetRisks.of(rows.assign(risk=values)), 0.0)
            )
    out = {tier: _mean_over_repeats(figures) for tier, figures in tiers.items()}
    for tier, key in (("alert", "alert"), ("alert_or_watch", "watch")):
        out[tier] |= {"threshold_low": min(chosen[key]), "threshold_high": max(chosen[key])}
    return out


def all_methods(bodies: list[Any], cfg: TrainConfig) -> tuple[dict[str, FitPredict], list[str]]:
    """Every method evaluate compares (the baselines and the model-choice options, which
    share the shipped fit, model_choices.SHIPPED), and the options' names."""
    shared = model_choices.methods(bodies, cfg)
    methods = baselines.methods(bodies, cfg, shared[model_choices.SHIPPED]) | shared
    return methods, [m for m in shared if m != model_choices.SHIPPED]


TARGET_METHODS = ["prcrs_transfer", "logistic"]  # what the candidate targets are compared with


def target_comparison(
    frame: pd.DataFrame, methods: dict[str, FitPredict], seed: int, n_folds: int
) -> pd.DataFrame:
    """Each candidate target (task.target.TARGET_RULES) learnt and judged in its own right:
    `all`, PrCRS transfer and logistic regression, one CV repeat, calibrated and cumulative
    as shipped. Per (rule, horizon): rows, onsets, prevalence, each method's AUROC, and
    PrCRS's mean risk against the observed rate with its calibration intercept."""
    out = []
    for rule in TARGET_RULES:
        variant = frame.assign(**{f"label_{h}": frame[f"target_{rule}_{h}"] for h in HORIZONS})
        plan = {"all": [m for m in TARGET_METHODS if m in methods]}
        risks, _ = cross_validate(variant, methods, plan, [seed], n_folds)
        for h in HORIZONS:
            mine = risks[(risks["horizon"] == h) & risks["y"].notna()]
            row: dict[str, object] = {"rule": rule, "horizon": h}
            for method, m in mine.groupby("method"):
                y, c = m["y"].to_numpy(int), m["c"].to_numpy(float)
                row[f"auroc_{method}"] = metrics.auroc(y, c)
                if method == "prcrs_transfer":
                    intercept, _ = metrics.calibration_intercept_slope(y, c)
                    row |= {"rows": len(y), "onsets": int(y.sum()), "prevalence": float(y.mean())}
                    row |= {"mean_risk": float(c.mean()), "intercept": intercept}
            out.append(row)
    return pd.DataFrame(out)


def tier_figures(risks: pd.DataFrame) -> dict[str, dict[str, float]]:
    """PrCRS (transfer)'s tiers for one factor set: `nested_tiers`, and the thresholds the
    rules choose on all its out-of-fold risks (what `train` stores in the manifest)."""
    mine = risks[risks["method"] == "prcrs_transfer"]
    repeats = onset_risks(mine)
    alert = thresholds.alert_threshold(repeats)
    watch = thresholds.watch_threshold(repeats, alert)
    return nested_tiers(mine) | {"all_rows": {"alert": alert, "watch": watch or float("nan")}}


def evaluate(
    model_dir: Path | str,
    seeds: list[int] | tuple[int, ...] = (0, 1, 2, 3, 4),
    quick: bool = False,
    *,
    cohort_path: Path | None = None,
    full_sets: tuple[str, ...] = ("all",),
    neural_seeds: int | None = 1,
    command: str = "prcrs-batch evaluate",
) -> Path:
    """Cross-validate PrCRS and baselines; write EVALUATION.md and plots into model_dir.

    The full comparison runs for `full_sets` on every CV repeat; the other factor sets get
    PrCRS (transfer), logistic regression, gradient boosting and (where its inputs exist)
    m-EASIX, on the first repeat only. Networks trained from scratch run on the first
    `neural_seeds` repeats only (None: all). The paper's target ("grade >= 3 on day t+h",
    all patient-days) is evaluated for `all` with PrCRS and logistic regression, first repeat.
    """
    started = time.perf_counter()
    model_dir = Path(model_dir)
    cfg = TrainConfig.quick() if quick else TrainConfig()
    device.set_torch_threads(cfg.threads)
    manifest, _ = store.read_manifest(model_dir)
    bodies = store.load_bodies(model_dir)
    frame = datasets.training_frame(cohort_path, previous=True)  # + temporal.py's inputs
    methods, options = all_methods(bodies, cfg)
    light = ["prcrs_transfer", "logistic", "boosting"]
    plan = {}
    trained_sets = {m["factor_set"] for m in manifest["models"]}
    for fs in FACTOR_SETS:
        if fs not in trained_sets:
            continue
        names = list(methods) if fs in full_sets else list(light)
        if not {"ldh", "crp", "platelet"} <= set(inputs_for(fs)):
            names = [n for n in names if n != "m_easix"]
        elif "m_easix" not in names:
            names.append("m_easix")
        plan[fs] = names
    with threadpool_limits(limits=cfg.threads):
        risks, calibrators = cross_validate(
            frame, methods, plan, list(seeds), cfg.n_folds, neural_seeds, tuple(full_sets)
        )
        paper = frame.assign(
            severe_today=False, **{f"label_{h}": frame[f"paper_label_{h}"] for h in HORIZONS}
        )
        paper_plan = {fs: ["prcrs_transfer", "logistic"] for fs in full_sets if fs in plan}
        paper_risks, paper_cal = cross_validate(
            paper, methods, paper_plan, list(seeds)[:1], cfg.n_folds
        )
    n_boot = 30 if quick else metrics.N_BOOT
    shipped = risks[(risks["factor_set"] == full_sets[0]) & (risks["method"] == "prcrs_transfer")]
    chosen_threshold = default_threshold(shipped)  # every figure "at the threshold" uses it
    summary = summarise(risks, calibrators, chosen_threshold, n_boot=n_boot)
    paper_summary = summarise(paper_risks, paper_cal, chosen_threshold, n_boot=n_boot)
    with threadpool_limits(limits=cfg.threads):
        targets = target_comparison(frame, methods, list(seeds)[0], cfg.n_folds)
    paired = comparisons.paired_differences(risks, summary, n_boot)
    if len(paired):
        keys = ["factor_set", "horizon", "method"]
        summary = summary.merge(paired.assign(method="prcrs_transfer"), on=keys, how="left")
    table = threshold_table(shipped)
    leads = {t: lead_times(shipped, t) for t in sorted({0.3, chosen_threshold})}
    tiers = {fs: tier_figures(risks[risks["factor_set"] == fs]) for fs in plan}
    patterns = comparisons.by_pattern(frame, risks, n_boot)
    plotted = risks["y"].notna() & ~risks["method"].isin(options)  # options: tables only
    plots = evaluation_report.write_plots(risks[plotted], model_dir)
    seconds = time.perf_counter() - started
    path = model_dir / "EVALUATION.md"
    evaluation_report.write_report(
        summary,
        plots,
        path,
        evaluation_report.HowEvaluated(
            command=command,
            seeds=list(seeds),
            n_folds=cfg.n_folds,
            seconds=seconds,
            manifest=manifest,
            quick=quick,
            cfg=cfg,
            neural_seeds=neural_seeds,
            full_sets=tuple(full_sets),
        ),
        evaluation_report.Extras(
            thresholds=table,
            chosen_threshold=chosen_threshold,
            min_sensitivity=thresholds.ALERT_CATCH,
            tiers=tiers,
            stored={m["factor_set"]: m.get("thresholds") or {} for m in manifest["models"]},
            patterns=patterns,
            targets=targets,
            lead_times=leads,
            paper_summary=paper_summary,
            monotone_raw=_raw_order_violations(shipped),
        ),
    )
    summary.to_csv(model_dir / "evaluation_summary.csv", index=False)
    logger.info("evaluation written to %s in %.0f s", path, seconds)
    return path


def _raw_order_violations(risks: pd.DataFrame) -> float:
    """Share of patient-days whose raw risks fall from one horizon to the next: what the
    cumulative adjustment corrects."""
    shares = []
    for _, s in risks.groupby("seed"):
        wide = s.pivot_table(index="row", columns="horizon", values="p").to_numpy()
        shares.append(float((np.diff(wide, axis=1) < 0).any(axis=1).mean()))
    return float(np.mean(shares)) if shares else float("nan")
