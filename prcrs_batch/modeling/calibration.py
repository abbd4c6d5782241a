"""Calibration: raw model probability -> calibrated risk, from parameters saved as JSON.

A shipped calibrator must keep the model's order and be continuous (METHOD.md, point 7):
non-decreasing in the raw probability, no jumps from a difference in the seventh decimal
(CPU and GPU agree), no plateaus that tie patients the model separates. The candidates,
each fitted offline on out-of-fold predictions only:

- ``none``: the raw ensemble probability as it is;
- ``platt``: logistic regression on logit(p) (Platt 1999), slope kept positive;
- ``beta``: beta calibration (Kull et al. 2017), sigmoid(c + a ln p - b ln(1 - p)) with
  a, b >= 0, which keeps it non-decreasing;
- ``isotonic``: isotonic regression, interpolated linearly between the centres of its
  blocks (continuous and increasing between the first and the last centre).

The rule, fixed before any comparison: the candidate with the lowest cross-fitted Brier
score, then the lowest ECE; ties go to the earlier one in `SHIPPABLE` (the simpler).

``neighbour_window``, the PrCRS paper's "actual probability" (for a probability p, the
fraction of severe cases among ~10-20 held-out neighbours in score space), is kept for
the comparison with the published method only: it is neither monotone nor continuous.

Only `fit_*` touch sklearn; `apply_calibration` needs numpy and the saved dict.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from prcrs_batch.task.metrics import brier, ece

logger = logging.getLogger(__name__)

SHIPPABLE = ("none", "platt", "beta", "isotonic")
METHODS = (*SHIPPABLE, "neighbour_window")
EPS = 1e-6  # probabilities are clipped to [EPS, 1 - EPS] before a logit or a log
# (lower bound of p, half-window) from the top down, as in the paper
WINDOWS: tuple[tuple[float, int], ...] = ((0.8, 10), (0.3, 15), (0.0, 20))


def _clip(p: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)


def _logistic_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Unpenalised logistic regression of y on the columns of x: (intercept, coefficients)."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:  # one class only: a constant at its rate
        rate = float(np.clip(np.mean(y), EPS, 1 - EPS))
        return float(np.log(rate / (1 - rate))), np.zeros(x.shape[1])
    model = LogisticRegression(C=1e6, max_iter=1000).fit(x, y)
    return float(model.intercept_[0]), model.coef_[0].astype(float)


def fit_platt(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Platt scaling on logit(p); a non-positive slope (no signal) falls back to a constant.

    >>> params = fit_platt(np.array([0.1, 0.2, 0.3, 0.8, 0.7, 0.9]), np.array([0, 0, 1, 0, 1, 1]))
    >>> params["a"] > 0
    True
    """
    p = _clip(probabilities)
    intercept, (slope,) = _logistic_fit(np.log(p / (1 - p))[:, None], np.asarray(labels, int))
    if slope <= 0:
        rate = float(np.clip(np.mean(labels), EPS, 1 - EPS))
        intercept, slope = float(np.log(rate / (1 - rate))), 0.0
    return {"method": "platt", "a": float(slope), "c": float(intercept)}


