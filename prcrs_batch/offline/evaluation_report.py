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

from prcrs_batch.modeling import calibration
from prcrs_batch.offline import evaluation_decisions, model_choices
from prcrs_batch.offline.baselines import ABLATIONS, LABELS
from prcrs_batch.offline.evaluation_decisions import row as _row
from prcrs_batch.offline.evaluation_decisions import table as _table
from prcrs_batch.offline.training import TrainConfig
from prcrs_batch.task import metrics
from prcrs_batch.task.panel import HORIZONS
from prcrs_batch.task.target import TARGET, TARGET_RULES


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


def _first_sentence(doc: str | None) -> str:
    text = " ".join((doc or "").split())
    return text.split(". ")[0].rstrip(".") + "."


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
        f"- Target (task.target, rule `{TARGET}`, chosen in 'The target' below): among "
        "patient-days not yet severe (latest CRS grade < 3), onset of grade >= 3 within h "
        f"days (any of days t+1..t+h); {_first_sentence(TARGET_RULES[TARGET].__doc__)} "
        "Patient-days already severe are not rows. Features "
        "from `datasets.training_frame` (the nightly job's warehouse SQL + lab cleaning, "
        "72 h lookback); per factor set, rows the nightly job would not score (fewer than 5 "
        "inputs observed) dropped.",
        "- Every method's risks are treated as the shipped ones: per horizon a calibrator "
        "chosen by the fixed rule and cross-fitted on out-of-fold predictions (fitted on the "
        "other folds), then made cumulative over the horizons (running maximum). AUROC, "
        "AUPRC, Brier, ECE, calibration intercept/slope (0 and 1 when calibrated), "
        "sensitivity, PPV and alerts per 100 patient-days (at the default alert threshold "
        "chosen by the rule in 'Alert threshold' below) are of that risk; `AUROC raw` is of "
        "the uncalibrated probability.",
        "- AUROC/AUPRC: pooled out-of-fold predictions, mean over CV repeats; 95% CI from a "
        f"patient bootstrap ({metrics.N_BOOT} resamples of patients, averaged over repeats).",
        "- PrCRS transfer: bodies pre-trained on COVID-19 only (shipped "
        "`prcrs_pretrained.safetensors`), frozen; heads fine-tuned inside each training fold "
        'on the "skip" readout (mean and max pool of the body output + the encoded inputs '
        "and their mask; networks.py); ensemble of the shipped members. Ablations: the same "
        "with the published mean-pool readout, and the same head on the inputs alone (no "
        "body).",
        "- Normalisation (medians, log-scale, standardisation) per fold from the scorable "
        "rows of the fold's training patients, the same for every method, as the shipped "
        "models fit it on all patients.",
        "- The readout and ensemble size were first chosen by CV with fold seed 11 (`python "
        "scripts/readout_selection.py`); 'Model choices' below re-checks them on these "
        "repeats by a rule fixed beforehand. The same 152 patients serve every choice, so "
        "the withheld cohort is the honest test.",
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
        f"### Onset within {horizon} day(s): {first['n']} patient-days, "
        f"{first['n_positive']} onsets, {first['n_patients']} patients",
        "",
        *_table(
            [
                "method",
                "AUROC (95% CI)",
                "AUROC raw",
                "AUPRC (95% CI)",
                "Brier",
                "ECE",
                "cal. intercept",
                "cal. slope",
                "sens",
                "PPV",
                "alerts /100 days",
                "calibrator",
            ]
        ),
    ]
    for _, r in sub.iterrows():
        lines.append(
            _row(
                LABELS[r["method"]],
                f"{r['auroc']:.3f} ({_fmt_ci(r['auroc_ci'])})",
                f"{r['auroc_raw']:.3f}",
                f"{r['auprc']:.3f} ({_fmt_ci(r['auprc_ci'])})",
                f"{r['brier']:.4f}",
                f"{r['ece']:.3f}",
                f"{r['calibration_intercept']:+.2f}",
                f"{r['calibration_slope']:.2f}",
                f"{r['sensitivity']:.2f}",
                f"{r['ppv']:.2f}",
                f"{r['alerts_per_100']:.1f}",
                r["best_calibration"],
            )
        )
    lines.append("")
    pr = sub[sub["method"] == "prcrs_transfer"]
    others = sub[~sub["method"].isin(("prcrs_transfer", *ABLATIONS))]
    if not pr.empty and not others.empty:
        best = others.iloc[0]
        gap = float(pr["auroc"].iloc[0] - best["auroc"])
        verdict = "matches or beats" if gap >= 0 else "LOSES TO"
        paired = ""
        if "difference_low" in pr and pd.notna(pr["difference_low"].iloc[0]):
            low, high = pr["difference_low"].iloc[0], pr["difference_high"].iloc[0]
            inside = "includes 0" if low <= 0 <= high else "excludes 0"
            paired = (
                f"; paired patient-bootstrap 95 % CI of the difference {low:+.3f} to "
                f"{high:+.3f} ({inside})"
            )
        lines.append(
            f"PrCRS (transfer) {verdict} the best baseline, {LABELS[best['method']]}: "
            f"AUROC {pr['auroc'].iloc[0]:.3f} vs {best['auroc']:.3f} ({gap:+.3f}){paired}."
        )
        for method in ABLATIONS:
            variant = sub[sub["method"] == method]
            if not variant.empty:
                gain = float(pr["auroc"].iloc[0] - variant["auroc"].iloc[0])
                lines.append(f"PrCRS (transfer) vs {LABELS[method]}: AUROC {gain:+.3f}.")
        lines.append("")
    return lines


