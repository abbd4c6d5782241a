"""How the fine-tuned readout was chosen: CV on a fold seed that EVALUATION.md does not report.

Usage: python scripts/readout_selection.py [--fold-seed 11] [--model-dir models]
Prints the AUROC of the `all` models, per horizon, for the transfer PrCRS with the published
mean-pool readout and with the "skip" readout, the same head on the inputs alone, and
logistic regression; pooled out-of-fold predictions of one patient-grouped 5-fold split.
The same 152 patients serve this choice and EVALUATION.md (with other fold seeds), so the
withheld cohort remains the honest test. About 2 minutes on 2 cores.
"""

import argparse
import logging
from pathlib import Path

import torch
from sklearn.metrics import roc_auc_score

from prcrs_batch import evaluation, features, training

parser = argparse.ArgumentParser()
parser.add_argument("--fold-seed", type=int, default=11)
parser.add_argument("--model-dir", type=Path, default=Path("models"))
args = parser.parse_args()
logging.basicConfig(level=logging.WARNING)

cfg = training.TrainConfig()
torch.set_num_threads(cfg.threads)
bodies = evaluation.load_bodies(args.model_dir)
methods = {
    "prcrs_transfer_mean": evaluation._transfer(bodies, cfg, "mean"),
    "prcrs_transfer": evaluation._transfer(bodies, cfg, "skip"),
    "head_only": evaluation._head_only(len(bodies), cfg),
    "logistic": evaluation.fit_predict_logistic,
}
frame = features.training_frame()
oof = evaluation.cross_validate(
    frame, methods, {"all": list(methods)}, [args.fold_seed], cfg.n_folds
)
auroc = oof.groupby(["method", "horizon"]).apply(lambda g: roc_auc_score(g["y"], g["p"]))
table = auroc.unstack("horizon").loc[list(methods)]
print(f"AUROC, factor set all, fold seed {args.fold_seed}, {len(bodies)} pre-trained bodies")
print(table.rename(index=evaluation.METHOD_LABELS).round(3).to_string())
