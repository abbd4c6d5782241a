"""Binary metrics of a risk model: AUROC, AUPRC, Brier, ECE, sensitivity/specificity, and
their intervals with a patient's rows clustered (patient bootstrap; Obuchowski's analytic
AUROC interval for monitoring's large windows). One implementation for training,
evaluation and monitoring.

AUROC and AUPRC are numpy (equal to sklearn's to 1e-12, tests/test_models_evaluation.py), so
that the nightly job's monitoring never imports sklearn (a second of start-up).
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

N_BOOT = 300  # bootstrap resamples of patients


def brier(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared difference between probability and outcome.

    >>> brier(np.array([0.5, 1.0]), np.array([0, 1]))
    0.125
    """
    p, y = np.asarray(probabilities, float), np.asarray(labels, float)
    return float(np.mean((p - y) ** 2))


def ece(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error over `n_bins` quantile bins (equal counts, ties kept in one
    bin), weighted by bin size. Equal-width bins would put nearly every row in the first bin
    at the 4-14 % event rates of this task.

    >>> ece(np.array([0.2, 0.2, 0.2, 0.2, 0.2]), np.array([1, 0, 0, 0, 0]))
    0.0
    >>> ece(np.array([0.01, 0.02, 0.03, 0.04]), np.array([0, 0, 0, 1]), n_bins=2)
    0.24
    """
    p, y = np.asarray(probabilities, float), np.asarray(labels, float)
    if not len(p):
        return float("nan")
    edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    bins = np.searchsorted(edges[1:-1], p, side="right")
    total = 0.0
    for b in np.unique(bins):
        m = bins == b
        total += m.sum() * abs(p[m].mean() - y[m].mean())
    return float(round(total / len(p), 12))


def auroc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Area under the ROC curve from the ranks (ties count a half, as sklearn's
    roc_auc_score); NaN when only one class is present.

    >>> auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    y = np.asarray(labels, int)
    if not 0 < y.sum() < len(y):
        return float("nan")
    return float(weighted_auroc(y, probabilities, np.ones((1, len(y))))[0])


def auprc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision (sklearn's
    average_precision_score: precision at each distinct threshold, weighted by the recall it
    adds); NaN without positives.

    >>> auprc(np.array([0, 1, 0, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    1.0
    >>> round(auprc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])), 4)
    0.8333
    """
    y = np.asarray(labels, int)
    if not y.sum():
        return float("nan")
    order = np.argsort(-np.asarray(probabilities, float), kind="mergesort")
    p, y = np.asarray(probabilities, float)[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(p)), len(p) - 1]
    true_positives = np.cumsum(y)[last_of_tie]
    precision = true_positives / (last_of_tie + 1)
    recall = true_positives / true_positives[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """AUROC, AUPRC, Brier, ECE, calibration intercept and slope, and at `threshold`
    sensitivity, specificity, PPV and the share of rows flagged.

    >>> m = binary_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]), 0.3)
    >>> m["auroc"], m["sensitivity"], m["specificity"], m["ppv"]
    (0.75, 1.0, 0.5, 0.6666666666666666)
    """
    y, p = np.asarray(y, int), np.asarray(p, float)
    flagged = p >= threshold
    intercept, slope = calibration_intercept_slope(y, p)
    return {
        "auroc": auroc(y, p),
        "auprc": auprc(y, p),
        "brier": brier(p, y),
        "ece": ece(p, y),
        "calibration_intercept": intercept,
        "calibration_slope": slope,
        "sensitivity": float(flagged[y == 1].mean()) if (y == 1).any() else float("nan"),
        "specificity": float((~flagged[y == 0]).mean()) if (y == 0).any() else float("nan"),
        "ppv": float(y[flagged].mean()) if flagged.any() else float("nan"),
        "flagged": float(flagged.mean()) if len(y) else float("nan"),
        "n": int(len(y)),
        "n_positive": int(y.sum()),
    }


def calibration_intercept_slope(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Calibration intercept (in the large: logit offset with slope fixed at 1) and slope
    (of y on logit p); 0 and 1 when calibrated. NaN with a single class.

    Both by Newton's method on the logistic log-likelihood (Cox 1958; Van Calster 2019).

    >>> a, b = calibration_intercept_slope(np.array([0, 1, 0, 1]), np.array([0.2, 0.8, 0.3, 0.7]))
    >>> abs(a) < 1e-9, bool(b > 1)
    (True, True)
    """
    y, p = np.asarray(y, float), np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    if len(y) == 0 or y.min() == y.max():
        return float("nan"), float("nan")
    z = np.log(p / (1 - p))
    intercept = _newton(y, np.ones((len(y), 1)), z)[0]
    slope = _newton(y, np.column_stack([np.ones_like(z), z]), 0.0)[1]
    return float(intercept), float(slope)


def _newton(
    y: np.ndarray, x: np.ndarray, offset: np.ndarray | float, steps: int = 50
) -> np.ndarray:
    """Maximum-likelihood coefficients of a logistic regression with a fixed offset."""
    beta = np.zeros(x.shape[1])
    for _ in range(steps):
        mu = 1 / (1 + np.exp(-(x @ beta + offset)))
        w = np.maximum(mu * (1 - mu), 1e-12)
        step = np.linalg.solve(x.T @ (x * w[:, None]) + 1e-9 * np.eye(x.shape[1]), x.T @ (y - mu))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def bootstrap_ci(
    y: np.ndarray, preds: list[np.ndarray], groups: np.ndarray, seed: int = 0, n_boot: int = N_BOOT
) -> dict[str, tuple[float, float]]:
    """Patient-bootstrap 95% intervals of AUROC and AUPRC, averaged over CV repeats `preds`.

    Whole patients are resampled (`groups` holds each row's patient), since a patient's
    days are not independent. Resamples with a single class are skipped.
    """
    rng = np.random.default_rng(seed)
    patients, inverse = np.unique(groups, return_inverse=True)
    rows_of = [np.flatnonzero(inverse == i) for i in range(len(patients))]
    stats: dict[str, list[float]] = {"auroc": [], "auprc": []}
    for _ in range(n_boot):
        pick = np.concatenate([rows_of[i] for i in rng.integers(0, len(patients), len(patients))])
        yb = y[pick]
        if yb.sum() == 0 or yb.sum() == len(yb):
            continue
        stats["auroc"].append(float(np.mean([auroc(yb, p[pick]) for p in preds])))
        stats["auprc"].append(float(np.mean([auprc(yb, p[pick]) for p in preds])))
    return {
        k: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) for k, v in stats.items()
    }


def weighted_auroc(
    labels: np.ndarray, probabilities: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """AUROC under each row of `weights` (shape (B, n): a weight per row, e.g. how often a
    bootstrap drew the row's patient), all at once from the ranks: ties count a half, as in
    sklearn. NaN where a weighting leaves a single class.

    >>> y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    >>> weighted_auroc(y, p, np.array([[1, 1, 1, 1], [1, 0, 1, 0]])).tolist()
    [0.75, 1.0]
    """
    ranked = _Ranked.of(labels, probabilities)
    return ranked.auroc(np.asarray(weights, float)[:, ranked.order])


class _Ranked:
    """Rows sorted by score once, with their groups of tied scores: `auroc` scores any
    number of weightings at once (a bootstrap's resamples), `clustered_auroc_ci` reads the
    placements from the same order."""

    def __init__(self, y: np.ndarray, order: np.ndarray, starts: np.ndarray) -> None:
        self.y, self.order, self.starts = y, order, starts

    @classmethod
    def of(cls, labels: np.ndarray, probabilities: np.ndarray) -> _Ranked:
        p = np.asarray(probabilities, float)
        order = np.argsort(p, kind="mergesort")
        p = p[order]
        starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])  # groups of tied scores
        return cls(np.asarray(labels, int)[order], order, starts)

    def auroc(self, w: np.ndarray) -> np.ndarray:
        """AUROC under each row of `w`, its columns in score order (`order`)."""
        negatives = np.add.reduceat(w * (self.y == 0), self.starts, axis=1)
        positives = np.add.reduceat(w * (self.y == 1), self.starts, axis=1)
        below = np.cumsum(negatives, axis=1) - negatives
        pairs = positives.sum(axis=1) * negatives.sum(axis=1)
        wins = (positives * (below + 0.5 * negatives)).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pairs > 0, wins / pairs, np.nan)


def clustered_auroc_ci(
    y: np.ndarray, p: np.ndarray, groups: np.ndarray, level: float = 0.95
) -> tuple[float, float]:
    """Interval of the AUROC with rows clustered in `groups` (a patient's nights), by
    Obuchowski's structural components (Biometrics 1997;53:567-578): DeLong's variance
    when every group holds one row, widened by the correlation within groups. One sort
    (`_Ranked`), so a monitoring window of millions of rows costs about a second, where a
    patient bootstrap of 200 resamples cost minutes. Symmetric, clipped to [0, 1]; NaN
    without two groups of each class."""
    ranked = _Ranked.of(y, p)
    positive = ranked.y == 1
    m, n = int(positive.sum()), int((~positive).sum())
    _, cluster = np.unique(np.asarray(groups)[ranked.order], return_inverse=True)
    with_positive = np.unique(cluster[positive])
    with_negative = np.unique(cluster[~positive])
    if len(with_positive) < 2 or len(with_negative) < 2:
        return float("nan"), float("nan")
    negatives = np.add.reduceat((~positive).astype(float), ranked.starts)
    positives = np.add.reduceat(positive.astype(float), ranked.starts)
    sizes = np.diff(np.r_[ranked.starts, len(positive)])
    tie_group = np.repeat(np.arange(len(ranked.starts)), sizes)
    # placements: the share of the other class each row outranks (ties a half)
    v10 = ((np.cumsum(negatives) - negatives / 2) / n)[tie_group] * positive
    v01 = ((m - np.cumsum(positives) + positives / 2) / m)[tie_group] * ~positive
    theta = v10.sum() / m
    k = cluster.max() + 1
    d10 = np.bincount(cluster, v10, k) - np.bincount(cluster, positive * 1.0, k) * theta
    d01 = np.bincount(cluster, v01, k) - np.bincount(cluster, ~positive * 1.0, k) * theta
    i10, i01 = len(with_positive), len(with_negative)
    s10 = i10 / ((i10 - 1) * m) * (d10 * d10).sum()
    s01 = i01 / ((i01 - 1) * n) * (d01 * d01).sum()
    s11 = k / (k - 1) * (d10 * d01).sum()
    se = np.sqrt(max(s10 / m + s01 / n + 2 * s11 / (m * n), 0.0))
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return float(max(theta - z * se, 0.0)), float(min(theta + z * se, 1.0))