def _calibration_section(cal: pd.DataFrame) -> list[str]:
    """PrCRS (transfer): raw vs each cross-fitted calibrator, and the one the rule chose."""
    methods = ["raw", *calibration.METHODS]
    header = ["factor set", "horizon", *[f"Brier {m}" for m in methods]]
    header += [*[f"ECE {m}" for m in methods], "chosen", "Brier, ECE chosen out of fold"]
    lines = [
        "## Calibration of PrCRS (transfer), cross-fitted",
        "",
        "Chosen per model by the rule fixed beforehand (calibration.choose): the lowest "
        "cross-fitted Brier score among none, Platt, beta and interpolated isotonic, then "
        "ECE. The paper's neighbour window is shown for comparison; it is not monotone and "
        "is never shipped. Last column: the rule judged on folds it did not choose on (each "
        "fold's rows take the calibrator the rule picks on the other folds alone); it should "
        "not be worse than the chosen calibrator's own figures.",
        "",
        *_table(header),
    ]
    for _, r in cal.iterrows():
        lines.append(
            _row(
                r["factor_set"],
                r["horizon"],
                *[f"{r[f'cal_brier_{m}']:.4f}" for m in methods],
                *[f"{r[f'cal_ece_{m}']:.3f}" for m in methods],
                r["best_calibration"],
                _nested_text(r),
            )
        )
    return lines + [""]


def _nested_text(r: pd.Series) -> str:
    if pd.isna(r.get("cal_brier_nested")):
        return "-"
    return f"{r['cal_brier_nested']:.4f}, {r['cal_ece_nested']:.3f}"


def _candidate_section(summary: pd.DataFrame) -> list[str]:
    """Whether the PrCRS + logistic regression average meets the rule fixed before looking:
    it ships only if its AUROC beats both PrCRS transfer and logistic regression at every
    horizon for `all` (mean over CV repeats)."""
    all_set = summary[summary["factor_set"] == "all"].set_index(["method", "horizon"])["auroc"]
    if "prcrs_logistic" not in all_set.index.get_level_values("method"):
        return []
    gains = [
        (
            h,
            all_set[("prcrs_logistic", h)] - all_set[("prcrs_transfer", h)],
            all_set[("prcrs_logistic", h)] - all_set[("logistic", h)],
        )
        for h in sorted(set(all_set.index.get_level_values("horizon")))
    ]
    met = all(a > 0 and b > 0 for _, a, b in gains)
    detail = "; ".join(f"{h} d: {a:+.3f} vs PrCRS, {b:+.3f} vs logistic" for h, a, b in gains)
    verdict = "meets it" if met else "does NOT meet it, so PrCRS transfer alone ships"
    return [
        "## Candidate: PrCRS and logistic regression averaged",
        "",
        "Rule fixed before the comparison: the average ships only if its AUROC beats both "
        "PrCRS (transfer) and logistic regression at every horizon for `all`. It "
        f"{verdict} ({detail}).",
        "",
    ]


@dataclass(frozen=True)
class Extras:
    """The sections after the per-model tables."""

    thresholds: pd.DataFrame  # evaluation.threshold_table of the shipped `all` model
    chosen_threshold: float  # evaluation.default_threshold
    min_sensitivity: float  # the rule behind it: the alert's catch of 1-day onsets
    lead_times: dict[float, dict[str, float]]  # threshold -> evaluation.lead_times
    tiers: dict[str, dict[str, dict[str, float]]]  # factor set -> evaluation.tier_figures
    patterns: pd.DataFrame  # comparisons.by_pattern
    targets: pd.DataFrame  # evaluation.target_comparison
    stored: dict[str, dict[str, Any]]  # factor set -> the thresholds manifest.json holds
    paper_summary: pd.DataFrame  # evaluation.summarise on the paper's target
    monotone_raw: float  # share of patient-days whose raw risks fall with the horizon


