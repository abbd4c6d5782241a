"""Input drift: tonight's lab values against the training data's, per analyte.

At training time `reference` stores, per analyte, the share of training patient-days with a
value, the deciles of the observed values (model units) and the training share in each of
the bins they bound (not 10 % each where values tie, e.g. at a detection limit), in the
manifest (`training_data.input_reference`). Each night `drift` compares tonight's latest
values (matrix.lab_matrix) with it by the population stability index over those bins,

    PSI = sum over bins (tonight - training) * ln(tonight / training)  (shares, floored at 1e-4)

PSI is the usual credit-scoring and clinical-model monitoring figure; by its conventional
reading under 0.1 is stable, 0.1-0.25 a moderate shift, and over `PSI_LIMIT` = 0.25 a major
one: a unit change at the source (values 10x off) moves nearly every value out of its bin
and gives a PSI far above it. An analyte with fewer than `MIN_VALUES` values tonight gets
no PSI (too few to say).
"""

from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd

from prcrs_batch.task.panel import ANALYTE_CODES

PSI_LIMIT = 0.25
MIN_VALUES = 20
FLOOR = 1e-4
COLUMNS = [
    "analyte",
    "n",
    "share_observed",
    "train_share_observed",
    "psi",
    "median",
    "train_median",
    "drifting",
]


def reference(frame: pd.DataFrame) -> dict[str, dict[str, object]]:
    """Per analyte: the share of rows observed, the decile edges and median of the observed
    values (model units) - what the manifest keeps to compare nights with."""
    out: dict[str, dict[str, object]] = {}
    for code in ANALYTE_CODES:
        values = frame[code].dropna().to_numpy(float) if code in frame else np.array([])
        deciles = np.quantile(values, np.linspace(0.1, 0.9, 9)) if len(values) else []
        edges = [float(x) for x in deciles]
        out[code] = {
            "share_observed": round(float(len(values) / max(len(frame), 1)), 6),
            "edges": edges,
            "shares": [round(float(x), 6) for x in _shares(values, edges)] if edges else [],
            "median": float(np.median(values)) if len(values) else None,
        }
    return out


def _shares(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """The share of `values` in each of the len(edges) + 1 bins the edges bound."""
    bins = np.searchsorted(np.asarray(edges), values, side="right")
    return np.bincount(bins, minlength=len(edges) + 1) / max(len(values), 1)


def psi(values: np.ndarray, edges: list[float], expected: list[float]) -> float:
    """PSI of `values` against the training shares `expected` of the bins `edges` bound.

    >>> rng = np.random.default_rng(0); train = rng.lognormal(3, 1, 5000)
    >>> ref = reference(pd.DataFrame({"il6": train}))["il6"]
    >>> psi(rng.lognormal(3, 1, 500), ref["edges"], ref["shares"]) < 0.1
    True
    >>> psi(10 * rng.lognormal(3, 1, 500), ref["edges"], ref["shares"]) > 1
    True
    """
    tonight = np.maximum(_shares(values, edges), FLOOR)
    training = np.maximum(np.asarray(expected, float), FLOOR)
    return float(np.sum((tonight - training) * np.log(tonight / training)))


def drift(features: pd.DataFrame, ref: dict[str, dict[str, object]]) -> pd.DataFrame:
    """One row (COLUMNS) per analyte of tonight's features (patients x 42 analytes)."""
    rows = []
    for code in ANALYTE_CODES:
        values = features[code].dropna().to_numpy(float) if code in features else np.array([])
        train = ref.get(code, {})
        edges = cast("list[float]", train.get("edges") or [])
        shares = cast("list[float]", train.get("shares") or [])
        score = psi(values, edges, shares) if len(values) >= MIN_VALUES and shares else None
        rows.append(
            {
                "analyte": code,
                "n": int(len(values)),
                "share_observed": float(len(values) / len(features)) if len(features) else None,
                "train_share_observed": train.get("share_observed"),
                "psi": score,
                "median": float(np.median(values)) if len(values) else None,
                "train_median": train.get("median"),
                "drifting": bool(score is not None and score > PSI_LIMIT),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)
