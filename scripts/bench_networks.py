"""Time the scoring stage's forward passes alone: every model's networks, random weights.

The architecture comes from models/manifest.json (each model's network config and
number of ensemble members), or PrCRSConfig's defaults with DEFAULT_MEMBERS members for
each factor set and horizon when there is no manifest. No database, no data: a floor for
the `score` stage, and a way to time it on another device. Needs torch and the package
only. scripts/benchmark.py --networks-only prints the result.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from prcrs_batch.modeling.networks import PrCRSConfig, build
from prcrs_batch.task.panel import ANALYTE_CODES, FACTOR_SETS, HORIZONS

DEFAULT_MEMBERS = 3


@dataclass
class ModelSpec:
    name: str
    config: PrCRSConfig
    members: int
    n_inputs: int


@dataclass
class NetworkTimings:
    source: str  # where the architecture came from
    device: str  # e.g. "cpu, 2 threads" or "cuda (NVIDIA H200)"
    torch_version: str
    rows: int  # patients per model
    n_models: int
    forwards: int  # forward passes per repeat: models x members
    seconds: list[float]  # one per repeat

    @property
    def scores_per_second(self) -> float:
        return self.n_models * self.rows / min(self.seconds)


def model_specs(model_dir: Path) -> tuple[list[ModelSpec], str]:
    """The models to time and a line saying where their architecture came from."""
    manifest = model_dir / "manifest.json"
    if manifest.is_file():
        entries = json.loads(manifest.read_text())["models"]
        specs = [
            ModelSpec(
                e["name"], PrCRSConfig.from_dict(e["network"]), e["n_members"], len(e["inputs"])
            )
            for e in entries
        ]
        return specs, f"{manifest} ({len(specs)} models)"
    specs = [
        ModelSpec(f"{factor_set}_h{h}", PrCRSConfig(), DEFAULT_MEMBERS, len(ANALYTE_CODES))
        for factor_set in FACTOR_SETS
        for h in HORIZONS
    ]
    return specs, (
        f"PrCRSConfig defaults, {len(specs)} models x {DEFAULT_MEMBERS} members (no manifest.json)"
    )


def time_forward_passes(
    patients: int, model_dir: Path, device: str, repeats: int = 3
) -> NetworkTimings:
    """Run every model's members over `patients` random rows, `repeats` times, after a warm-up.

    >>> time_forward_passes(10, Path("models"), "cpu", repeats=1).forwards  # doctest: +SKIP
    90
    """
    specs, source = model_specs(model_dir)
    dev = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    models = []
    for spec in specs:
        nets = [build(spec.config).eval().to(dev) for _ in range(spec.members)]
        values = torch.randn(patients, spec.n_inputs, generator=generator).to(dev)
        observed = (torch.rand(patients, spec.n_inputs, generator=generator) > 0.3).to(dev)
        models.append((nets, values, observed))
    seconds = []
    with torch.inference_mode():
        for nets, values, observed in models:  # warm-up: kernels, allocator, oneDNN
            for net in nets:
                net(values[:64], observed[:64])
        _sync(dev)
        for _ in range(repeats):
            start = time.perf_counter()
            for nets, values, observed in models:
                for net in nets:
                    torch.softmax(net(values, observed), dim=1)[:, 1].cpu()
            _sync(dev)
            seconds.append(time.perf_counter() - start)
    if dev.type == "cuda":
        described = f"{device} ({torch.cuda.get_device_name(dev)})"
    else:
        described = f"{device}, {torch.get_num_threads()} threads"
    return NetworkTimings(
        source=source,
        device=described,
        torch_version=torch.__version__,
        rows=patients,
        n_models=len(models),
        forwards=sum(len(nets) for nets, _, _ in models),
        seconds=seconds,
    )


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()