def _extras_section(extras: Extras) -> list[str]:
    header = ["threshold"]
    header += [f"{k} {h} d" for h in HORIZONS for k in ("sens", "PPV", "alerts/100")]
    lines = [
        "## Alert threshold (PrCRS transfer, `all`)",
        "",
        "Per horizon, at each threshold on the calibrated cumulative risk: sensitivity, PPV, "
        "and alerts per 100 scored patient-days; last column: the share of the onsets within "
        "1 day that the alert (any horizon at or above the threshold) flags. Mean over CV "
        "repeats.",
        "",
        *_table([*header, "alert catches 1-day onsets"]),
    ]
    for _, r in extras.thresholds.iterrows():
        cells = [f"{r['threshold']:.2f}"]
        for h in HORIZONS:
            cells += [f"{r[f'sensitivity_{h}']:.2f}", f"{r[f'ppv_{h}']:.2f}"]
            cells.append(f"{r[f'alerts_per_100_{h}']:.1f}")
        lines.append(_row(*cells, f"{r['alert_sensitivity_1']:.2f}"))
    lines += [
        "",
        "Rule for the default `PRCRS_ALERT_THRESHOLD`, fixed before looking: the highest "
        f"threshold (0.01 steps) at which the alert still flags at least "
        f"{extras.min_sensitivity:.0%} of the onsets within 1 day. It gives "
        f"**{extras.chosen_threshold:.2f}** on these rows; chosen and judged on the same rows, "
        "it flatters the figures at it: the next section judges it out of sample.",
        "",
        "### Lead time",
        "",
        "For each onset of severe CRS after a scored day (the 1-day label of the day before), "
        "how many days before it the patient was first flagged (3-day risk at or above the "
        "threshold) in the 3 days before; mean over CV repeats.",
        "",
        *_table(
            ["threshold", "onsets", "warned ≥ 1 day ahead", "median lead (warned)", "mean lead"]
        ),
    ]
    for thr, lead in extras.lead_times.items():
        lines.append(
            _row(
                f"{thr:.2f}",
                f"{lead.get('onsets', float('nan')):.0f}",
                f"{lead.get('warned', float('nan')):.2f}",
                f"{lead.get('median_lead_days', float('nan')):.1f} d",
                f"{lead.get('mean_lead_days', float('nan')):.2f} d",
            )
        )
    lines += [
        "",
        "### Cumulative risks",
        "",
        f"The raw probabilities fall from one horizon to the next on {extras.monotone_raw:.1%} "
        "of patient-days; the shipped risks are the running maximum over the horizons of the "
        "calibrated ones (calibration.cumulative), and every figure above is of those.",
        "",
        *evaluation_decisions.target_section(extras.targets),
        *evaluation_decisions.tiers_section(extras.tiers, extras.stored),
        *evaluation_decisions.patterns_section(extras.patterns),
        "## The paper's target, for comparison",
        "",
        "Grade >= 3 on day t+h, over all patient-days (patients already severe included), "
        "as the paper defined it; first CV repeat. Not comparable with the tables above.",
        "",
        *_table(["method", "horizon", "AUROC", "AUPRC", "Brier", "ECE"]),
    ]
    for _, r in extras.paper_summary.iterrows():
        lines.append(
            _row(
                LABELS[r["method"]],
                r["horizon"],
                f"{r['auroc']:.3f}",
                f"{r['auprc']:.3f}",
                f"{r['brier']:.4f}",
                f"{r['ece']:.3f}",
            )
        )
    return lines + [""]


def write_report(
    summary: pd.DataFrame,
    plots: list[str],
    path: Path,
    how: HowEvaluated,
    extras: Extras | None = None,
) -> None:
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
    lines += _candidate_section(summary)
    pretrained = how.manifest.get("pretraining", {}).get("members")
    lines += model_choices.section(summary, len(pretrained) if pretrained else how.cfg.n_members)
    cal = summary[summary["method"] == "prcrs_transfer"]
    if not cal.empty:
        lines += _calibration_section(cal)
    if extras is not None:
        lines += _extras_section(extras)
    lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
