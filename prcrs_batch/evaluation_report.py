"""EVALUATION.md and its plots, rendered from evaluation.evaluate's summary: per factor set
and horizon a table of every method, a plain statement of whether PrCRS beats the best
baseline, the calibration comparison, and the plots.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

from prcrs_batch import calibration, metrics
from prcrs_batch.baselines import ABLATIONS, LABELS
from prcrs_batch.panel import HORIZONS
from prcrs_batch.training import TrainConfig


@dataclass(frozen=True)
class HowEvaluated:
    """What EVALUATION.md states about how its figures were produced."""

    command: str
    seeds: list[int]
    n_folds: int
    seconds: float
    manifest: dict[str, Any]
    quick: bool
    cfg: TrainConfig
    neural_seeds: int | None  # CV repeats the from-scratch networks ran on (None: all)
    full_sets: tuple[str, ...]  # factor sets with the full comparison


def write_plots(oof: pd.DataFrame, out_dir: Path, factor_set: str = "all") -> list[str]:
    """ROC, precision-recall and reliability plots per horizon (first CV repeat); file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    seed0 = oof["seed"].min()
    for h in HORIZONS:
        sub = oof[
            (oof["factor_set"] == factor_set) & (oof["horizon"] == h) & (oof["seed"] == seed0)
        ]
        if sub.empty:
            continue
        fig, axes = plt.subplots(1, 3, figsize=(16, 5))
        for method, g in sub.groupby("method", sort=False):
            y, p = g["y"].to_numpy(), g["p"].to_numpy()
            fpr, tpr, _ = roc_curve(y, p)
            axes[0].plot(fpr, tpr, label=f"{LABELS[method]} ({metrics.auroc(y, p):.2f})")
            prec, rec, _ = precision_recall_curve(y, p)
            axes[1].plot(rec, prec, label=f"{LABELS[method]} ({metrics.auprc(y, p):.2f})")
        axes[0].plot([0, 1], [0, 1], "k:", lw=0.8)
        axes[0].set(
            title=f"ROC, {factor_set}, {h} day(s) ahead",
            xlabel="1 - specificity",
            ylabel="sensitivity",
        )
        axes[1].set(title="Precision-recall", xlabel="recall", ylabel="precision")
        axes[0].legend(fontsize=7, loc="lower right")
        axes[1].legend(fontsize=7, loc="upper right")
        g = sub[sub["method"] == "prcrs_transfer"].sort_values("row")
        if not g.empty:
            y, p, f = g["y"].to_numpy(), g["p"].to_numpy(), g["fold"].to_numpy()
            curves = {"raw": p} | {
                m: calibration.cross_fitted(m, p, y, f) for m in calibration.METHODS
            }
            for name, q in curves.items():
                bins = np.minimum((q * 10).astype(int), 9)
                xs = [q[bins == b].mean() for b in range(10) if (bins == b).any()]
                ys = [y[bins == b].mean() for b in range(10) if (bins == b).any()]
                axes[2].plot(xs, ys, "o-", label=f"PrCRS {name} (ECE {metrics.ece(q, y):.3f})")
        axes[2].plot([0, 1], [0, 1], "k:", lw=0.8)
        axes[2].set(
            title="Reliability (PrCRS transfer, cross-fitted)",
            xlabel="predicted risk",
            ylabel="observed fraction severe",
        )
        axes[2].legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        name = f"evaluation_{factor_set}_h{h}.png"
        fig.savefig(out_dir / name, dpi=80)
        plt.close(fig)
        files.append(name)
    return files


def _fmt_ci(ci: tuple[float, float]) -> str:
    return f"{ci[0]:.2f}-{ci[1]:.2f}"


