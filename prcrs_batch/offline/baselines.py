"""The methods `evaluate` compares, each a cv.FitPredict: fit on a fold's training rows,
return P(severe) for its test rows. Their settings were fixed before looking at any result;
none is tuned per split.

- ``prcrs_transfer``: the shipped procedure (training.transfer): COVID-19 pre-trained
  bodies, frozen, heads fine-tuned on the "skip" readout;
- ablations of it: ``prcrs_transfer_mean`` (the published mean-pool readout) and
  ``head_only`` (the same classifier head on the inputs and their mask, no body);
- ``prcrs_logistic``: the mean of PrCRS transfer's and logistic regression's probabilities,
  a candidate to ship only if it beats both at every horizon (rule fixed in EVALUATION.md);
- ``prcrs_transfer_1``, ``prcrs_transfer_3`` (smaller ensembles) and ``context_*`` (temporal
  context for the head): the other options of the model choices, built in model_choices.py;
- ``prcrs_scratch``, ``cnn``, ``transformer``: whole networks trained on CAR-T only;
- ``logistic``: L2 logistic regression (C=0.1) on the encoded inputs + missing mask;
- ``boosting``: sklearn HistGradientBoosting on the raw values (NaN handled natively);
- ``m_easix``: log(LDH x CRP / platelets), mapped to a probability by a 1-D logistic fit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from prcrs_batch.features.matrix import InputStats
from prcrs_batch.modeling.networks import (
    PrCRS,
    PrCRSConfig,
    classifier_head,
    ensemble_probability,
    predict,
)
from prcrs_batch.offline import training
from prcrs_batch.offline.cv import FitPredict, FoldArrays, labels

LABELS = {
    "prcrs_transfer": "PrCRS (COVID-19 transfer)",
    "prcrs_transfer_mean": "PrCRS transfer, published mean-pool readout (ablation)",
    "head_only": "PrCRS head on the inputs alone, no body (ablation)",
    "prcrs_scratch": "PrCRS (from scratch)",
    "prcrs_logistic": "PrCRS transfer and logistic regression, averaged (candidate)",
    "prcrs_transfer_1": "PrCRS transfer, 1 ensemble member (ablation)",
    "prcrs_transfer_3": "PrCRS transfer, 3 ensemble members (ablation)",
    "context_days": "PrCRS transfer + days since infusion (ablation)",
    "context_change": "PrCRS transfer + change since the previous result (ablation)",
    "context_days_change": "PrCRS transfer + days since infusion and change (ablation)",
    "cnn": "CNN (paper baseline)",
    "transformer": "Transformer (paper baseline)",
    "logistic": "Logistic regression",
    "boosting": "Gradient boosting",
    "m_easix": "m-EASIX",
}
FROM_SCRATCH = ("prcrs_scratch", "cnn", "transformer")  # whole networks trained per fold: costly
# variants of PrCRS, never "the best baseline"
ABLATIONS = (
    "prcrs_scratch",
    "prcrs_transfer_mean",
    "head_only",
    "prcrs_logistic",
    "prcrs_transfer_1",
    "prcrs_transfer_3",
    "context_days",
    "context_change",
    "context_days_change",
)


def fit_predict_logistic(
    train: pd.DataFrame, test: pd.DataFrame, stats: InputStats, horizon: int, seed: int
) -> np.ndarray:
    a = FoldArrays.of(train, test, stats, horizon)
    x_train, x_test = a.inputs_and_mask()
    model = LogisticRegression(C=0.1, max_iter=5000)
    model.fit(x_train, a.y)
    return model.predict_proba(x_test)[:, 1]


def fit_predict_boosting(
    train: pd.DataFrame, test: pd.DataFrame, stats: InputStats, horizon: int, seed: int
) -> np.ndarray:
    model = HistGradientBoostingClassifier(
        learning_rate=0.05,
        max_iter=200,
        max_depth=3,
        min_samples_leaf=20,
        l2_regularization=1.0,
        random_state=seed,
    )
    model.fit(train[stats.inputs].to_numpy(float), labels(train, horizon))
    return model.predict_proba(test[stats.inputs].to_numpy(float))[:, 1]


def m_easix(frame: pd.DataFrame) -> np.ndarray:
    """log(LDH [U/L] x CRP [mg/L] / platelets [10^9/L]); NaN when any is missing."""
    with np.errstate(divide="ignore", invalid="ignore"):
        score = frame["ldh"] * frame["crp"].clip(lower=0.1) / frame["platelet"].clip(lower=1.0)
        return np.log(score.to_numpy(float))


def fit_predict_m_easix(
    train: pd.DataFrame, test: pd.DataFrame, stats: InputStats, horizon: int, seed: int
) -> np.ndarray:
    s_train, s_test = m_easix(train), m_easix(test)
    fill = np.nanmedian(s_train)
    model = LogisticRegression(C=1e6, max_iter=1000)
    model.fit(np.nan_to_num(s_train, nan=fill)[:, None], labels(train, horizon))
    return model.predict_proba(np.nan_to_num(s_test, nan=fill)[:, None])[:, 1]


def from_scratch(arch: str, cfg: training.TrainConfig) -> FitPredict:
    """A whole network (`arch`: prcrs, cnn or transformer) trained on the fold's rows."""

    def fit_predict(
        train: pd.DataFrame, test: pd.DataFrame, stats: InputStats, horizon: int, seed: int
    ) -> np.ndarray:
        a = FoldArrays.of(train, test, stats, horizon)
        net = training.fit_network(
            arch, a.values, a.observed, a.y, a.groups, stats.inputs, seed, cfg
        )
        return predict([net], a.test_values, a.test_observed)

    return fit_predict


