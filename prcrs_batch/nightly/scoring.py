"""Score every patient with every loaded model: 6 factor sets x 3 horizons, keyed by patient id.

Each model runs over the cohort in fixed-size chunks (`chunk_rows`), in inference mode. A
patient already severe gets status 'already_severe' (not a warning to give); one with fewer
observed inputs than the factor set's minimum gets 'insufficient_inputs'; both have NULL
risks. A model that failed to load gives status 'error' with its message in `detail`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import torch

from prcrs_batch.features.matrix import encode
from prcrs_batch.modeling.calibration import cumulative
from prcrs_batch.modeling.device import one_thread_per_operation, resolve_device
from prcrs_batch.modeling.fused import FusedEnsemble
from prcrs_batch.modeling.networks import PrCRS, ensemble_probability
from prcrs_batch.modeling.store import LoadedModel, ModelBundle
from prcrs_batch.task.panel import (
    ANALYTE_CODES,
    FACTOR_SETS,
    HORIZONS,
    inputs_for,
    min_observed,
    scorable,
)

logger = logging.getLogger(__name__)

CHUNK_ROWS = {"cpu": 64, "cuda": 16384}  # by device type; measured, see chunk_rows
FUSED = True  # CPU: fused.FusedEnsemble; False: the networks as trained (the reference)

SEVERE_DETAIL = "CRS grade >= 3 on or before the as-of date: not scored as a warning"

COLUMNS = [
    "patient_id",
    "model",
    "horizon_days",
    "probability",
    "calibrated_risk",
    "status",
    "inputs_observed",
    "inputs_expected",
    "detail",
]


def score(
    bundle: ModelBundle,
    features: pd.DataFrame,
    device: str | torch.device = "auto",
    already_severe: Collection[str] = (),
) -> pd.DataFrame:
    """One row per patient x factor set x horizon.

    `features` is indexed by patient_id and holds the 42 analyte columns in model units
    (NaN = missing), as matrix.lab_matrix returns them. Patients in `already_severe`
    (latest CRS grade >= 3, panel.already_severe) get status `already_severe` and no risk.
    A factor set's calibrated risks are cumulative over the horizons (calibration.cumulative):
    the risk of onset within 2 days is never below that within 1 day.

    >>> # score(load_models("models"), lab_matrix(clean)).columns.tolist() == COLUMNS
    """
    missing = [c for c in ANALYTE_CODES if c not in features.columns]
    if missing:
        raise ValueError(f"feature frame lacks analyte columns {missing}")
    if features.index.has_duplicates:
        raise ValueError("feature frame has duplicate patient ids")
    dev = resolve_device(device)
    ids = features.index.astype(str).to_numpy()
    severe = np.isin(ids, np.asarray(list(already_severe), dtype=str))
    parts = []
    for factor_set in FACTOR_SETS:
        inputs = inputs_for(factor_set)
        n_obs = features[inputs].notna().sum(axis=1).to_numpy()
        enough = scorable(n_obs, factor_set) & ~severe
        models = {h: bundle.models.get((factor_set, h), "model not in manifest") for h in HORIZONS}
        ready = {h: m for h, m in models.items() if not isinstance(m, str)}
        raw, risks = risks_for(ready, features.loc[enough], dev)
        status = np.where(enough, "ok", "insufficient_inputs").astype(object)
        detail = np.where(
            enough, "", f"fewer than {min_observed(factor_set)} inputs observed"
        ).astype(object)
        status[severe], detail[severe] = "already_severe", SEVERE_DETAIL
        for i, horizon in enumerate(HORIZONS):
            part = pd.DataFrame(
                {
                    "patient_id": ids,
                    "model": factor_set,
                    "horizon_days": horizon,
                    "probability": np.nan,
                    "calibrated_risk": np.nan,
                    "status": status.copy(),  # each part its own: they are edited below
                    "inputs_observed": n_obs.astype(int),
                    "inputs_expected": len(inputs),
                    "detail": detail.copy(),
                }
            )
            model = models[horizon]
            if isinstance(model, str):
                part.loc[~severe, "status"] = "error"
                part.loc[~severe, "detail"] = model
            elif enough.any():
                part.loc[enough, "probability"] = raw[horizon]
                part.loc[enough, "calibrated_risk"] = risks[:, i]
                part.loc[enough, "detail"] = f"calibration: {model.calibration_method}"
            parts.append(part)
    out = pd.concat(parts, ignore_index=True)[COLUMNS]
    logger.info("scored %d patients: %s", len(ids), out["status"].value_counts().to_dict())
    return out


def risks_for(
    models: dict[int, LoadedModel], frame: pd.DataFrame, device: torch.device
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """One factor set's raw probabilities per horizon and its calibrated, cumulative risks
    (N, len(HORIZONS)) for the rows of `frame`; NaN columns for horizons without a model.

    The one path from feature rows to risks: `score` and explanations.py both use it.
    """
    raw = probabilities(models, frame, device) if len(frame) else {}
    calibrated = [
        models[h].calibrate(raw[h]) if h in raw else np.full(len(frame), np.nan) for h in HORIZONS
    ]
    return raw, cumulative(np.column_stack(calibrated))


def _shares_body(a: LoadedModel, b: LoadedModel) -> bool:
    """Same inputs, same normalisation and the same frozen body weights (by SHA-256)."""
    return (
        a.stats == b.stats
        and len(a.members) == len(b.members)
        and a.entry["weights"][0]["sha256"] == b.entry["weights"][0]["sha256"]
    )


def chunk_rows(device: torch.device) -> int:
    """Rows per forward pass on `device` (CHUNK_ROWS; scripts/bench_scoring.py measures them).

    Fixed-size chunks keep time per patient and peak memory flat in the cohort's size: a
    20,000-row pass over the whole cohort ran at half the speed of 1,024-row chunks, and the
    fused CPU path is fastest on chunks small enough to stay in the CPU's cache.
    """
    return CHUNK_ROWS.get(device.type, CHUNK_ROWS["cpu"])


def workers(device: torch.device) -> int:
    """CPU chunks scored at once: torch's thread count (device.set_torch_threads), each
    worker running its operations on one thread; the GPU takes one chunk at a time."""
    return max(1, torch.get_num_threads()) if device.type == "cpu" else 1


def probabilities(
    models: dict[int, LoadedModel], frame: pd.DataFrame, device: torch.device
) -> dict[int, np.ndarray]:
    """Each horizon's ensemble probability for the rows of `frame`, in chunks of
    `chunk_rows(device)` rows, `workers(device)` chunks at a time.

    A factor set's horizons share their frozen bodies: when they also share the inputs'
    normalisation, the body runs once per ensemble member and only the heads run per
    horizon (a third of the work of running the 3 models apart). On the CPU, with FUSED,
    the members run side by side as fused.FusedEnsemble (the same function in fewer,
    larger operations: tests/test_scoring.py holds it to the plain networks within 1e-6).
    """
    out: dict[int, np.ndarray] = {}
    pending = dict(models)
    while pending:
        first = next(iter(pending.values()))
        group = {h: m for h, m in pending.items() if _shares_body(first, m)}
        for h in group:
            del pending[h]
            if next(group[h].members[0].parameters()).device != device:
                group[h].to(device)
        both = (
            _in_chunks(_runner(group, device), *encode(frame, first.stats), device)
            if len(frame)
            else np.zeros((len(group), 0))
        )
        out.update({h: both[i] for i, h in enumerate(group)})
    return out


def _in_chunks(
    run: Callable[[torch.Tensor, torch.Tensor], np.ndarray],
    values: np.ndarray,
    observed: np.ndarray,
    device: torch.device,
) -> np.ndarray:
    """`run` over the rows in chunks, `workers(device)` at a time; (horizons, rows)."""
    step = chunk_rows(device)

    @torch.inference_mode()  # per thread: each worker enters it itself
    def chunk(start: int) -> np.ndarray:
        v = torch.from_numpy(values[start : start + step]).to(device)
        o = torch.from_numpy(observed[start : start + step]).to(device)
        return run(v, o)

    starts = range(0, len(values), step)
    n_workers = min(workers(device), len(starts))
    if n_workers > 1:
        with one_thread_per_operation(), ThreadPoolExecutor(n_workers) as pool:
            parts = list(pool.map(chunk, starts))
    else:
        parts = [chunk(start) for start in starts]
    return np.concatenate(parts, axis=1)


def _runner(
    group: dict[int, LoadedModel], device: torch.device
) -> Callable[[torch.Tensor, torch.Tensor], np.ndarray]:
    """(values, observed) -> (horizons of `group`, rows) float64 probabilities."""
    members = [m.members for m in group.values()]
    if FUSED and device.type == "cpu" and all(isinstance(m, PrCRS) for m in members[0]):
        fused = FusedEnsemble(members)
        return lambda v, o: fused.probabilities(v, o).double().numpy()
    bodies = members[0]

    def plain(v: torch.Tensor, o: torch.Tensor) -> np.ndarray:
        read = [body.features(v, o) for body in bodies]  # each frozen body once
        return np.stack(
            [ensemble_probability(m.head(x) for m, x in zip(ms, read)) for ms in members]
        )

    return plain
