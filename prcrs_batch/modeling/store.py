"""models/: write and load the 18 models (6 factor sets x 3 horizons) and manifest.json.

Layout:
- `prcrs_pretrained.safetensors`: the frozen COVID-19 pre-trained bodies (one per ensemble
  member), shared by all 18 models;
- `<factor_set>_h<horizon>.safetensors`: that model's fine-tuned heads (one per member);
- `manifest.json`: per model the inputs in order, units, fill values, normalisation, network
  config, calibration tables, CV metrics, and the SHA-256 of every weight file it needs;
  plus the pre-trained bodies' network config, training-data hashes, seed and code version.

In a weight file, ensemble member k's tensor `name` is stored as `member{k}.name`.

Weights are safetensors (no pickle). A model whose file is missing or whose checksum differs
is not loaded: `load_models` records an error for it and loads the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from prcrs_batch import __version__
from prcrs_batch.errors import SafeMessage, describe
from prcrs_batch.features import matrix
from prcrs_batch.modeling.calibration import apply_calibration
from prcrs_batch.modeling.device import one_thread_per_operation, resolve_device
from prcrs_batch.modeling.networks import PrCRS, PrCRSConfig, predict
from prcrs_batch.resources import SOURCE_ROOT
from prcrs_batch.task.panel import BY_CODE, min_observed

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
PRETRAINED_FILE = "prcrs_pretrained.safetensors"
FORMAT_VERSION = 1


class ModelChecksumError(SafeMessage, RuntimeError):
    """A weight file's SHA-256 differs from the manifest: the file is not the trained one."""


class ModelReproductionError(SafeMessage, RuntimeError):
    """A rebuilt model does not give the outputs recorded when it was trained."""


class ModelFileMissingError(SafeMessage, FileNotFoundError):
    """A weight file named in the manifest is not in the model directory."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_name(factor_set: str, horizon: int) -> str:
    return f"{factor_set}_h{horizon}"


def code_version() -> str:
    """Package version plus the git commit, when the code runs from a checkout."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=SOURCE_ROOT,
        )
        if rev.returncode == 0 and rev.stdout.strip():
            return f"{__version__}+g{rev.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return __version__


def _save(path: Path, tensors: dict[str, torch.Tensor]) -> str:
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))
    return sha256(path)


def load_weights(path: Path, expected_sha256: str) -> dict[str, torch.Tensor]:
    """Load a safetensors file after checking its SHA-256 against the manifest."""
    if not path.is_file():
        raise ModelFileMissingError(f"weight file {path} is missing")
    actual = sha256(path)
    if actual != expected_sha256:
        raise ModelChecksumError(
            f"weight file {path.name} has SHA-256 {actual[:12]}..., the manifest expects "
            f"{expected_sha256[:12]}...; refusing to load it (retrain or restore models/)"
        )
    return load_file(str(path))


def reference_inputs(n_inputs: int) -> tuple[np.ndarray, np.ndarray]:
    """Two fixed encoded rows: a reloaded model must reproduce its training-time output on them."""
    values = np.zeros((2, n_inputs), dtype=np.float32)
    values[1] = np.where(np.arange(n_inputs) % 2 == 0, 1.0, -1.0)
    observed = np.ones((2, n_inputs), dtype=bool)
    observed[1, ::3] = False
    return values, observed


