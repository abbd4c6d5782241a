"""Train the 18 PrCRS models into models/ (until `prcrs-batch train` is wired in cli.py).

Usage: python scripts/train_models.py [--output models] [--seed 0] [--quick]
"""

import argparse
import logging
import time
from pathlib import Path

from prcrs_batch import training

parser = argparse.ArgumentParser()
parser.add_argument("--output", type=Path, default=Path("models"))
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--quick", action="store_true")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
started = time.perf_counter()
training.train(args.output, seed=args.seed, quick=args.quick)
print(f"train wall time: {time.perf_counter() - started:.0f} s")
