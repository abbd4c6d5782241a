"""How the fine-tuned readout was chosen: CV on a fold seed that EVALUATION.md does not report.

Usage: python scripts/readout_selection.py [--fold-seed 11] [--model-dir models]
Prints the raw AUROC of the `all` models on the early-warning target, per horizon, for
the transfer PrCRS with the published mean-pool readout and with the "skip" readout, the
same head on the inputs alone, and
logistic regression; pooled out-of-fold predictions of one patient-grouped 5-fold split.
The same 152 patients serve this choice and EVALUATION.md (with other fold seeds), so the
withheld cohort remains the honest test. About 2 minutes on 2 cores.
"""

import argparse
import logging
from pathlib import Path

from prcrs_batch.modeling import device, store
from prcrs_batch.offline import baselines, datasets, evaluation, training
from prcrs_batch.task import metrics

parser = argparse.ArgumentParser()
parser.add_argument("--fold-seed", type=int, default=11)
parser.add_argument("--model-dir", type=Path, default=Path("models"))
args = parser.parse_args()
logging.basicConfig(level=logging.WARNING)

cfg = training.TrainConfig()
device.set_torch_threads(cfg.threads)
bodies = store.load_bodies(args.model_dir)
every = baselines.methods(bodies, cfg)
methods = {m: every[m] for m in ("prcrs_transfer_mean", "prcrs_transfer", "head_only", "logistic")}
frame = datasets.training_frame()
risks, _ = evaluation.cross_validate(
    frame, methods, {"all": list(methods)}, [args.fold_seed], cfg.n_folds
)
labelled = risks[risks["y"].notna()]
auroc = labelled.groupby(["method", "horizon"]).apply(lambda g: metrics.auroc(g["y"], g["p"]))
table = auroc.unstack("horizon").loc[list(methods)]
print(f"AUROC, factor set all, fold seed {args.fold_seed}, {len(bodies)} pre-trained bodies")
print(table.rename(index=baselines.LABELS).round(3).to_string())
