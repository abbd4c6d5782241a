"""Lab rows -> model inputs, pure: the one path from cleaned lab rows to tensors, for
training and serving.

- the features of a patient on a night are each analyte's latest clean result in the
  lookback window (queries.latest_labs + cleaning.clean_labs, then `lab_matrix`);
- inputs are median-filled, log-scaled and standardised with statistics fitted on training
  rows only (`fit_input_stats`), with a mask of what was observed (`encode`).

The offline cohorts built through the same path, with their labels, are in datasets.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from prcrs_batch.task.panel import ANALYTE_CODES


def lab_matrix(clean: pd.DataFrame, patient_ids: list[str] | None = None) -> pd.DataFrame:
    """Wide matrix of the latest clean value per patient (rows) and analyte (42 columns).

    >>> clean = pd.DataFrame({"patient_id": ["p1", "p1"], "analyte": ["il6", "il6"],
    ...     "collected_at": pd.to_datetime(["2026-01-01", "2026-01-02"]), "value": [5.0, 9.0]})
    >>> lab_matrix(clean, ["p1", "p2"])["il6"].tolist()
    [9.0, nan]
    """
    latest = clean.sort_values("collected_at").drop_duplicates(
        ["patient_id", "analyte"], keep="last"
    )
    wide = latest.pivot(index="patient_id", columns="analyte", values="value")
    wide = wide.reindex(columns=list(ANALYTE_CODES)).astype(float)
    if patient_ids is not None:
        wide = wide.reindex(pd.Index(patient_ids, name="patient_id"))
    wide.columns.name = None
    return wide


@dataclass
class InputStats:
    """How one model turns raw values into inputs: fitted on its training rows only."""

    inputs: list[str]
    fill: dict[str, float]  # training median, model units
    center: dict[str, float]  # mean of log-scaled observed values
    scale: dict[str, float]  # standard deviation of the same

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> InputStats:
        return cls(**data)


def _log_scale(values: np.ndarray) -> np.ndarray:
    return np.sign(values) * np.log1p(np.abs(values))


def fit_input_stats(frame: pd.DataFrame, inputs: list[str]) -> InputStats:
    """Medians and normalisation for `inputs`, from the rows of `frame` (training rows only)."""
    fill, center, scale = {}, {}, {}
    for code in inputs:
        observed = frame[code].dropna().to_numpy(dtype=float)
        fill[code] = float(np.median(observed)) if len(observed) else 0.0
        scaled = _log_scale(observed)
        center[code] = float(scaled.mean()) if len(scaled) else 0.0
        spread = float(scaled.std()) if len(scaled) > 1 else 0.0
        scale[code] = spread if spread > 1e-6 else 1.0
    return InputStats(list(inputs), fill, center, scale)


def encode(frame: pd.DataFrame, stats: InputStats) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs for the rows of `frame`: (values float32 (N, L), observed bool (N, L)).

    >>> frame = pd.DataFrame({"il6": [10.0, np.nan]})
    >>> stats = fit_input_stats(frame, ["il6"])
    >>> values, observed = encode(frame, stats)
    >>> values.shape, observed[:, 0].tolist(), float(values[1, 0])
    ((2, 1), [True, False], 0.0)
    """
    raw = frame.reindex(columns=stats.inputs).to_numpy(dtype=float)  # (N, L)
    observed = ~np.isnan(raw)
    filled = np.where(observed, raw, np.array([stats.fill[c] for c in stats.inputs]))
    center = np.array([stats.center[c] for c in stats.inputs])
    scale = np.array([stats.scale[c] for c in stats.inputs])
    values = (_log_scale(filled) - center) / scale
    return values.astype(np.float32), observed
