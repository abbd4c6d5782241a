"""Score every patient with every loaded model: 6 factor sets x 3 horizons, keyed by patient id.

Each model runs once over the whole cohort as one batch in inference mode. A patient with
fewer observed inputs than the factor set's minimum gets status 'insufficient_inputs' and
NULL risks; a model that failed to load gives status 'error' with its message in `detail`.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from prcrs_batch.artifacts import LoadedModel, ModelBundle, resolve_device
from prcrs_batch.panel import ANALYTE_CODES, FACTOR_SETS, HORIZONS, inputs_for, min_observed

logger = logging.getLogger(__name__)

COLUMNS = [
    "patient_id", "model", "horizon_days", "probability", "calibrated_risk", "status",
    "inputs_observed", "inputs_expected", "detail",
]


def score(
    bundle: ModelBundle, features: pd.DataFrame, device: str | torch.device = "auto"
) -> pd.DataFrame:
    """One row per patient x factor set x horizon.

    `features` is indexed by patient_id and holds the 42 analyte columns in model units
    (NaN = missing), as features.lab_matrix returns them.

    >>> # score(load_models("models"), lab_matrix(clean)).columns.tolist() == COLUMNS
    """
    missing = [c for c in ANALYTE_CODES if c not in features.columns]
    if missing:
        raise ValueError(f"feature frame lacks analyte columns {missing}")
    if features.index.has_duplicates:
        raise ValueError("feature frame has duplicate patient ids")
    dev = resolve_device(device)
    ids = features.index.astype(str).to_numpy()
    parts = []
    for factor_set in FACTOR_SETS:
        inputs = inputs_for(factor_set)
        n_obs = features[inputs].notna().sum(axis=1).to_numpy()
        enough = n_obs >= min_observed(factor_set)
        for horizon in HORIZONS:
            model = bundle.models.get((factor_set, horizon), "model not in manifest")
            part = pd.DataFrame(
                {
                    "patient_id": ids,
                    "model": factor_set,
                    "horizon_days": horizon,
                    "probability": np.nan,
                    "calibrated_risk": np.nan,
                    "status": np.where(enough, "ok", "insufficient_inputs"),
                    "inputs_observed": n_obs.astype(int),
                    "inputs_expected": len(inputs),
                    "detail": np.where(
                        enough, "", f"fewer than {min_observed(factor_set)} inputs observed"
                    ).astype(object),
                }
            )
            if isinstance(model, str):
                part["status"] = "error"
                part["detail"] = model
            elif enough.any():
                p = _run(model, features.loc[enough], dev)
                part.loc[enough, "probability"] = p
                part.loc[enough, "calibrated_risk"] = model.calibrate(p)
                part.loc[enough, "detail"] = f"calibration: {model.calibration_method}"
            parts.append(part)
    out = pd.concat(parts, ignore_index=True)[COLUMNS]
    logger.info(
        "scored %d patients: %s", len(ids), out["status"].value_counts().to_dict()
    )
    return out


def _run(model: LoadedModel, frame: pd.DataFrame, device: torch.device) -> np.ndarray:
    if next(model.members[0].parameters()).device != device:
        model.to(device)
    return model.probabilities(frame, device)
