"""Stage 5b: why a patient's risk is what it is, by occlusion on the recommended model.

For each observed input of the patient's recommended model, the patient is scored again
with that one input *not measured* (the same path as the night: matrix.encode fills it
with the training median and clears its observed flag, then scoring.risks_for calibrates
and accumulates). Its contribution at horizon h is

    risk_h(all inputs as measured) - risk_h(this input not measured)

in calibrated risk (0.12 = 12 percentage points): positive when the measured value raised
the risk. Occlusion rather than gradients because it asks the model the question a
clinician asks ("what if this lab had not been done?"), in the units of the risk shown,
through the calibration and the missing-input handling the model was trained with; it is
exact for the model, not an approximation of it. Contributions are not additive: two labs
that say the same thing can each matter little alone.

Kept per patient and horizon: the `TOP_INPUTS` largest positive contributions, the labs
that raised the risk most. The report shows those of the longest horizon (the highest of
the cumulative risks, the one the alert rests on) as `LabLine`s, with when each value was
collected and the patient's previous result.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import torch

from prcrs_batch.modeling.device import resolve_device
from prcrs_batch.modeling.store import LoadedModel, ModelBundle
from prcrs_batch.nightly import scoring
from prcrs_batch.task.panel import BY_CODE, HORIZONS, inputs_for

logger = logging.getLogger(__name__)

TOP_INPUTS = 5  # per patient and horizon
PER_PASS = 1_000  # patients whose occluded copies are made at once (~35,000 rows: memory)
COLUMNS = [
    "patient_id",
    "model",
    "horizon_days",
    "rank",
    "analyte",
    "value",
    "unit",
    "contribution",
]


def explain(
    bundle: ModelBundle,
    features: pd.DataFrame,
    chosen: Mapping[str, str],
    device: str | torch.device = "auto",
) -> pd.DataFrame:
    """Top contributing inputs of each patient's model, one row per patient x horizon x rank.

    Args:
        bundle: the loaded models.
        features: as scoring.score takes it (patient_id index, 42 analyte columns).
        chosen: patient_id -> the model to explain (the recommended one).
        device: where the networks run.

    Returns:
        Rows with COLUMNS; `value` in the model's unit (`unit`), rank 1 = largest.

    >>> # explain(bundle, features, {"p1": "all"}).columns.tolist() == COLUMNS
    """
    dev = resolve_device(device)
    parts = []
    for model in dict.fromkeys(chosen.values()):
        patients = [p for p, m in chosen.items() if m == model and p in features.index]
        models = {
            h: m for h in HORIZONS if isinstance(m := bundle.models.get((model, h)), LoadedModel)
        }
        if patients and models:
            slices = [
                _explain_model(model, models, features.loc[patients[i : i + PER_PASS]], dev)
                for i in range(0, len(patients), PER_PASS)
            ]
            order = ["horizon_days", "patient_id", "rank"]  # as one pass would give them
            parts.append(pd.concat(slices).sort_values(order, kind="stable"))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
    logger.info("explained %d patients' risks (%d rows)", len(chosen), len(out))
    return out[COLUMNS]


def _explain_model(
    model: str, models: dict[int, LoadedModel], frame: pd.DataFrame, device: torch.device
) -> pd.DataFrame:
    inputs = inputs_for(model)
    values = frame[inputs].to_numpy(dtype=float)  # (N, L)
    row, column = np.nonzero(~np.isnan(values))  # one occluded copy per observed input
    occluded = values[row]
    occluded[np.arange(len(row)), column] = np.nan
    _, full = scoring.risks_for(models, frame[inputs], device)
    _, without = scoring.risks_for(models, pd.DataFrame(occluded, columns=inputs), device)
    contribution = full[row] - without  # (pairs, horizons)
    ids = frame.index.astype(str).to_numpy()
    parts = []
    for i, horizon in enumerate(HORIZONS):
        table = pd.DataFrame(
            {
                "patient_id": ids[row],
                "analyte": np.asarray(inputs)[column],
                "value": values[row, column],
                "contribution": contribution[:, i],
            }
        )
        table = table[table["contribution"] > 0].sort_values(
            ["patient_id", "contribution"], ascending=[True, False], kind="stable"
        )
        table["rank"] = table.groupby("patient_id").cumcount() + 1
        parts.append(table[table["rank"] <= TOP_INPUTS].assign(horizon_days=horizon))
    out = pd.concat(parts, ignore_index=True)
    out["model"] = model
    out["unit"] = out["analyte"].map({code: BY_CODE[code].unit for code in inputs})
    return out


@dataclass(frozen=True)
class LabLine:
    """One lab behind a patient's risk, as the report tells it."""

    analyte: str  # panel code
    name: str  # display name, e.g. IL-6
    value: float  # model unit
    unit: str
    collected_at: datetime | None
    previous_value: float | None  # the usable result before it in the lookback window
    previous_at: datetime | None
    contribution: float  # calibrated risk it added (0.12 = 12 points)
    horizon_days: int


def lab_lines(
    explained: pd.DataFrame, clean: pd.DataFrame, previous: pd.DataFrame
) -> dict[str, tuple[LabLine, ...]]:
    """patient_id -> the labs that raised the longest explained horizon's risk most, ranked.

    `clean` holds the values used (cleaning.clean_labs(..., latest_only=True)) and `previous`
    the results before them (cleaning.previous_results): both give collection times.
    """
    if explained.empty:
        return {}
    longest = explained.groupby("patient_id")["horizon_days"].transform("max")
    shown = explained[explained["horizon_days"] == longest].sort_values(["patient_id", "rank"])
    explained_ids = set(shown["patient_id"].astype(str))
    when = _by_key(clean[clean["patient_id"].astype(str).isin(explained_ids)])
    before = _by_key(previous[previous["patient_id"].astype(str).isin(explained_ids)])
    out: dict[str, list[LabLine]] = {}
    for pid, code, value, unit, contribution, horizon in shown[
        ["patient_id", "analyte", "value", "unit", "contribution", "horizon_days"]
    ].itertuples(index=False, name=None):
        key = (str(pid), str(code))
        prior = before.get(key)
        out.setdefault(str(pid), []).append(
            LabLine(
                analyte=str(code),
                name=BY_CODE[str(code)].display_name,
                value=float(value),
                unit=str(unit),
                collected_at=when[key][0] if key in when else None,
                previous_value=prior[1] if prior else None,
                previous_at=prior[0] if prior else None,
                contribution=float(contribution),
                horizon_days=int(horizon),
            )
        )
    return {pid: tuple(lines) for pid, lines in out.items()}


def _by_key(clean: pd.DataFrame) -> dict[tuple[str, str], tuple[datetime, float]]:
    """(patient_id, analyte) -> (collected_at, value), the newest where several."""
    if clean.empty:
        return {}
    newest = clean.sort_values("collected_at").drop_duplicates(
        ["patient_id", "analyte"], keep="last"
    )
    return {
        (str(p), str(a)): (pd.Timestamp(t).to_pydatetime(), float(v))
        for p, a, t, v in newest[["patient_id", "analyte", "collected_at", "value"]].itertuples(
            index=False, name=None
        )
    }
