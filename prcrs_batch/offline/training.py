"""Offline training: pre-train on COVID-19, fine-tune on CAR-T, calibrate, write models/.

The procedure for one (factor set, horizon) model, identical in cross-validation and for the
shipped model, so that the CV figures describe what ships:

1. Pre-train `n_members` PrCRS networks on the COVID-19 cohort (3-class maximum severity),
   over the 42-slot panel with the analytes COVID-19 lacks marked "not observed"; random
   extra masking teaches the body that inputs go missing. Done once: no CAR-T data involved.
2. Fine-tune: the embedding and the whole Squeezeformer U-Net body stay frozen (as in the
   paper); the factor set's inputs, median-filled/standardised by matrix.encode with
   statistics of the training patients' scorable rows, go through the body, and its "skip"
   readout (networks.py: mean and max pool + the inputs and their mask) feeds a new 2-class
   head (two linear layers), trained with early stopping on a patient-grouped inner
   validation split.
3. The ensemble's probability is the mean over members (networks.ensemble_probability).
4. Out-of-fold predictions from patient-grouped stratified 5-fold CV (cv.out_of_fold, the
   loop evaluation.py uses too) choose and fit each horizon's calibrator (calibration.py)
   and give the CV metrics stored in the manifest: raw, and calibrated then made cumulative
   across the horizons, as the nightly job reports them.

The target is onset of severe CRS within h days among patient-days not yet severe
(task.target.horizon_label). Only patient-days the nightly job would score (not already severe,
panel.scorable) with a label for the horizon are used for fine-tuning. Every random draw
comes from a scope seeded explicitly (`seeded`), so a result never depends on what ran
before it.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from prcrs_batch.features import matrix
from prcrs_batch.modeling import calibration, device, store
from prcrs_batch.modeling.networks import PrCRS, PrCRSConfig, build, predict, slots_for
from prcrs_batch.monitoring import drift
from prcrs_batch.offline import cv, datasets
from prcrs_batch.task import thresholds
from prcrs_batch.task.metrics import binary_metrics
from prcrs_batch.task.panel import ANALYTE_CODES, FACTOR_SETS, HORIZONS

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    n_members: int = 5  # ensemble over pre-training/fine-tuning seeds
    n_folds: int = 5  # patient-grouped CV for out-of-fold calibration and metrics
    d_model: int = 32
    dropout: float = 0.1
    lr: float = 1e-3  # Adam, as published
    weight_decay: float = 1e-4
    pretrain_epochs: int = 30
    pretrain_batch: int = 128
    pretrain_mask_rate: float = 0.15  # extra inputs hidden at random during pre-training
    head_epochs: int = 150  # upper bound; early stopping picks the epoch (paper: up to 150)
    head_batch: int = 32
    patience: int = 15  # epochs without a better validation loss before stopping
    net_epochs: int = 30  # full-network training (from scratch, CNN, Transformer)
    net_batch: int = 64
    net_patience: int = 5
    threads: int = 1  # small tensors: one thread avoids OpenMP spin under CPU contention

    @classmethod
    def quick(cls) -> TrainConfig:
        return cls(
            n_members=1,
            n_folds=2,
            d_model=16,
            pretrain_epochs=1,
            head_epochs=3,
            net_epochs=2,
            patience=2,
            net_patience=1,
        )


@contextmanager
def seeded(seed: int) -> Iterator[torch.Generator]:
    """A scope whose random draws depend on `seed` alone; the caller's state is restored after.

    Module initialisation and dropout draw from torch's global CPU generator, so it is
    forked and seeded here (CPU only: training runs on the CPU); the yielded generator,
    seeded alike, drives batch order and masking. numpy's global generator is not used.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(seed))
        yield torch.Generator().manual_seed(int(seed))


# ----------------------------------------------------------------------------- fitting


