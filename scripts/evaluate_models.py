"""Cross-validate PrCRS against baselines; writes <model_dir>/EVALUATION.md and plots.

Usage: python scripts/evaluate_models.py [--model-dir models] [--seeds 0 1] [--quick]
"""

import argparse
import logging
import sys
import time
from pathlib import Path

from prcrs_batch import evaluation

parser = argparse.ArgumentParser()
parser.add_argument("--model-dir", type=Path, default=Path("models"))
parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
parser.add_argument("--quick", action="store_true")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
started = time.perf_counter()
command = "python " + " ".join(sys.argv)
evaluation.evaluate(args.model_dir, seeds=args.seeds, quick=args.quick, command=command)
print(f"evaluate wall time: {time.perf_counter() - started:.0f} s")