def stack_members(states: Iterable[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One flat state dict for a weight file: member k's `name` becomes `member{k}.name`."""
    return {f"member{k}.{name}": t for k, state in enumerate(states) for name, t in state.items()}


def member_state(tensors: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Member k's tensors of a weight file, without the prefix (the inverse of stack_members)."""
    prefix = f"member{k}."
    return {n[len(prefix) :]: t for n, t in tensors.items() if n.startswith(prefix)}


def write_models(
    output_dir: Path,
    *,
    bodies: list[PrCRS],
    pretrain_info: list[dict[str, Any]],
    entries: list[dict[str, Any]],
    seed: int,
    train_config: dict[str, Any],
    data_info: dict[str, Any],
    train_seconds: float,
) -> dict[str, Any]:
    """Write weights and manifest.json; returns the manifest."""
    body_tensors = stack_members(  # what pre-training learned: all but the head and the scatter
        {n: t for n, t in b.state_dict().items() if not n.startswith(("head.", "scatter."))}
        for b in bodies
    )
    pretrained_sha = _save(output_dir / PRETRAINED_FILE, body_tensors)
    models = []
    for e in entries:
        name = model_name(e["factor_set"], e["horizon"])
        heads = stack_members(
            {n: t for n, t in m.state_dict().items() if n.startswith("head.")} for m in e["members"]
        )
        file = f"{name}.safetensors"
        stats: matrix.InputStats = e["input_stats"]
        models.append(
            {
                "name": name,
                "factor_set": e["factor_set"],
                "horizon": e["horizon"],
                "inputs": list(stats.inputs),
                "units": {c: BY_CODE[c].unit for c in stats.inputs},
                "min_observed": min_observed(e["factor_set"]),
                "input_stats": stats.to_dict(),
                "network": e["members"][0].config.to_dict(),
                "n_members": len(e["members"]),
                "weights": [
                    {"file": PRETRAINED_FILE, "sha256": pretrained_sha, "holds": "frozen bodies"},
                    {"file": file, "sha256": _save(output_dir / file, heads), "holds": "heads"},
                ],
                "reference_probabilities": [
                    round(float(p), 7)
                    for p in predict(e["members"], *reference_inputs(len(stats.inputs)))
                ],
                "calibration": e["calibration"],
                "thresholds": e["thresholds"],
                "cv_metrics": e["cv_metrics"],
                "n_rows": e["n_rows"],
                "n_positive": e["n_positive"],
                "n_patients": e["n_patients"],
            }
        )
    manifest = {
        "format": FORMAT_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "seed": seed,
        "train_config": train_config,
        "train_seconds": round(train_seconds, 1),
        "training_data": data_info,
        "pretraining": {
            "file": PRETRAINED_FILE,
            "sha256": pretrained_sha,
            "network": bodies[0].config.to_dict(),
            "members": pretrain_info,
        },
        "models": models,
    }
    (output_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


# ----------------------------------------------------------------------------- loading


@dataclass
class LoadedModel:
    """One (factor set, horizon) model ready to score: ensemble members + inputs + calibrator."""

    factor_set: str
    horizon: int
    inputs: list[str]
    stats: matrix.InputStats
    min_observed: int
    members: list[PrCRS]
    calibration: dict[str, Any]  # the default method's parameters
    calibration_method: str
    entry: dict[str, Any] = field(repr=False)

    def to(self, device: torch.device) -> LoadedModel:
        self.members = [m.to(device) for m in self.members]
        return self

    def probabilities(self, frame: pd.DataFrame, device: torch.device) -> np.ndarray:
        """Raw ensemble probability of severe CRS for every row of `frame`."""
        return predict(self.members, *matrix.encode(frame, self.stats), device)

    def calibrate(self, probabilities: np.ndarray) -> np.ndarray:
        return apply_calibration(self.calibration, probabilities)


@dataclass
class ModelBundle:
    """Everything load_models found: per (factor_set, horizon) a LoadedModel or an error."""

    model_dir: Path
    model_version: str  # first 12 hex digits of manifest.json's SHA-256
    device: torch.device
    manifest: dict[str, Any] = field(repr=False)
    models: dict[tuple[str, int], LoadedModel | str] = field(default_factory=dict)

    def errors(self) -> dict[tuple[str, int], str]:
        return {k: v for k, v in self.models.items() if isinstance(v, str)}


def _with_weights(
    model: PrCRS, state: dict[str, torch.Tensor], may_lack: tuple[str, ...] = ("scatter.",)
) -> PrCRS:
    """`model` in eval mode with `state` loaded; ValueError when they do not fit each other."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.startswith(may_lack)]
    if missing or unexpected:
        raise ValueError(
            f"weights do not fit the saved config: missing {missing}, extra {unexpected}"
        )
    return model.eval()


def _build_members(
    entry: dict[str, Any], bodies: dict[str, torch.Tensor], heads: dict[str, torch.Tensor]
) -> list[PrCRS]:
    config = PrCRSConfig.from_dict(entry["network"])
    return [
        _with_weights(PrCRS(config), member_state(bodies, k) | member_state(heads, k))
        for k in range(entry["n_members"])
    ]


def load_model(
    model_dir: Path, entry: dict[str, Any], device: torch.device, cache: dict | None = None
) -> LoadedModel:
    """Rebuild one model from its manifest entry; raises ModelChecksumError on a bad file."""
    cache = {} if cache is None else cache
    tensors = []
    for w in entry["weights"]:
        key = (w["file"], w["sha256"])
        if key not in cache:
            cache[key] = load_weights(Path(model_dir) / w["file"], w["sha256"])
        tensors.append(cache[key])
    members = _build_members(entry, tensors[0], tensors[1])
    expected = entry.get("reference_probabilities")
    if expected is not None:
        with one_thread_per_operation():
            got = predict(members, *reference_inputs(len(entry["inputs"])))
        if not np.allclose(got, expected, atol=1e-5):
            raise ModelReproductionError(
                f"model {entry.get('name')} rebuilt from its config does not reproduce its "
                f"training-time output ({got.round(6).tolist()} vs {expected})"
            )
    cal = entry["calibration"]
    return LoadedModel(
        factor_set=entry["factor_set"],
        horizon=int(entry["horizon"]),
        inputs=list(entry["inputs"]),
        stats=matrix.InputStats.from_dict(entry["input_stats"]),
        min_observed=int(entry["min_observed"]),
        members=members,
        calibration=cal[cal["default"]],
        calibration_method=cal["default"],
        entry=entry,
    ).to(device)


def pretraining_config(manifest: dict[str, Any]) -> PrCRSConfig:
    """The pre-trained bodies' network config, as `train` recorded it.

    A manifest written before it was recorded: the first model's config with the
    pre-training head and readout (3 classes, mean pool); the body's weights do not depend
    on the fields that differ (input slots).
    """
    pre = manifest["pretraining"]
    if "network" in pre:
        return PrCRSConfig.from_dict(pre["network"])
    return PrCRSConfig.from_dict(
        manifest["models"][0]["network"] | {"n_classes": 3, "readout": "mean"}
    )


def load_bodies(model_dir: Path | str) -> list[PrCRS]:
    """The COVID-19 pre-trained bodies in model_dir (checksum verified); heads not saved."""
    manifest, _ = read_manifest(model_dir)
    pre = manifest["pretraining"]
    tensors = load_weights(Path(model_dir) / pre["file"], pre["sha256"])
    config = pretraining_config(manifest)
    return [
        _with_weights(PrCRS(config), member_state(tensors, k), ("head.", "scatter."))
        for k in range(len(pre["members"]))
    ]


def read_manifest(model_dir: Path | str) -> tuple[dict[str, Any], str]:
    """The manifest and the model version (short SHA-256 of its bytes)."""
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        raise ModelFileMissingError(f"no {MANIFEST} in {model_dir}: run `prcrs-batch train` first")
    raw = path.read_bytes()
    return json.loads(raw), hashlib.sha256(raw).hexdigest()[:12]


def load_models(model_dir: Path | str, device: str | torch.device = "auto") -> ModelBundle:
    """Load every model in the manifest; a model that cannot load carries its error message."""
    manifest, version = read_manifest(model_dir)
    if manifest.get("train_config", {}).get("quick"):
        logger.warning(
            "the models in %s were trained with --quick settings (for tests): "
            "their risks mean nothing clinically",
            model_dir,
        )
    dev = resolve_device(device)
    bundle = ModelBundle(Path(model_dir), version, dev, manifest)
    cache: dict = {}
    for entry in manifest["models"]:
        key = (entry["factor_set"], int(entry["horizon"]))
        try:
            bundle.models[key] = load_model(Path(model_dir), entry, dev, cache)
        except (
            ModelChecksumError,
            ModelFileMissingError,
            ModelReproductionError,
            ValueError,
            KeyError,
        ) as exc:
            why = describe(exc, values=True)  # about model files: no patient data
            bundle.models[key] = why
            logger.error("model %s not loaded: %s", entry.get("name", key), why)
    logger.info(
        "loaded %d of %d models (version %s) on %s",
        len(bundle.models) - len(bundle.errors()),
        len(manifest["models"]),
        version,
        dev,
    )
    return bundle
