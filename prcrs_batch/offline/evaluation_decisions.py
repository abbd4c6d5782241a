"""The sections of EVALUATION.md that state a decision and the evidence for it: which target
is learnt, which thresholds alert and watch, which model serves which labs. Each rule is
written out with the figures it was applied to.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from prcrs_batch.offline import comparisons
from prcrs_batch.task import thresholds
from prcrs_batch.task.panel import HORIZONS
from prcrs_batch.task.target import TARGET, TARGET_RULES

TARGET_MARGIN = 0.01  # AUROC by which the censored target must win at every horizon

ASSUMES = {
    "kept_by_outcome": "rows kept or dropped by their outcome (reference only: not eligible)",
    "unassessed_not_severe": "no severe CRS goes ungraded: a day without a grade, after a "
    "record's end too, is not severe",
    "censored_at_record_end": "nothing after a record's end: windows running past it are "
    "dropped, onsets on a record's last days with them",
}


def target_section(targets: pd.DataFrame) -> list[str]:
    """The candidate targets compared, the rule fixed before the run, and its verdict."""
    lines = [
        "## The target",
        "",
        "Candidates (prcrs_batch/task/target.py), each learnt and judged in its own right "
        "(`all`, first CV repeat, risks calibrated and cumulative as shipped). AUROCs on "
        "different rows and labels are not a contest between models; they say how learnable "
        "each target is.",
        "",
        *table(
            [
                "rule",
                "horizon",
                "patient-days",
                "onsets",
                "prevalence",
                "AUROC PrCRS",
                "AUROC logistic",
                "mean risk",
                "cal. intercept",
            ]
        ),
    ]
    for _, r in targets.iterrows():
        lines.append(
            row(
                f"`{r['rule']}`",
                r["horizon"],
                r["rows"],
                r["onsets"],
                f"{r['prevalence']:.3f}",
                f"{r['auroc_prcrs_transfer']:.3f}",
                f"{r.get('auroc_logistic', float('nan')):.3f}",
                f"{r['mean_risk']:.3f}",
                f"{r['intercept']:+.2f}",
            )
        )
    lines += ["", "What each assumes about a record's end:", ""]
    lines += [f"- `{rule}`: {ASSUMES[rule]}." for rule in TARGET_RULES]
    verdict = choose_target(targets)
    lines += [
        "",
        "The rule, fixed before the run (issue 23): a target may not keep or drop a row by its "
        "outcome, so `kept_by_outcome` is out. `unassessed_not_severe` keeps every row and "
        "every onset; `censored_at_record_end` is chosen instead only if its PrCRS AUROC is "
        f"higher by at least {TARGET_MARGIN} at every horizon. "
        f"On these figures the rule chooses **`{verdict}`**; the code learns "
        f"**`{TARGET}`** (task.target.TARGET)"
        + ("." if verdict == TARGET else ": NOT the rule's choice - retrain after switching."),
        "",
    ]
    return lines


def choose_target(targets: pd.DataFrame) -> str:
    """The rule in `target_section`, applied to `evaluation.target_comparison`'s figures."""
    auroc = targets.set_index(["rule", "horizon"])["auroc_prcrs_transfer"]
    gains = [
        auroc[("censored_at_record_end", h)] - auroc[("unassessed_not_severe", h)] for h in HORIZONS
    ]
    return (
        "censored_at_record_end"
        if all(g >= TARGET_MARGIN for g in gains)
        else "unassessed_not_severe"
    )


def row(*cells: object) -> str:
    """One row of a Markdown table."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(header: list[str]) -> list[str]:
    """A Markdown table's header and rule."""
    return [row(*header), "|" + "---|" * len(header)]


