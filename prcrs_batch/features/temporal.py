"""Temporal context a classifier head may read besides the night's latest values: days since
infusion, and each analyte's change since its previous result.

Evaluated as model choices (model_choices.py, issue 11 item 6); the nightly job does not use them
unless the rule there keeps one. Both come from what the nightly path already has:

- days since infusion: the as-of date minus the infusion date (`day` in the training frame,
  `sql/active_cohort.sql`'s infusion_date at night), scaled by a fixed `DAY_SCALE`;
- the previous result of an analyte: its latest clean result collected before the latest
  one, in the same lookback window (`previous_matrix` over cleaning.clean_labs' rows, as
  matrix.lab_matrix picks the latest); the change is taken on the models' log scale, in
  the input's standard deviations (matrix.InputStats.scale), with a mask saying whether
  both results exist.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prcrs_batch.features.matrix import InputStats, lab_matrix

PREVIOUS_PREFIX = "prev_"  # training-frame column of an analyte's previous result
DAY_SCALE = 7.0  # days since infusion enter the head as day / DAY_SCALE (fixed, not fitted)
KINDS = ("days", "change", "days_change")  # the context options a head can read


def previous_matrix(clean: pd.DataFrame, patient_ids: list[str] | None = None) -> pd.DataFrame:
    """Wide matrix of each analyte's clean result before the latest one (42 columns).

    `clean` is cleaning.clean_labs' output for one night's window; NaN where an analyte has
    fewer than two results.

    >>> clean = pd.DataFrame({"patient_id": ["p1"] * 3, "analyte": ["il6", "il6", "crp"],
    ...     "collected_at": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-02"]),
    ...     "value": [5.0, 9.0, 3.0]})
    >>> previous_matrix(clean, ["p1"])[["il6", "crp"]].values.tolist()
    [[5.0, nan]]
    """
    ordered = clean.sort_values("collected_at", kind="stable")
    earlier = ordered[ordered.duplicated(["patient_id", "analyte"], keep="last")]
    return lab_matrix(earlier, patient_ids)


def days_input(frame: pd.DataFrame) -> np.ndarray:
    """(N, 1) float32: days since infusion / DAY_SCALE.

    >>> days_input(pd.DataFrame({"day": [0, 7]})).ravel().tolist()
    [0.0, 1.0]
    """
    return (frame["day"].to_numpy(dtype=float) / DAY_SCALE).astype(np.float32)[:, None]


def _log_scale(values: np.ndarray) -> np.ndarray:
    return np.sign(values) * np.log1p(np.abs(values))  # matrix.encode's scale


def change_inputs(frame: pd.DataFrame, stats: InputStats) -> np.ndarray:
    """(N, 2L) float32: per input, the change from its previous result to the latest on the
    log scale in standard deviations (0 when either is missing), then 1/0: both present.

    >>> stats = InputStats(["il6"], {"il6": 0.0}, {"il6": 0.0}, {"il6": 0.5})
    >>> frame = pd.DataFrame({"il6": [np.e - 1, 5.0], "prev_il6": [0.0, np.nan]})
    >>> change_inputs(frame, stats).round(3).tolist()
    [[2.0, 1.0], [0.0, 0.0]]
    """
    latest = frame.reindex(columns=stats.inputs).to_numpy(dtype=float)  # (N, L)
    previous = frame.reindex(columns=[PREVIOUS_PREFIX + c for c in stats.inputs]).to_numpy(
        dtype=float
    )
    both = ~np.isnan(latest) & ~np.isnan(previous)
    scale = np.array([stats.scale[c] for c in stats.inputs])
    with np.errstate(invalid="ignore"):
        change = (_log_scale(latest) - _log_scale(previous)) / scale
    change = np.where(both, change, 0.0)
    return np.hstack([change, both.astype(float)]).astype(np.float32)


def context_inputs(frame: pd.DataFrame, stats: InputStats, kind: str) -> np.ndarray:
    """The extra head inputs of context option `kind` (one of KINDS) for the rows of `frame`.

    >>> stats = InputStats(["il6"], {"il6": 0.0}, {"il6": 0.0}, {"il6": 1.0})
    >>> frame = pd.DataFrame({"day": [3], "il6": [1.0], "prev_il6": [1.0]})
    >>> context_inputs(frame, stats, "days_change").shape
    (1, 3)
    """
    if kind not in KINDS:
        raise ValueError(f"unknown context {kind!r}")
    arrays = []
    if kind in ("days", "days_change"):
        arrays.append(days_input(frame))
    if kind in ("change", "days_change"):
        arrays.append(change_inputs(frame, stats))
    return np.hstack(arrays)