def _fit(
    model: nn.Module,
    tensors: tuple[torch.Tensor, ...],
    y: np.ndarray,
    val: np.ndarray,
    schedule: tuple[int, int, int],
    cfg: TrainConfig,
    generator: torch.Generator,
    forward: Any = None,
) -> tuple[dict[str, Any], int]:
    """Adam + cross-entropy, mini-batches, best epoch by validation loss (restored at the end).

    `schedule` is (max epochs, batch size, patience). `forward(*batch_tensors) -> logits`
    defaults to `model`, whose parameters are trained and whose best state is kept.
    """
    epochs, batch, patience = schedule
    forward = forward or model
    target = torch.as_tensor(np.array(y), dtype=torch.long)
    tr_idx = torch.as_tensor(np.flatnonzero(~val))
    va_idx = torch.as_tensor(np.flatnonzero(val))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best, best_epoch, best_state, stale = float("inf"), 0, None, 0
    for epoch in range(epochs):
        model.train()
        order = tr_idx[torch.randperm(len(tr_idx), generator=generator)]
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            loss = F.cross_entropy(forward(*(t[idx] for t in tensors)), target[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            if len(va_idx):
                vl = F.cross_entropy(forward(*(t[va_idx] for t in tensors)), target[va_idx]).item()
            else:
                vl = float(epoch == epochs - 1)
        if vl < best - 1e-5:
            best, best_epoch, stale = vl, epoch + 1, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return {"best_val_loss": best}, best_epoch


def pretrain(covid: pd.DataFrame, seed: int, cfg: TrainConfig) -> tuple[PrCRS, dict[str, Any]]:
    """Pre-train one PrCRS on COVID-19 max severity (3 classes) over the 42-slot panel."""
    inputs = [c for c in ANALYTE_CODES if covid[c].notna().any()]
    stats = matrix.fit_input_stats(covid, inputs)
    values, observed = matrix.encode(covid, stats)
    config = PrCRSConfig(
        input_slots=slots_for(inputs),
        n_classes=3,
        d_model=cfg.d_model,
        dropout=cfg.dropout,
        readout="mean",
    )
    y = covid["max_severity"].to_numpy(dtype=int)
    v, o = torch.from_numpy(values), torch.from_numpy(observed)
    with seeded(seed) as gen:
        model = PrCRS(config)
        _, val = cv.inner_split(covid["subject_id"].to_numpy(), (y == 2).astype(int), seed)

        def forward(vb: torch.Tensor, ob: torch.Tensor) -> torch.Tensor:
            if model.training and cfg.pretrain_mask_rate > 0:
                keep = torch.rand(ob.shape, generator=gen) >= cfg.pretrain_mask_rate
                ob = ob & keep
            return model(vb, ob)

        schedule = (cfg.pretrain_epochs, cfg.pretrain_batch, cfg.patience)
        info, epoch = _fit(model, (v, o), y, val, schedule, cfg, gen, forward)
    with torch.no_grad():
        acc = (model(v[val], o[val]).argmax(1).numpy() == y[val]).mean()
    info.update(best_epoch=epoch, val_accuracy=float(acc), inputs=inputs, seed=seed)
    logger.info("pre-trained member seed=%d: epoch %d, val accuracy %.3f", seed, epoch, acc)
    return model, info


def transfer_model(body: PrCRS, inputs: list[str], readout: str = "skip") -> PrCRS:
    """A 2-class PrCRS for `inputs` carrying `body`'s frozen weights and a fresh head."""
    config = replace(body.config, input_slots=slots_for(inputs), n_classes=2, readout=readout)
    model = PrCRS(config)
    state = {k: v for k, v in body.state_dict().items() if not k.startswith(("head.", "scatter."))}
    missing, _ = model.load_state_dict(state, strict=False)
    assert all(k.startswith(("head.", "scatter.")) for k in missing), missing
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("head.")
    model.eval()
    return model


def member_seed(seed: int, k: int) -> int:
    """The seed of ensemble member k of a fit seeded `seed`: its head's initial weights and
    training. Every ensemble of heads uses it, so the first k members of one fit are the
    k-member ensemble.

    >>> member_seed(0, 4), member_seed(3, 0)
    (4, 3000)
    """
    return seed * 1000 + k


def fit_transfer(
    bodies: list[PrCRS],
    values: np.ndarray,
    observed: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    inputs: list[str],
    seed: int,
    cfg: TrainConfig,
    readout: str = "skip",
) -> list[PrCRS]:
    """Fine-tune one head per pre-trained body (frozen), on the body's readout.

    Member k's head starts from, and trains with, `member_seed(seed, k)`.
    """
    members = []
    v, o = torch.from_numpy(values), torch.from_numpy(observed)
    for k, body in enumerate(bodies):
        with seeded(member_seed(seed, k)):  # the fresh head's initial weights
            model = transfer_model(body, inputs, readout)
        with torch.no_grad():
            read = model.features(v, o)  # frozen body in eval mode
        fit_head(model.head, read, y, groups, member_seed(seed, k), cfg)
        members.append(model.eval())
    return members


def fit_head(
    head: nn.Module,
    read: torch.Tensor,
    y: np.ndarray,
    groups: np.ndarray,
    seed: int,
    cfg: TrainConfig,
) -> nn.Module:
    """Train a classifier head on fixed features `read` (N, F), early-stopped on an inner split."""
    with seeded(seed) as gen:
        _, val = cv.inner_split(groups, y, seed)
        _fit(head, (read,), y, val, (cfg.head_epochs, cfg.head_batch, cfg.patience), cfg, gen)
    return head.eval()


def fit_network(
    arch: str,
    values: np.ndarray,
    observed: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    inputs: list[str],
    seed: int,
    cfg: TrainConfig,
) -> nn.Module:
    """Train a whole network (PrCRS from scratch, CNN or Transformer) on CAR-T rows."""
    config = PrCRSConfig(
        arch=arch, input_slots=slots_for(inputs), d_model=cfg.d_model, dropout=cfg.dropout
    )
    tensors = (torch.from_numpy(values), torch.from_numpy(observed))
    schedule = (cfg.net_epochs, cfg.net_batch, cfg.net_patience)
    with seeded(seed) as gen:
        model = build(config)
        _, val = cv.inner_split(groups, y, seed)
        _fit(model, tensors, y, val, schedule, cfg, gen)
    return model


def transfer(bodies: list[PrCRS], cfg: TrainConfig, readout: str = "skip") -> cv.FitPredict:
    """The shipped procedure as a CV method: fine-tune the heads on `train`, predict `test`."""

    def fit_predict(
        train: pd.DataFrame,
        test: pd.DataFrame,
        stats: matrix.InputStats,
        horizon: int,
        seed: int,
    ) -> np.ndarray:
        a = cv.FoldArrays.of(train, test, stats, horizon)
        members = fit_transfer(
            bodies, a.values, a.observed, a.y, a.groups, stats.inputs, seed, cfg, readout
        )
        return predict(members, a.test_values, a.test_observed)

    return fit_predict


# ----------------------------------------------------------------------------- the job


def chosen_thresholds(data: cv.FoldedRows, shipped: np.ndarray) -> dict[str, Any]:
    """The alert and watch thresholds of one factor set's models, by thresholds.py's rules
    on its out-of-fold cumulative risks (`shipped`, one column per horizon)."""
    rows = data.rows[["patient_id", "day"]].assign(
        risk=shipped[:, -1], y1=data.y(HORIZONS[0]), y_last=data.y(max(HORIZONS))
    )
    onsets = [thresholds.OnsetRisks.of(rows)]
    alert = thresholds.alert_threshold(onsets)
    return {
        "alert": alert,
        "watch": thresholds.watch_threshold(onsets, alert),
        "onsets": len(onsets[0].night_before),
        "rule": "prcrs_batch/task/thresholds.py, on the out-of-fold risks of cv_metrics",
    }


def train(
    output_dir: Path | str,
    seed: int = 0,
    quick: bool = False,
    *,
    cohort_path: Path | None = None,
    covid_path: Path | None = None,
    factor_sets: list[str] | None = None,
) -> dict[str, Any]:
    """Pre-train, fine-tune, calibrate and write the 18 models + manifest.json to output_dir.

    Returns the manifest. `quick` shrinks everything for tests (seconds, not minutes).
    """
    cfg = TrainConfig.quick() if quick else TrainConfig()
    device.set_torch_threads(cfg.threads)
    started = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    frame = datasets.training_frame(cohort_path)
    covid = datasets.covid_frame(covid_path)
    sets = factor_sets or list(FACTOR_SETS)
    total = cfg.n_members + len(sets) * len(HORIZONS)
    bar = tqdm(total=total, desc="prcrs train", unit="step")
    bodies, pretrain_info = [], []
    for k in range(cfg.n_members):
        body, info = pretrain(covid, seed + k, cfg)
        bodies.append(body)
        pretrain_info.append(info)
        bar.update(1)
    folds = cv.patient_folds(frame, cfg.n_folds, seed)
    method = transfer(bodies, cfg)
    entries: list[dict[str, Any]] = []
    for factor_set in sets:
        stats = cv.fit_set_stats(frame, factor_set)
        data = cv.FoldedRows.select(frame, folds, factor_set)
        oof = {h: cv.out_of_fold(data, method, h, seed) for h in HORIZONS}
        choices = {
            h: calibration.choose_cross_fitted(oof[h], data.y(h), data.folds) for h in HORIZONS
        }
        shipped = calibration.cumulative(np.column_stack([choices[h].calibrated for h in HORIZONS]))
        tiers = chosen_thresholds(data, shipped)
        for i, horizon in enumerate(HORIZONS):
            bar.set_postfix_str(f"{factor_set} h{horizon}")
            labelled = data.labelled(horizon)
            rows, y, p = data.rows[labelled], data.y(horizon)[labelled].astype(int), oof[horizon]
            v, o = matrix.encode(rows, stats)
            groups = rows["patient_id"].to_numpy()
            members = fit_transfer(bodies, v, o, y, groups, stats.inputs, seed + 100, cfg)
            entries.append(
                {
                    "factor_set": factor_set,
                    "horizon": horizon,
                    "members": members,
                    "input_stats": stats,
                    "calibration": {
                        "default": choices[horizon].method,
                        "comparison": choices[horizon].comparison,
                        **{m: calibration.fit(m, p[labelled], y) for m in calibration.METHODS},
                    },
                    "thresholds": tiers,
                    "cv_metrics": {
                        # at the model's own alert threshold, chosen on these same rows
                        "raw": binary_metrics(y, p[labelled], tiers["alert"]),
                        "calibrated": binary_metrics(y, shipped[labelled, i], tiers["alert"]),
                        "n_folds": cfg.n_folds,
                        "fold_seed": seed,
                    },
                    "n_rows": int(len(y)),
                    "n_positive": int(y.sum()),
                    "n_patients": int(rows["patient_id"].nunique()),
                }
            )
            logger.info(
                "%s h%d: CV AUROC %.3f raw, %.3f shipped; calibrated ECE %.3f (%s)",
                factor_set,
                horizon,
                entries[-1]["cv_metrics"]["raw"]["auroc"],
                entries[-1]["cv_metrics"]["calibrated"]["auroc"],
                entries[-1]["cv_metrics"]["calibrated"]["ece"],
                choices[horizon].method,
            )
            bar.update(1)
    bar.close()
    seconds = time.perf_counter() - started
    manifest = store.write_models(
        output_dir,
        bodies=bodies,
        pretrain_info=pretrain_info,
        entries=entries,
        seed=seed,
        train_config=asdict(cfg) | {"quick": quick},
        data_info=datasets.fingerprint(frame, cohort_path, covid_path)
        | {"input_reference": drift.reference(frame)},
        train_seconds=seconds,
    )
    logger.info("trained %d models in %.0f s -> %s", len(entries), seconds, output_dir)
    return manifest
