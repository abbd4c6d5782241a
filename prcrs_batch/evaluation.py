"""Offline evaluation: patient-grouped CV of PrCRS against baselines; writes EVALUATION.md.

Every method (baselines.py) sees exactly the same folds (cv.patient_folds: grouped by
patient, stratified on whether the patient ever has severe CRS), repeated over seeds, the
same features (datasets.training_frame, the nightly job's path), and the same normalisation
per fold (cv.FoldedRows.fold_stats), through the one out-of-fold loop (cv.out_of_fold) that
`train` uses for the shipped models' CV metrics. EVALUATION.md is rendered by
evaluation_report.py.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from prcrs_batch import artifacts, baselines, calibration, cv, datasets, evaluation_report, metrics
from prcrs_batch.cv import FitPredict
from prcrs_batch.panel import FACTOR_SETS, HORIZONS, inputs_for
from prcrs_batch.training import TrainConfig

logger = logging.getLogger(__name__)


def cross_validate(
    frame: pd.DataFrame,
    methods: dict[str, FitPredict],
    factor_sets: dict[str, list[str]],
    seeds: list[int],
    n_folds: int,
    neural_seeds: int | None = None,
    repeated_sets: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Out-of-fold predictions: one row per (seed, factor_set, horizon, method, patient-day).

    CV repeat `seed` folds the patients with fold seed `seed`, and fold k's models get seed
    `seed * 100 + k`. The networks trained from scratch (the costly ones) run on the first
    `neural_seeds` CV repeats only (all repeats when None); factor sets not in
    `repeated_sets` run on the first repeat only (all sets repeat when None).
    """
    out = []
    for i, seed in enumerate(seeds):
        folds = cv.patient_folds(frame, n_folds, seed)
        for factor_set, names in factor_sets.items():
            if repeated_sets is not None and factor_set not in repeated_sets and i > 0:
                continue
            for horizon in HORIZONS:
                data = cv.FoldedRows.select(frame, folds, factor_set, horizon)
                for name in names:
                    if (
                        name in baselines.FROM_SCRATCH
                        and neural_seeds is not None
                        and i >= neural_seeds
                    ):
                        continue
                    started = time.perf_counter()
                    oof = cv.out_of_fold(data, methods[name], seed * 100)
                    out.append(
                        pd.DataFrame(
                            {
                                "seed": seed,
                                "factor_set": factor_set,
                                "horizon": horizon,
                                "method": name,
                                "row": np.arange(len(data.rows)),
                                "patient_id": data.patients,
                                "y": data.y,
                                "p": oof,
                                "fold": data.folds,
                            }
                        )
                    )
                    logger.info(
                        "seed %d %s h%d %s: %.1f s",
                        seed,
                        factor_set,
                        horizon,
                        name,
                        time.perf_counter() - started,
                    )
    return pd.concat(out, ignore_index=True)


def summarise(oof: pd.DataFrame, n_boot: int = metrics.N_BOOT) -> pd.DataFrame:
    """Metrics per (factor_set, horizon, method), averaged over CV repeats, with bootstrap CIs."""
    rows = []
    for (fs, h, method), g in oof.groupby(["factor_set", "horizon", "method"], sort=False):
        per_seed, preds, cal_preds = [], [], []
        first = g[g["seed"] == g["seed"].iloc[0]].sort_values("row")
        for _, s in g.groupby("seed"):
            s = s.sort_values("row")
            y, p, f = s["y"].to_numpy(), s["p"].to_numpy(), s["fold"].to_numpy()
            comp = calibration.compare(p, y, f)
            best = calibration.choose(comp)
            cal = calibration.cross_fitted(best, p, y, f)
            m = metrics.binary_metrics(y, p)
            mc = metrics.binary_metrics(y, cal)
            per_seed.append(
                {
                    "auroc": m["auroc"],
                    "auprc": m["auprc"],
                    "brier_raw": m["brier"],
                    "ece_raw": m["ece"],
                    "brier_cal": mc["brier"],
                    "ece_cal": mc["ece"],
                    "ece_isotonic": comp["isotonic"]["ece"],
                    "ece_neighbour": comp["neighbour_window"]["ece"],
                    "brier_isotonic": comp["isotonic"]["brier"],
                    "brier_neighbour": comp["neighbour_window"]["brier"],
                    "sensitivity": mc["sensitivity"],
                    "specificity": mc["specificity"],
                    "best_calibration": best,
                }
            )
            preds.append(p)
            cal_preds.append(cal)
        ci = metrics.bootstrap_ci(
            first["y"].to_numpy(), preds, first["patient_id"].to_numpy(), n_boot=n_boot
        )
        df = pd.DataFrame(per_seed)
        row = {"factor_set": fs, "horizon": h, "method": method}
        row.update(df.drop(columns="best_calibration").mean().to_dict())
        row["auroc_sd_over_seeds"] = float(df["auroc"].std(ddof=0))
        row["best_calibration"] = df["best_calibration"].mode().iloc[0]
        row["auroc_ci"], row["auprc_ci"] = ci["auroc"], ci["auprc"]
        row["n"], row["n_positive"] = len(first), int(first["y"].sum())
        row["n_patients"] = int(first["patient_id"].nunique())
        rows.append(row)
    return pd.DataFrame(rows)


def evaluate(
    model_dir: Path | str,
    seeds: list[int] | tuple[int, ...] = (0, 1),
    quick: bool = False,
    *,
    cohort_path: Path | None = None,
    full_sets: tuple[str, ...] = ("all",),
    neural_seeds: int | None = 1,
    command: str = "prcrs-batch evaluate",
) -> Path:
    """Cross-validate PrCRS and baselines; write EVALUATION.md and plots into model_dir.

    The full comparison runs for `full_sets`; the other factor sets get PrCRS (transfer),
    logistic regression, gradient boosting and (where its inputs exist) m-EASIX, on the first
    CV repeat only. Networks trained from scratch run on the first `neural_seeds` CV repeats
    only (None: all).
    """
    started = time.perf_counter()
    model_dir = Path(model_dir)
    cfg = TrainConfig.quick() if quick else TrainConfig()
    artifacts.set_torch_threads(cfg.threads)
    manifest, _ = artifacts.read_manifest(model_dir)
    bodies = artifacts.load_bodies(model_dir)
    frame = datasets.training_frame(cohort_path)
    methods = baselines.methods(bodies, cfg)
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
        oof = cross_validate(
            frame, methods, plan, list(seeds), cfg.n_folds, neural_seeds, tuple(full_sets)
        )
    summary = summarise(oof, n_boot=30 if quick else metrics.N_BOOT)
    plots = evaluation_report.write_plots(oof, model_dir)
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
    )
    summary.to_csv(model_dir / "evaluation_summary.csv", index=False)
    logger.info("evaluation written to %s in %.0f s", path, seconds)
    return path
