"""Cross-validation: patient folds, the rows a model learns from, per-fold normalisation, and
the one out-of-fold loop behind both `training.train` and `evaluation.evaluate`.

- Folds are grouped by patient (a patient's days are never in the training and the test
  part of one fold) and stratified on whether the patient ever has severe CRS.
- A (factor set, horizon) model learns from the usable rows: a label for the horizon and
  enough observed inputs to be scored at night (panel.scorable).
- Each fold's normalisation comes from the scorable rows (unlabelled days too) of the
  fold's training patients, as the shipped models fit it on all patients.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from prcrs_batch.features.matrix import InputStats, encode, fit_input_stats
from prcrs_batch.task.panel import inputs_for, scorable
from prcrs_batch.task.target import SEVERE_GRADE


class FitPredict(Protocol):
    """A method under cross-validation: fit on `train`, return P(severe) for each `test` row.

    `stats` is the fold's normalisation, the labels are `train[f"label_{horizon}"]`, and
    `seed` makes the fit reproducible.
    """

    def __call__(
        self,
        train: pd.DataFrame,
        test: pd.DataFrame,
        stats: InputStats,
        horizon: int,
        seed: int,
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class FoldArrays:
    """What every method under CV learns from and predicts, encoded once the same way:
    the fold's training rows (values, observed mask, 0/1 labels, patient ids as groups for
    early stopping) and its test rows (values, observed mask)."""

    values: np.ndarray  # (N, L) float32, matrix.encode'd
    observed: np.ndarray  # (N, L) bool
    y: np.ndarray  # (N,) int
    groups: np.ndarray  # (N,) patient ids
    test_values: np.ndarray  # (M, L)
    test_observed: np.ndarray  # (M, L)

    @classmethod
    def of(
        cls, train: pd.DataFrame, test: pd.DataFrame, stats: InputStats, horizon: int
    ) -> FoldArrays:
        """The arrays of a fold's `train` and `test` rows, `stats` its normalisation."""
        values, observed = encode(train, stats)
        test_values, test_observed = encode(test, stats)
        groups = train["patient_id"].to_numpy()
        return cls(values, observed, labels(train, horizon), groups, test_values, test_observed)

    def inputs_and_mask(self) -> tuple[np.ndarray, np.ndarray]:
        """Train and test inputs followed by their observed mask as 0/1: (N, 2L), (M, 2L)."""
        return (
            np.hstack([self.values, self.observed.astype(np.float32)]),
            np.hstack([self.test_values, self.test_observed.astype(np.float32)]),
        )


def labels(rows: pd.DataFrame, horizon: int) -> np.ndarray:
    """The 0/1 target of `rows` for `horizon` (rows must be usable: no missing label)."""
    return rows[f"label_{horizon}"].to_numpy(dtype=int)


def ever_severe(frame: pd.DataFrame) -> pd.Series:
    """Per row: does this row's patient ever reach a severe grade (the stratification label)."""
    return frame.groupby("patient_id")["crs_grade"].transform("max").ge(SEVERE_GRADE).astype(int)


def patient_folds(frame: pd.DataFrame, n_folds: int, seed: int) -> np.ndarray:
    """Fold number (0..n_folds-1) per row; every patient's rows share one fold.

    Stratified on whether the patient ever has severe CRS (StratifiedGroupKFold).
    """
    folds = np.full(len(frame), -1)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(
        splitter.split(np.zeros(len(frame)), ever_severe(frame), frame["patient_id"])
    ):
        folds[test] = k
    return folds


def inner_split(groups: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Patient-grouped train/validation masks (about 80/20) for early stopping."""
    n_splits = min(5, len(np.unique(groups)))  # a tiny cohort may have fewer than 5 patients
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    strat = pd.Series(y).groupby(groups).transform("max").to_numpy()
    _, val = next(splitter.split(np.zeros(len(y)), strat, groups))
    mask = np.zeros(len(y), dtype=bool)
    mask[val] = True
    return ~mask, mask


def scorable_rows(frame: pd.DataFrame, factor_set: str) -> np.ndarray:
    """Rows the nightly job would score for `factor_set`: not already severe (panel.
    already_severe, column `severe_today`) and enough observed inputs (panel.scorable)."""
    enough = scorable(frame[inputs_for(factor_set)].notna().sum(axis=1).to_numpy(), factor_set)
    if "severe_today" in frame:
        enough &= ~frame["severe_today"].to_numpy(dtype=bool)
    return enough


def usable_rows(frame: pd.DataFrame, factor_set: str, horizon: int) -> np.ndarray:
    """Scorable rows with an observed label for `horizon`: train and validate on those."""
    return frame[f"label_{horizon}"].notna().to_numpy() & scorable_rows(frame, factor_set)


def fit_set_stats(frame: pd.DataFrame, factor_set: str, patients: set | None = None) -> InputStats:
    """Normalisation for a factor set from all its scorable rows (no labels involved).

    The same for the set's three horizons, so scoring runs each frozen body once per set.
    `patients` restricts it to those patients' rows (a CV fold's training patients).
    """
    rows = scorable_rows(frame, factor_set)
    if patients is not None:
        rows = rows & frame["patient_id"].isin(patients).to_numpy()
    return fit_input_stats(frame[rows], inputs_for(factor_set))


@dataclass
class FoldedRows:
    """The rows one factor set scores, each with its patient's fold.

    Every horizon's model learns from the labelled ones and predicts all of them, so that
    each row has a risk at every horizon (what the nightly job gives, and what the
    cumulative adjustment across horizons needs).
    """

    frame: pd.DataFrame  # every patient-day: normalisation also uses the unlabelled ones
    factor_set: str
    rows: pd.DataFrame  # the scorable rows, index 0..n-1
    folds: np.ndarray  # (n,) fold of each row

    @classmethod
    def select(cls, frame: pd.DataFrame, folds: np.ndarray, factor_set: str) -> FoldedRows:
        """The scorable rows of `frame`, whose rows carry the fold numbers `folds`."""
        keep = scorable_rows(frame, factor_set)
        return cls(frame, factor_set, frame[keep].reset_index(drop=True), folds[keep])

    def labelled(self, horizon: int) -> np.ndarray:
        """(n,) bool: the rows with a label for `horizon`."""
        return self.rows[f"label_{horizon}"].notna().to_numpy()

    def y(self, horizon: int) -> np.ndarray:
        """(n,) float labels for `horizon`, NaN where there is none."""
        return self.rows[f"label_{horizon}"].to_numpy(dtype=float)

    @property
    def patients(self) -> np.ndarray:
        return self.rows["patient_id"].to_numpy()

    @cached_property
    def fold_stats(self) -> dict[int, InputStats]:
        """Per fold, the normalisation fitted on its training patients (shared by all methods)."""
        return {
            int(k): fit_set_stats(self.frame, self.factor_set, set(self.patients[self.folds != k]))
            for k in np.unique(self.folds)
        }


def out_of_fold(data: FoldedRows, fit_predict: FitPredict, horizon: int, seed: int) -> np.ndarray:
    """Each row's probability from the model fitted on the other folds' labelled rows.

    Fold k's model gets seed `seed + k`. Every row is predicted exactly once.
    """
    oof = np.full(len(data.rows), np.nan)
    labelled = data.labelled(horizon)
    for k in map(int, np.unique(data.folds)):
        train, test = (data.folds != k) & labelled, data.folds == k
        oof[test] = fit_predict(
            data.rows[train], data.rows[test], data.fold_stats[k], horizon, seed + k
        )
    return oof