def patterns_section(patterns: pd.DataFrame) -> list[str]:
    """Which model for which labs: the recommended model against the others, by pattern."""
    lines = [
        "## Which model for which labs",
        "",
        "The night recommends the first model in panel order that can score a patient, so "
        "`all` (missing inputs imputed) wherever it scores. On the patient-days of each "
        "pattern of observed lab groups (at least "
        f"{comparisons.MIN_PATTERN_ROWS} days and {comparisons.MIN_PATTERN_ONSETS} onsets "
        "within 3 days), every model that scores them all: PrCRS transfer, first CV repeat; "
        "the difference from the recommended model with a paired patient-bootstrap 95 % CI.",
        "",
        *table(["labs", "horizon", "model", "days", "onsets", "AUROC", "Brier", "vs recommended"]),
    ]
    for _, r in patterns.iterrows():
        vs = (
            "recommended"
            if r["model"] == r["recommended"]
            else f"{r['vs_recommended']:+.3f} ({r['low']:+.3f} to {r['high']:+.3f})"
        )
        lines.append(
            row(
                comparisons.pattern_name(r["pattern"]),
                r["horizon"],
                f"`{r['model']}`",
                r["rows"],
                r["onsets"],
                f"{r['auroc']:.3f}",
                f"{r['brier']:.4f}",
                vs,
            )
        )
    better = patterns[(patterns["model"] != patterns["recommended"]) & (patterns["low"] > 0)]
    lines.append("")
    if better.empty:
        lines.append(
            "No other model ranks better than the recommended one on any pattern (no paired "
            "interval above 0): the recommendation stands on this evidence."
        )
    else:
        for _, r in better.iterrows():
            lines.append(
                f"On days with {comparisons.pattern_name(r['pattern'])}, `{r['model']}` ranks "
                f"better than the recommended `{r['recommended']}` at {r['horizon']} d "
                f"({r['vs_recommended']:+.3f}, paired CI above 0)."
            )
    return [*lines, ""]


def _optional(value: object) -> float:
    return float("nan") if value is None else float(value)  # type: ignore[arg-type]


def _threshold_text(value: float) -> str:
    return "none" if np.isnan(value) else f"{value:.2f}"


def tiers_section(
    tiers: dict[str, dict[str, dict[str, float]]], stored: dict[str, dict[str, Any]]
) -> list[str]:
    """The alert and watch tiers per model, judged on folds their thresholds were not
    chosen on (evaluation.nested_tiers)."""
    lines = [
        "## Alert and watch tiers, thresholds chosen out of sample",
        "",
        "Nested: in each CV repeat, each outer fold is flagged at the thresholds the rules "
        "(prcrs_batch/task/thresholds.py: the alert's highest threshold flagging "
        f"{thresholds.ALERT_CATCH:.0%} of onsets on the night before; the watch tier's highest "
        f"below it warning {thresholds.WATCH_CATCH:.0%} on one of the 3 nights before) chose on "
        "the other folds' out-of-fold risks; outer folds pooled, mean over repeats. The inner "
        "risks come from models that saw the outer fold's patients in training, but no outer "
        'label enters a threshold\'s choice. "Thresholds" is the range the folds chose; "all '
        'rows" what the rules choose on all these repeats\' rows; "manifest" what `train` '
        "chose on its own out-of-fold risks (one CV repeat) and stored for the night. PrCRS "
        "(transfer).",
        "",
        *table(
            [
                "model",
                "tier",
                "thresholds",
                "all rows",
                "manifest",
                "onsets",
                "warned ≥ 1 day ahead",
                "flagged night before",
                "median lead (warned)",
                "flagged / 100 patient-days",
                "PPV (onset ≤ 3 d)",
            ]
        ),
    ]
    for fs, figures in tiers.items():
        for tier, label, key in (
            ("alert", "alert", "alert"),
            ("alert_or_watch", "alert or watch", "watch"),
        ):
            f = figures[tier]
            lines.append(
                row(
                    f"`{fs}`",
                    label,
                    f"{f['threshold_low']:.2f}-{f['threshold_high']:.2f}",
                    _threshold_text(figures["all_rows"][key]),
                    _threshold_text(_optional(stored.get(fs, {}).get(key))),
                    f"{f['onsets']:.0f}",
                    f"{f['warned']:.2f}",
                    f"{f['flagged_night_before']:.2f}",
                    f"{f['median_lead_days']:.1f} d",
                    f"{f['flagged_per_100']:.1f}",
                    f"{f['ppv']:.2f}",
                )
            )
    return [*lines, ""]