def fit_beta(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Beta calibration with a, b >= 0: a negative coefficient is dropped and the fit redone."""
    p, y = _clip(probabilities), np.asarray(labels, int)
    columns = {"a": np.log(p), "b": -np.log(1 - p)}
    keep = ["a", "b"]
    while True:
        intercept, coef = _logistic_fit(np.column_stack([columns[k] for k in keep]), y)
        negative = [k for k, v in zip(keep, coef, strict=True) if v < 0]
        if not negative:
            break
        keep = [k for k in keep if k != negative[0]]
        if not keep:
            intercept, coef = _logistic_fit(np.zeros((len(y), 1)), y)
            break
    params = {"a": 0.0, "b": 0.0} | {k: float(v) for k, v in zip(keep, coef, strict=False)}
    return {"method": "beta", **params, "c": intercept}


def fit_isotonic(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Isotonic regression, kept as the centre (mean probability) and value of each block.

    >>> fit_isotonic(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]))
    {'method': 'isotonic', 'x': [0.15, 0.85], 'y': [0.0, 1.0]}
    """
    from sklearn.isotonic import IsotonicRegression

    p, y = np.asarray(probabilities, dtype=float), np.asarray(labels, dtype=float)
    fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit_transform(p, y)
    order = np.argsort(p, kind="stable")
    p, fitted = p[order], fitted[order]
    starts = np.flatnonzero(np.r_[True, np.diff(fitted) != 0])  # first row of each block
    centres = np.add.reduceat(p, starts) / np.diff(np.r_[starts, len(p)])
    return {
        "method": "isotonic",
        "x": [round(float(v), 9) for v in centres],
        "y": [round(float(v), 9) for v in fitted[starts]],
    }


def fit_neighbour_window(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Store the sorted held-out baseline: probabilities and labels.

    >>> fit_neighbour_window(np.array([0.9, 0.1]), np.array([1, 0]))["labels"]
    [0, 1]
    """
    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(labels, dtype=int)
    order = np.argsort(p, kind="stable")
    return {
        "method": "neighbour_window",
        "windows": [list(w) for w in WINDOWS],
        "scores": [round(float(v), 6) for v in p[order]],
        "labels": [int(v) for v in y[order]],
    }


def _apply_neighbour_window(params: dict[str, Any], p: np.ndarray) -> np.ndarray:
    scores = np.asarray(params["scores"], dtype=float)
    labels = np.asarray(params["labels"], dtype=float)
    n = len(scores)
    if n == 0:
        raise ValueError("neighbour_window calibration has an empty baseline")
    csum = np.concatenate([[0.0], np.cumsum(labels)])
    # closest baseline position: compare the neighbours either side of the insertion point
    right = np.clip(np.searchsorted(scores, p), 0, n - 1)
    left = np.clip(right - 1, 0, n - 1)
    pos = np.where(np.abs(scores[left] - p) <= np.abs(scores[right] - p), left, right)
    w = np.where(p > 0.8, 10, np.where(p >= 0.3, 15, 20))
    lo = np.clip(pos - w, 0, n)
    hi = np.clip(pos + w + 1, 0, n)
    return (csum[hi] - csum[lo]) / (hi - lo)


def fit(method: str, probabilities: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Fit one of METHODS; returns its JSON-ready parameters."""
    if method == "none":
        return {"method": "none"}
    fitters = {
        "platt": fit_platt,
        "beta": fit_beta,
        "isotonic": fit_isotonic,
        "neighbour_window": fit_neighbour_window,
    }
    if method not in fitters:
        raise ValueError(f"unknown calibration method {method!r}; expected one of {METHODS}")
    return fitters[method](probabilities, labels)


def apply_calibration(params: dict[str, Any], probabilities: np.ndarray) -> np.ndarray:
    """Calibrated risk in [0, 1] for raw probabilities; NaN stays NaN.

    >>> params = fit_isotonic(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]))
    >>> apply_calibration(params, np.array([0.05, 0.5, 0.95])).tolist()
    [0.0, 0.5, 1.0]
    """
    p = np.asarray(probabilities, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    method = params.get("method")
    q = _clip(p[ok])
    if method == "none":
        out[ok] = p[ok]
    elif method == "platt":
        out[ok] = _sigmoid(params["c"] + params["a"] * np.log(q / (1 - q)))
    elif method == "beta":
        out[ok] = _sigmoid(params["c"] + params["a"] * np.log(q) - params["b"] * np.log(1 - q))
    elif method == "isotonic":
        x, y = np.asarray(params["x"], dtype=float), np.asarray(params["y"], dtype=float)
        out[ok] = np.interp(p[ok], x, y) if len(x) > 1 else np.full(ok.sum(), y[0])
    elif method == "neighbour_window":
        out[ok] = _apply_neighbour_window(params, p[ok])
    else:
        raise ValueError(f"unknown calibration method {method!r}")
    return np.clip(out, 0.0, 1.0)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def cumulative(risks: np.ndarray) -> np.ndarray:
    """Risks within 1, 2, 3 days made cumulative: each horizon at least the shorter ones'.

    `risks` is (N, H) in horizon order; the running maximum along the horizons, the stated
    monotone adjustment (a risk of onset within 2 days cannot be below that within 1 day).
    NaN is left where it is and does not lower later horizons.

    >>> cumulative(np.array([[0.3, 0.2, 0.4]])).tolist()
    [[0.3, 0.3, 0.4]]
    """
    r = np.asarray(risks, dtype=float)
    return np.where(np.isnan(r), np.nan, np.fmax.accumulate(r, axis=1))


def cross_fitted(
    method: str, probabilities: np.ndarray, labels: np.ndarray, folds: np.ndarray
) -> np.ndarray:
    """Calibrate each fold's rows with a calibrator fitted on the other folds' labelled rows.

    Rows whose label is NaN are calibrated but never fitted on. This is how the methods are
    compared: a calibrator scored on the rows it was fitted on looks better than it is.
    """
    p, y, f = np.asarray(probabilities, float), np.asarray(labels, float), np.asarray(folds)
    labelled = ~np.isnan(y)
    out = np.full(p.shape, np.nan)
    for k in np.unique(f):
        test = f == k
        train = ~test & labelled
        out[test] = apply_calibration(fit(method, p[train], y[train].astype(int)), p[test])
    return out


def compare(
    probabilities: np.ndarray, labels: np.ndarray, folds: np.ndarray
) -> dict[str, dict[str, float]]:
    """Cross-fitted Brier and ECE per method on the labelled rows, and 'raw' uncalibrated."""
    return _compared(probabilities, labels, folds)[0]


@dataclass(frozen=True)
class Choice:
    """A model's calibrator as the rule chose it, with what the choice rested on."""

    method: str  # one of SHIPPABLE
    comparison: dict[str, dict[str, float]]  # compare()'s figures
    calibrated: np.ndarray  # every row's risk, cross-fitted with `method`
    nested: dict[str, float]  # the rule judged on folds it did not choose on (`_nested`)


def choose_cross_fitted(probabilities: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> Choice:
    """compare(), choose() and the chosen method's cross-fitted risks, each fitted once:
    how `train` and `evaluate` calibrate out-of-fold predictions."""
    comparison, calibrated = _compared(probabilities, labels, folds)
    method = choose(comparison)
    return Choice(method, comparison, calibrated[method], _nested(calibrated, labels, folds))


def _nested(
    calibrated: dict[str, np.ndarray], labels: np.ndarray, folds: np.ndarray
) -> dict[str, float]:
    """Brier and ECE of the rule's choice judged out of sample: each fold's rows take the
    method that `choose` picks on the other folds' rows alone. (Those rows' cross-fitted
    risks come from calibrators that saw the fold's labels; the choice itself does not.)"""
    y = np.asarray(labels, float)
    labelled = ~np.isnan(y)
    f = np.asarray(folds)
    out = np.full(len(y), np.nan)
    for k in np.unique(f):
        inner = labelled & (f != k)
        yi = y[inner].astype(int)
        figures = {
            m: {"brier": brier(calibrated[m][inner], yi), "ece": ece(calibrated[m][inner], yi)}
            for m in SHIPPABLE
        }
        out[f == k] = calibrated[choose(figures)][f == k]
    yl = y[labelled].astype(int)
    return {"brier": brier(out[labelled], yl), "ece": ece(out[labelled], yl)}


def _compared(
    probabilities: np.ndarray, labels: np.ndarray, folds: np.ndarray
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    y = np.asarray(labels, float)
    labelled = ~np.isnan(y)
    p = np.asarray(probabilities, float)
    yl = y[labelled].astype(int)
    out = {"raw": {"brier": brier(p[labelled], yl), "ece": ece(p[labelled], yl)}}
    calibrated = {}
    for method in METHODS:
        calibrated[method] = cross_fitted(method, p, y, folds)
        cal = calibrated[method][labelled]
        out[method] = {"brier": brier(cal, yl), "ece": ece(cal, yl)}
    return out, calibrated


def choose(comparison: dict[str, dict[str, float]]) -> str:
    """The shipped method: lowest cross-fitted Brier score, then ECE, then the simpler."""
    return min(
        SHIPPABLE,
        key=lambda m: (comparison[m]["brier"], comparison[m]["ece"], SHIPPABLE.index(m)),
    )