def head_only(n_members: int, cfg: training.TrainConfig) -> FitPredict:
    """An ensemble of PrCRS classifier heads on the inputs and their mask, no body."""

    def fit_predict(
        train: pd.DataFrame, test: pd.DataFrame, stats: InputStats, horizon: int, seed: int
    ) -> np.ndarray:
        a = FoldArrays.of(train, test, stats, horizon)
        x_train, x_test = (torch.from_numpy(x) for x in a.inputs_and_mask())
        config = PrCRSConfig(d_model=cfg.d_model, dropout=cfg.dropout)
        heads = []
        for k in range(n_members):
            with training.seeded(training.member_seed(seed, k)):
                head = classifier_head(x_train.shape[1], config)
            heads.append(
                training.fit_head(head, x_train, a.y, a.groups, training.member_seed(seed, k), cfg)
            )
        with torch.inference_mode():
            return ensemble_probability(head(x_test) for head in heads)

    return fit_predict


def averaged(first: FitPredict, second: FitPredict) -> FitPredict:
    """The mean of two methods' probabilities, each fitted on the same fold as it would be
    alone (issue 11's candidate: PrCRS and logistic regression averaged)."""

    def fit_predict(
        train: pd.DataFrame, test: pd.DataFrame, stats: InputStats, horizon: int, seed: int
    ) -> np.ndarray:
        a = first(train, test, stats, horizon, seed)
        return (a + second(train, test, stats, horizon, seed)) / 2

    return fit_predict


def methods(
    bodies: list[PrCRS], cfg: training.TrainConfig, transfer: FitPredict | None = None
) -> dict[str, FitPredict]:
    """The methods of LABELS but model_choices.py's options, in that order; the transfer ones
    fine-tune on `bodies`. `transfer` replaces the shipped procedure (training.transfer)
    where it is given: model_choices.MemberLogits shares its fits with the smaller ensembles."""
    transfer = transfer or training.transfer(bodies, cfg, "skip")
    return {
        "prcrs_transfer": transfer,
        "prcrs_transfer_mean": training.transfer(bodies, cfg, "mean"),
        "head_only": head_only(len(bodies), cfg),
        "prcrs_scratch": from_scratch("prcrs", cfg),
        "prcrs_logistic": averaged(transfer, fit_predict_logistic),
        "cnn": from_scratch("cnn", cfg),
        "transformer": from_scratch("transformer", cfg),
        "logistic": fit_predict_logistic,
        "boosting": fit_predict_boosting,
        "m_easix": fit_predict_m_easix,
    }
