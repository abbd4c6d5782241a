"""GPU check: score N patients with the shipped models on CPU and on CUDA; they must agree.

Usage: python scripts/device_check.py [--patients 10000] [--model-dir models]
Prints load and scoring time per device and the largest CPU/CUDA difference. Patients are
development-cohort days resampled with noise: this checks the device path, not the model.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from prcrs_batch.modeling import store
from prcrs_batch.nightly import scoring
from prcrs_batch.resources import bundled_data
from prcrs_batch.task.panel import ANALYTE_CODES

parser = argparse.ArgumentParser()
parser.add_argument("--patients", type=int, default=10_000)
parser.add_argument("--model-dir", type=Path, default=Path("models"))
args = parser.parse_args()

rng = np.random.default_rng(0)
raw = pd.read_csv(bundled_data("cart_dev.csv"))[list(ANALYTE_CODES)].astype(float)
rows = raw.iloc[rng.integers(0, len(raw), args.patients)].to_numpy()
rows = rows * rng.lognormal(0.0, 0.05, rows.shape)
features = pd.DataFrame(rows, columns=list(ANALYTE_CODES))
features.index = pd.Index([f"SYN-{i:06d}" for i in range(args.patients)], name="patient_id")

print(
    f"torch {torch.__version__}; cuda available: {torch.cuda.is_available()}; "
    f"CPU threads {torch.get_num_threads()}"
)
if torch.cuda.is_available():
    print("GPU:", torch.cuda.get_device_name(0))
results = {}
for device in ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]:
    started = time.perf_counter()
    bundle = store.load_models(args.model_dir, device)
    loaded = time.perf_counter()
    results[device] = scoring.score(bundle, features, device)
    if device == "cuda":
        torch.cuda.synchronize()
    done = time.perf_counter()
    n = len(results[device])
    print(
        f"{device}: load {loaded - started:.2f} s, score {args.patients} patients "
        f"({n} rows) {done - loaded:.2f} s = {n / (done - loaded):,.0f} scores/s"
    )
if "cuda" in results:
    a, b = results["cpu"], results["cuda"]
    assert (a["patient_id"] == b["patient_id"]).all() and (a["status"] == b["status"]).all()
    diff = np.nanmax(np.abs(a["probability"] - b["probability"]))
    cdiff = np.nanmax(np.abs(a["calibrated_risk"] - b["calibrated_risk"]))
    print(f"max |cpu - cuda|: probability {diff:.2e}, calibrated risk {cdiff:.2e}")
print("status counts:", results["cpu"]["status"].value_counts().to_dict())
