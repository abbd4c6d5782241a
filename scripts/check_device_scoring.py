"""Device check: score with the shipped models on CUDA and on CPU; the results must agree.

Usage: python scripts/check_device_scoring.py [--model-dir models]
Raw cart_dev.csv values stand in for warehouse features: this checks the device path only.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from prcrs_batch import artifacts, scoring
from prcrs_batch.cohort import bundled_cohort_path
from prcrs_batch.panel import ANALYTE_CODES

parser = argparse.ArgumentParser()
parser.add_argument("--model-dir", type=Path, default=Path("models"))
args = parser.parse_args()
raw = pd.read_csv(bundled_cohort_path())
day = raw[raw["day"] == 2].set_index("patient_id")[list(ANALYTE_CODES)].astype(float)
print("torch", torch.__version__, "cuda available:", torch.cuda.is_available())
results = {}
for device in ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]:
    bundle = artifacts.load_models(args.model_dir, device)
    started = time.perf_counter()
    results[device] = scoring.score(bundle, day, device)
    print(device, "errors:", bundle.errors(), f"score: {time.perf_counter() - started:.2f} s")
if "cuda" in results:
    a, b = results["cpu"], results["cuda"]
    assert (a["patient_id"] == b["patient_id"]).all() and (a["status"] == b["status"]).all()
    diff = np.nanmax(np.abs(a["probability"] - b["probability"]))
    cdiff = np.nanmax(np.abs(a["calibrated_risk"] - b["calibrated_risk"]))
    print(f"max |cpu - cuda| probability {diff:.2e}, calibrated risk {cdiff:.2e}")
    assert diff < 1e-4, diff
print(results["cpu"]["status"].value_counts().to_dict())
