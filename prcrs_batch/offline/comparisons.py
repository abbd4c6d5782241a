"""Two models compared on the same rows, as a reviewer asks: the AUROC difference with a
paired patient-bootstrap interval (both scored on every resample's same patients), for
PrCRS against the best baseline, and for the model the night recommends against the others
on each pattern of observed lab groups.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prcrs_batch.offline.baselines import ABLATIONS
from prcrs_batch.task import metrics
from prcrs_batch.task.panel import ANALYTES, FACTOR_SETS, GROUP_NAMES, HORIZONS

MIN_PATTERN_ROWS = 20  # a pattern of observed groups is compared with at least this many rows
MIN_PATTERN_ONSETS = 5  # ... and this many onsets within the longest horizon
PATTERN_COLUMNS = [
    "pattern",
    "horizon",
    "model",
    "rows",
    "onsets",
    "auroc",
    "brier",
    "recommended",
    "vs_recommended",
    "low",
    "high",
]


def paired_auroc_difference(
    y: np.ndarray,
    patients: np.ndarray,
    pairs: list[tuple[np.ndarray, np.ndarray]],
    n_boot: int = metrics.N_BOOT,
    seed: int = 0,
) -> tuple[float, float, float]:
    """AUROC(a) - AUROC(b) on the same rows, averaged over CV repeats (`pairs` of risk
    arrays), and its 95 % patient-bootstrap interval: each resample draws whole patients
    with replacement (as row weights) and scores both methods on that same draw."""
    patient_ids, inverse = np.unique(patients, return_inverse=True)
    rng = np.random.default_rng(seed)
    n = len(patient_ids)
    weights = rng.multinomial(n, np.full(n, 1 / n), size=n_boot)[:, inverse]
    positives = weights[:, y == 1].sum(axis=1)
    weights = weights[(positives > 0) & (positives < weights.sum(axis=1))]
    draws = np.mean(
        [
            metrics.weighted_auroc(y, a, weights) - metrics.weighted_auroc(y, b, weights)
            for a, b in pairs
        ],
        axis=0,
    )
    gap = float(np.mean([metrics.auroc(y, a) - metrics.auroc(y, b) for a, b in pairs]))
    if not len(draws):
        return gap, float("nan"), float("nan")
    return gap, float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def paired_differences(
    risks: pd.DataFrame, summary: pd.DataFrame, n_boot: int = metrics.N_BOOT
) -> pd.DataFrame:
    """Per (factor set, horizon): PrCRS (transfer) minus the best baseline (by `summary`'s
    mean AUROC; ablations and candidates are not baselines), `paired_auroc_difference`
    over the CV repeats both ran. Two separate intervals overlapping does not answer
    whether a difference is real; this does."""
    out = []
    for (fs, h), sub in summary.groupby(["factor_set", "horizon"], sort=False):
        others = sub[~sub["method"].isin(("prcrs_transfer", *ABLATIONS))]
        if others.empty or "prcrs_transfer" not in set(sub["method"]):
            continue
        best = str(others.sort_values("auroc", ascending=False)["method"].iloc[0])
        mine = risks[(risks["factor_set"] == fs) & (risks["horizon"] == h) & risks["y"].notna()]
        pairs = [
            (a.sort_values("row"), b.sort_values("row"))
            for (_, a), (_, b) in zip(
                mine[mine["method"] == "prcrs_transfer"].groupby("seed"),
                mine[mine["method"] == best].groupby("seed"),
            )
        ]
        first = pairs[0][0]
        gap, low, high = paired_auroc_difference(
            first["y"].to_numpy(int),
            first["patient_id"].to_numpy(),
            [(a["c"].to_numpy(), b["c"].to_numpy()) for a, b in pairs],
            n_boot,
        )
        out.append(
            {"factor_set": fs, "horizon": h, "best_baseline": best, "difference": gap}
            | {"difference_low": low, "difference_high": high}
        )
    return pd.DataFrame(out)


def observed_groups(frame: pd.DataFrame) -> pd.Series:
    """Each patient-day's pattern of lab groups with at least one observed result, as the
    groups' numbers joined by "+" (panel.GROUP_NAMES), e.g. "1+2+3": no cytokines."""
    present = pd.DataFrame(
        {
            g: frame[[a.code for a in ANALYTES if a.group == g]].notna().any(axis=1)
            for g in GROUP_NAMES
        }
    )
    return present.apply(lambda r: "+".join(str(g) for g in GROUP_NAMES if r[g]), axis=1)


def by_pattern(
    frame: pd.DataFrame, risks: pd.DataFrame, n_boot: int = metrics.N_BOOT
) -> pd.DataFrame:
    """Which model serves each pattern of observed groups best, by evidence: on the
    patient-days of a pattern (first CV repeat, PrCRS transfer; patterns with at least
    `MIN_PATTERN_ROWS` rows and `MIN_PATTERN_ONSETS` onsets), each factor set's model that
    scores all of them, per horizon: AUROC, Brier, and the paired difference from the model
    the night recommends (the first in panel order: `all` wherever it scores)."""
    first = risks[(risks["method"] == "prcrs_transfer") & (risks["seed"] == risks["seed"].min())]
    pattern = dict(zip(zip(frame["patient_id"], frame["day"]), observed_groups(frame), strict=True))
    out = []
    eligible: set[str] | None = None
    for h in sorted(HORIZONS, reverse=True):  # patterns chosen on the longest horizon
        cells = first[(first["horizon"] == h) & first["y"].notna()]
        wide = cells.pivot_table(index=["patient_id", "day"], columns="factor_set", values="c")
        y = cells.groupby(["patient_id", "day"])["y"].first().reindex(wide.index)
        groups = pd.Series([pattern.get(k, "") for k in wide.index], index=wide.index)
        if eligible is None:
            counts = y.groupby(groups).agg(["size", "sum"])
            eligible = set(
                counts.index[
                    (counts["size"] >= MIN_PATTERN_ROWS) & (counts["sum"] >= MIN_PATTERN_ONSETS)
                ]
            )
        for name in sorted(eligible):
            rows = (groups == name).to_numpy()
            models = [fs for fs in FACTOR_SETS if fs in wide and wide.loc[rows, fs].notna().all()]
            if not rows.any() or not models:
                continue
            yp = y[rows].to_numpy(int)
            patients = np.array([k[0] for k in wide.index[rows]])
            reference = wide.loc[rows, models[0]].to_numpy(float)
            for fs in models:
                p = wide.loc[rows, fs].to_numpy(float)
                gap, low, high = paired_auroc_difference(yp, patients, [(p, reference)], n_boot)
                out.append(
                    {"pattern": name, "horizon": h, "model": fs, "rows": int(rows.sum())}
                    | {"onsets": int(yp.sum()), "auroc": metrics.auroc(yp, p)}
                    | {"brier": metrics.brier(p, yp), "recommended": models[0]}
                    | {"vs_recommended": gap, "low": low, "high": high}
                )
    if not out:
        return pd.DataFrame(columns=PATTERN_COLUMNS)
    return pd.DataFrame(out)[PATTERN_COLUMNS].sort_values(["pattern", "horizon"], kind="stable")


def pattern_name(pattern: str) -> str:
    """A pattern in words: the groups it lacks.

    >>> pattern_name("1+2+3"), pattern_name("1+2+3+4")
    ('no cytokines', 'every group')
    """
    present = {int(g) for g in pattern.split("+") if g}
    missing = [GROUP_NAMES[g] for g in GROUP_NAMES if g not in present]
    return "no " + " or ".join(missing) if missing else "every group"