def _row(*cells: object) -> str:
    """One row of a Markdown table."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: list[str]) -> list[str]:
    return [_row(*header), "|" + "---|" * len(header)]


def _method_text(how: HowEvaluated) -> list[str]:
    """The heading and how the evaluation was done."""
    data = how.manifest["training_data"]
    quick_note = " (QUICK settings: not a real evaluation)" if how.quick else ""
    return [
        "# PrCRS evaluation (patient-grouped cross-validation)",
        "",
        f"Produced by `{how.command}` in {how.seconds / 60:.1f} min{quick_note}.",
        f"Models: `{how.manifest.get('code_version')}`, "
        f"trained with seed {how.manifest.get('seed')}; "
        f"cohort `{data['cart_file']}` "
        f"({data['patients']} patients, {data['patient_days']} patient-days).",
        "",
        f"- {how.n_folds}-fold CV grouped by patient (no patient in two folds), stratified on "
        "whether the patient ever has severe CRS, repeated with fold seeds "
        f"{how.seeds}; every method sees the same folds.",
        "- Features from `datasets.training_frame` (the nightly job's warehouse SQL + lab "
        "cleaning, 72 h lookback); labels: CRS grade >= 3 on day t+h; rows with day t+h "
        "unobserved dropped, and, per factor set, rows the nightly job would not score "
        "(fewer than 5 inputs observed) dropped.",
        "- AUROC/AUPRC: pooled out-of-fold predictions, mean over CV repeats; 95% CI from a "
        f"patient bootstrap ({metrics.N_BOOT} resamples of patients, averaged over repeats).",
        "- Brier/ECE (10 equal-width bins) raw and after calibration; calibrators are "
        "cross-fitted on out-of-fold predictions (fitted on the other folds' OOF "
        "predictions). Sensitivity/specificity at calibrated risk >= "
        f"{metrics.THRESHOLD}.",
        "- PrCRS transfer: bodies pre-trained on COVID-19 only (shipped "
        "`prcrs_pretrained.safetensors`), frozen; heads fine-tuned inside each training fold "
        'on the "skip" readout (mean and max pool of the body output + the encoded inputs '
        "and their mask; networks.py); ensemble of the shipped members. Ablations: the same "
        "with the published mean-pool readout, and the same head on the inputs alone (no "
        "body).",
        "- Normalisation (medians, log-scale, standardisation) per fold from the scorable "
        "rows of the fold's training patients, the same for every method, as the shipped "
        "models fit it on all patients.",
        "- The readout and ensemble size were chosen by CV on this cohort with fold seed 11 "
        "(`python scripts/readout_selection.py`), which is not among the seeds reported "
        "here; the same 152 patients still served both, so the withheld cohort is the "
        "honest test.",
        "- Networks trained from scratch (PrCRS with the same skip readout, CNN, "
        f"Transformer): Adam lr {how.cfg.lr}, batch {how.cfg.net_batch}, "
        f"up to {how.cfg.net_epochs} epochs, best epoch by loss on a patient-grouped inner "
        "validation split (patience "
        f"{how.cfg.net_patience}); one network per fold, on the first "
        f"{how.neural_seeds or len(how.seeds)} CV repeat(s).",
        f"- Factor sets other than {', '.join(how.full_sets)}: PrCRS (transfer), logistic "
        "regression, gradient boosting and m-EASIX (where LDH, CRP and platelets are "
        "inputs), first CV repeat only (run time).",
        "",
    ]


def _horizon_section(sub: pd.DataFrame, horizon: int) -> list[str]:
    """One horizon's table, best AUROC first, and how PrCRS (transfer) compares."""
    sub = sub.sort_values("auroc", ascending=False)
    first = sub.iloc[0]
    lines = [
        f"### {horizon} day(s) ahead: {first['n']} patient-days, {first['n_positive']} "
        f"severe, {first['n_patients']} patients",
        "",
        *_table(
            [
                "method",
                "AUROC (95% CI)",
                "AUPRC (95% CI)",
                "Brier raw",
                "Brier cal",
                "ECE raw",
                "ECE cal",
                "sens",
                "spec",
            ]
        ),
    ]
    for _, r in sub.iterrows():
        lines.append(
            _row(
                LABELS[r["method"]],
                f"{r['auroc']:.3f} ({_fmt_ci(r['auroc_ci'])})",
                f"{r['auprc']:.3f} ({_fmt_ci(r['auprc_ci'])})",
                f"{r['brier_raw']:.4f}",
                f"{r['brier_cal']:.4f}",
                f"{r['ece_raw']:.3f}",
                f"{r['ece_cal']:.3f}",
                f"{r['sensitivity']:.2f}",
                f"{r['specificity']:.2f}",
            )
        )
    lines.append("")
    pr = sub[sub["method"] == "prcrs_transfer"]
    others = sub[~sub["method"].isin(("prcrs_transfer", *ABLATIONS))]
    if not pr.empty and not others.empty:
        best = others.iloc[0]
        gap = float(pr["auroc"].iloc[0] - best["auroc"])
        verdict = "matches or beats" if gap >= 0 else "LOSES TO"
        lines.append(
            f"PrCRS (transfer) {verdict} the best baseline, {LABELS[best['method']]}: "
            f"AUROC {pr['auroc'].iloc[0]:.3f} vs {best['auroc']:.3f} ({gap:+.3f})."
        )
        for method in ABLATIONS:
            variant = sub[sub["method"] == method]
            if not variant.empty:
                gain = float(pr["auroc"].iloc[0] - variant["auroc"].iloc[0])
                lines.append(f"PrCRS (transfer) vs {LABELS[method]}: AUROC {gain:+.3f}.")
        lines.append("")
    return lines


def _calibration_section(cal: pd.DataFrame) -> list[str]:
    """PrCRS (transfer): raw vs the two cross-fitted calibrators, per model."""
    header = ["factor set", "horizon", "Brier raw", "Brier neighbour", "Brier isotonic"]
    header += ["ECE raw", "ECE neighbour", "ECE isotonic", "better"]
    lines = [
        "## Calibration of PrCRS (transfer): neighbour window vs isotonic (cross-fitted)",
        "",
        *_table(header),
    ]
    for _, r in cal.iterrows():
        lines.append(
            _row(
                r["factor_set"],
                r["horizon"],
                f"{r['brier_raw']:.4f}",
                f"{r['brier_neighbour']:.4f}",
                f"{r['brier_isotonic']:.4f}",
                f"{r['ece_raw']:.3f}",
                f"{r['ece_neighbour']:.3f}",
                f"{r['ece_isotonic']:.3f}",
                r["best_calibration"],
            )
        )
    return lines + [""]


def write_report(summary: pd.DataFrame, plots: list[str], path: Path, how: HowEvaluated) -> None:
    """EVALUATION.md: tables per horizon, calibration comparison, plain statement of losses.

    `summary` is evaluation.summarise's frame: one row per (factor_set, horizon, method).
    """
    lines = _method_text(how)
    for fs in summary["factor_set"].unique():
        lines += [f"## Factor set `{fs}`", ""]
        for h in HORIZONS:
            sub = summary[(summary["factor_set"] == fs) & (summary["horizon"] == h)]
            if not sub.empty:
                lines += _horizon_section(sub, h)
    cal = summary[summary["method"] == "prcrs_transfer"]
    if not cal.empty:
        lines += _calibration_section(cal)
    lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
