"""Time `scoring.score` alone on synthetic patients: chunk sizes, and how it scales.

    .venv/bin/python scripts/bench_scoring.py chunks --patients 20000 --chunks 256,1024,4096
    .venv/bin/python scripts/bench_scoring.py scale --patients 1000,2000,20000,100000
    .venv/bin/python scripts/bench_scoring.py scale --patients 2000,20000 --device cuda
    .venv/bin/python scripts/bench_scoring.py paths --patients 10000 --threads 2
    .venv/bin/python scripts/bench_scoring.py floor --patients 10000 --explained 2000

Patients are development-cohort days resampled with noise (the shipped models, no
database): this times the scoring path, not the model.

- `chunks`: one process; every chunk size in turn (scoring.CHUNK_ROWS replaced), the sizes
  interleaved and repeated, best of `--repeats`: how scoring.CHUNK_ROWS was chosen.
- `paths`: one process; the plain networks (scoring.FUSED off, 1,024-row chunks, one chunk
  at a time with torch's own threads: the path before issue 15) against the current
  default, interleaved, best of `--repeats`, wall-clock and CPU seconds: what the fused CPU
  path and the parallel chunks gain.
- `scale`: each cohort size in a fresh child process (so that its peak RSS is its own),
  models loaded and one warm-up pass before the clock starts; prints seconds, microseconds
  per patient, the ratio to the first size's, and the child's peak RSS.
- `floor`: the arithmetic a night asks of the CPU. Matrix-product FLOPs per patient of
  each factor set's fused ensemble (torch's FlopCounterMode: products and attention only,
  so a lower bound), for scoring `--patients` patients and for explaining the first
  `--explained` of them on `all` (one re-scored row per observed input); the seconds both
  take (scoring.score, explanations.explain), the GFLOP/s that is, and this machine's
  float32 matrix-product peak (2,048 x 2,048, best of 5): the time below which that
  arithmetic cannot go on this CPU.

`--threads N` sets torch's CPU threads (device.set_torch_threads; 0 = torch's default).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # also when run by a Python without the package installed

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def synthetic_features(n: int, seed: int = 0) -> pd.DataFrame:
    """`n` development-cohort days resampled with 5 % log-normal noise, indexed SYN-000000..."""
    from prcrs_batch.resources import bundled_data
    from prcrs_batch.task.panel import ANALYTE_CODES

    rng = np.random.default_rng(seed)
    raw = pd.read_csv(bundled_data("cart_dev.csv"))[list(ANALYTE_CODES)].astype(float)
    rows = raw.iloc[rng.integers(0, len(raw), n)].to_numpy()
    rows = rows * rng.lognormal(0.0, 0.05, rows.shape)
    features = pd.DataFrame(rows, columns=list(ANALYTE_CODES))
    features.index = pd.Index([f"SYN-{i:06d}" for i in range(n)], name="patient_id")
    return features


def _load(args: argparse.Namespace):
    from prcrs_batch.modeling import device, store

    device.set_torch_threads(args.threads)
    return store.load_models(args.model_dir, args.device)


def _timed_score(bundle, features: pd.DataFrame, device: str) -> float:
    import torch

    from prcrs_batch.nightly import scoring

    start = time.perf_counter()
    scoring.score(bundle, features, device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def chunks(args: argparse.Namespace) -> None:
    import torch

    from prcrs_batch.nightly import scoring

    bundle = _load(args)
    n = args.patients[0]
    features = synthetic_features(n)
    kind = torch.device(args.device).type
    scoring.score(bundle, features.iloc[:256], args.device)  # warm-up
    seconds: dict[int, list[float]] = {c: [] for c in args.chunks}
    for _ in range(args.repeats):
        for size in args.chunks:
            scoring.CHUNK_ROWS[kind] = size
            seconds[size].append(_timed_score(bundle, features, args.device))
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{n:,} patients, {n * 18:,} scores; best of {args.repeats}, sizes interleaved\n")
    print("| rows per chunk | best s | patients/s | all s |\n|---:|---:|---:|---|")
    for size, times in seconds.items():
        best = min(times)
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(f"| {size:,} | {best:.2f} | {n / best:,.0f} | {runs} |")


def paths(args: argparse.Namespace) -> None:
    import torch

    from prcrs_batch.nightly import scoring

    bundle = _load(args)
    n = args.patients[0]
    features = synthetic_features(n)
    default = (scoring.FUSED, scoring.CHUNK_ROWS["cpu"], scoring.workers)
    variants = {
        "plain networks, 1,024-row chunks, torch threads": (False, 1024, lambda device: 1),
        f"default: fused, {default[1]}-row chunks, parallel chunks": default,
    }
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, (fused, rows, workers) in variants.items():
            scoring.FUSED, scoring.CHUNK_ROWS["cpu"], scoring.workers = fused, rows, workers
            scoring.score(bundle, features.iloc[:256], args.device)  # warm-up
            cpu = time.process_time()
            wall = _timed_score(bundle, features, args.device)
            timings[name].append((wall, time.process_time() - cpu))
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{n:,} patients, {n * 18:,} scores; best of {args.repeats}, variants interleaved\n")
    print("| path | best wall s | CPU s of that run | scores/s | all wall s |")
    print("|---|---:|---:|---:|---|")
    for name, runs in timings.items():
        wall, cpu = min(runs)
        every = ", ".join(f"{w:.2f}" for w, _ in runs)
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {n * 18 / wall:,.0f} | {every} |")


def one_size(args: argparse.Namespace) -> None:
    """Child of `scale`: score one cohort size, print a JSON line."""
    bundle = _load(args)
    n = args.patients[0]
    features = synthetic_features(n)
    _timed_score(bundle, features.iloc[:256], args.device)  # warm-up
    times = [_timed_score(bundle, features, args.device) for _ in range(args.repeats)]
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"patients": n, "seconds": min(times), "peak_rss_mib": rss_mib}))


def scale(args: argparse.Namespace) -> None:
    import torch

    print(f"device {args.device}, torch {torch.__version__}, threads {args.threads or 'default'}")
    print("each size in a fresh process, best of", args.repeats, "\n")
    print("| patients | scores | seconds | us per patient | vs first | peak RSS MiB |")
    print("|---:|---:|---:|---:|---:|---:|")
    first = None
    for n in args.patients:
        command = [
            sys.executable, __file__, "one", "--patients", str(n), "--device", args.device,
            "--threads", str(args.threads), "--repeats", str(args.repeats),
            "--model-dir", str(args.model_dir),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        got = json.loads(done.stdout.strip().splitlines()[-1])
        per = got["seconds"] / n * 1e6
        first = first or per
        print(
            f"| {n:,} | {n * 18:,} | {got['seconds']:.2f} | {per:,.0f} | {per / first:.2f}x "
            f"| {got['peak_rss_mib']:,.0f} |",
            flush=True,
        )


def floor(args: argparse.Namespace) -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from prcrs_batch.modeling.fused import FusedEnsemble
    from prcrs_batch.nightly import explanations, scoring
    from prcrs_batch.task.panel import FACTOR_SETS, HORIZONS, inputs_for

    bundle = _load(args)
    n, explained = args.patients[0], min(args.explained, args.patients[0])
    features = synthetic_features(n)
    per_patient = {}
    for factor_set in FACTOR_SETS:
        fused = FusedEnsemble([bundle.models[(factor_set, h)].members for h in HORIZONS])
        width = len(inputs_for(factor_set))
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            fused.probabilities(torch.zeros(64, width), torch.ones(64, width))
        per_patient[factor_set] = counter.get_total_flops() / 64
    scored = n * sum(per_patient.values())
    occluded = int(features.iloc[:explained][inputs_for("all")].notna().to_numpy().sum())
    explaining = (occluded + explained) * per_patient["all"]
    chosen = {pid: "all" for pid in features.index[:explained]}
    scoring.score(bundle, features.iloc[:256], args.device)  # warm-up
    seconds = {"score": [], "explain": []}
    for _ in range(args.repeats):
        seconds["score"].append(_timed_score(bundle, features, args.device))
        start = time.perf_counter()
        explanations.explain(bundle, features, chosen, args.device)
        seconds["explain"].append(time.perf_counter() - start)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    peak = []
    for _ in range(5):
        start = time.perf_counter()
        torch.mm(a, b)
        peak.append(2 * 2048**3 / (time.perf_counter() - start) / 1e9)
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"float32 matrix-product peak (2,048 x 2,048, best of 5): {max(peak):.1f} GFLOP/s\n")
    sets = ", ".join(f"{k} {v / 1e6:.2f}" for k, v in per_patient.items())
    print(f"MFLOP per patient and factor set (fused ensemble, 3 horizons): {sets}\n")
    print("| work | rows | GFLOP | best s | GFLOP/s | s at the peak | all s |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, rows, flops in (
        (f"score {n:,} patients, 6 factor sets", n * 6, scored),
        (f"explain {explained:,} patients on all", occluded + explained, explaining),
    ):
        best = min(seconds[name.split()[0]])
        runs = ", ".join(f"{t:.2f}" for t in seconds[name.split()[0]])
        print(
            f"| {name} | {rows:,} | {flops / 1e9:,.0f} | {best:.2f} | {flops / best / 1e9:.1f} "
            f"| {flops / max(peak) / 1e9:.1f} | {runs} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["chunks", "paths", "scale", "floor", "one"])
    parser.add_argument("--patients", type=lambda s: [int(x) for x in s.split(",")], default=None)
    parser.add_argument(
        "--chunks", type=lambda s: [int(x) for x in s.split(",")], default=[256, 1024, 4096]
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--explained", type=int, default=2000, help="floor: patients explained")
    args = parser.parse_args()
    default = {
        "chunks": [20_000],
        "paths": [10_000],
        "scale": [1_000, 2_000, 20_000, 100_000],
        "floor": [10_000],
        "one": [2_000],
    }
    args.patients = args.patients or default[args.mode]
    modes = {"chunks": chunks, "paths": paths, "scale": scale, "floor": floor, "one": one_size}
    modes[args.mode](args)


if __name__ == "__main__":
    main()
