"""Calibration: raw model probability -> calibrated risk, from parameters saved as JSON.

Two methods, both fitted offline on out-of-fold predictions only (training.py):

- ``neighbour_window``: the PrCRS paper's "actual probability". The baseline is the held-out
  predictions sorted by probability, with their labels. For a new probability p, take the
  baseline position closest to p and a window of neighbours around it (10 either side when
  p > 0.8, 15 for 0.3-0.8, 20 below 0.3, cut at the ends); the risk is the window's
  fraction of severe cases. A nearest-neighbour recalibration in score space.
- ``isotonic``: isotonic regression (sklearn), stored as its step thresholds and applied by
  linear interpolation between them, clipped at the ends.

Only `fit_*` touch sklearn; `apply_calibration` needs numpy and the saved dict.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from prcrs_batch.metrics import brier, ece

logger = logging.getLogger(__name__)

METHODS = ("neighbour_window", "isotonic")
# (lower bound of p, half-window) from the top down, as in the paper
WINDOWS: tuple[tuple[float, int], ...] = ((0.8, 10), (0.3, 15), (0.0, 20))


def _half_window(p: np.ndarray) -> np.ndarray:
    return np.where(p > 0.8, 10, np.where(p >= 0.3, 15, 20))


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
    w = _half_window(p)
    lo = np.clip(pos - w, 0, n)
    hi = np.clip(pos + w + 1, 0, n)
    return (csum[hi] - csum[lo]) / (hi - lo)


def fit_isotonic(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Fit isotonic regression and keep its thresholds.

    >>> fit_isotonic(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]))["y"]
    [0.0, 0.0, 1.0, 1.0]
    """
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(np.asarray(probabilities, dtype=float), np.asarray(labels, dtype=float))
    return {
        "method": "isotonic",
        "x": [round(float(v), 6) for v in iso.X_thresholds_],
        "y": [round(float(v), 6) for v in iso.y_thresholds_],
    }


def fit(method: str, probabilities: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Fit one of METHODS; returns its JSON-ready parameters."""
    if method == "neighbour_window":
        return fit_neighbour_window(probabilities, labels)
    if method == "isotonic":
        return fit_isotonic(probabilities, labels)
    raise ValueError(f"unknown calibration method {method!r}; expected one of {METHODS}")


def apply_calibration(params: dict[str, Any], probabilities: np.ndarray) -> np.ndarray:
    """Calibrated risk in [0, 1] for raw probabilities; NaN stays NaN.

    >>> params = fit_isotonic(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]))
    >>> apply_calibration(params, np.array([0.05, 0.95])).tolist()
    [0.0, 1.0]
    """
    p = np.asarray(probabilities, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    method = params.get("method")
    if method == "neighbour_window":
        out[ok] = _apply_neighbour_window(params, p[ok])
    elif method == "isotonic":
        x, y = np.asarray(params["x"], dtype=float), np.asarray(params["y"], dtype=float)
        out[ok] = np.interp(p[ok], x, y) if len(x) > 1 else np.full(ok.sum(), y[0])
    else:
        raise ValueError(f"unknown calibration method {method!r}")
    return np.clip(out, 0.0, 1.0)


def cross_fitted(
    method: str, probabilities: np.ndarray, labels: np.ndarray, folds: np.ndarray
) -> np.ndarray:
    """Calibrate each fold's predictions with a calibrator fitted on the other folds.

    This is how the two methods are compared: a calibrator scored on the rows it was fitted
    on (the neighbour window even contains the row itself) looks better than it is.
    """
    p, y, f = np.asarray(probabilities, float), np.asarray(labels, int), np.asarray(folds)
    out = np.full(p.shape, np.nan)
    for k in np.unique(f):
        test = f == k
        out[test] = apply_calibration(fit(method, p[~test], y[~test]), p[test])
    return out


def compare(
    probabilities: np.ndarray, labels: np.ndarray, folds: np.ndarray
) -> dict[str, dict[str, float]]:
    """Cross-fitted Brier and ECE per method, plus the uncalibrated figures under 'raw'."""
    out = {"raw": {"brier": brier(probabilities, labels), "ece": ece(probabilities, labels)}}
    for method in METHODS:
        cal = cross_fitted(method, probabilities, labels, folds)
        out[method] = {"brier": brier(cal, labels), "ece": ece(cal, labels)}
    return out


def choose(comparison: dict[str, dict[str, float]]) -> str:
    """The default method: lower cross-fitted Brier score, then lower ECE."""
    return min(METHODS, key=lambda m: (comparison[m]["brier"], comparison[m]["ece"]))
