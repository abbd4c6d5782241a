"""Scoring runs each frozen body once per factor set; the result must equal each model run alone."""

import numpy as np
import pandas as pd

from prcrs_batch import artifacts, scoring
from prcrs_batch.panel import ANALYTE_CODES, FACTOR_SETS, HORIZONS
from tests.support.nightly import COHORT


def _features() -> pd.DataFrame:
    frame = COHORT.drop_duplicates("patient_id").set_index("patient_id")[list(ANALYTE_CODES)]
    return frame.apply(pd.to_numeric, errors="coerce")


def test_shared_body_pass_equals_each_model_alone(quick_models):
    bundle = artifacts.load_models(quick_models, "cpu")
    features = _features()
    scores = scoring.score(bundle, features, "cpu")
    assert len(scores) == len(features) * len(FACTOR_SETS) * len(HORIZONS)
    for (factor_set, horizon), model in bundle.models.items():
        rows = scores[(scores["model"] == factor_set) & (scores["horizon_days"] == horizon)]
        ok = rows[rows["status"] == "ok"]
        if ok.empty:
            continue
        alone = model.probabilities(features.loc[ok["patient_id"]], artifacts.resolve_device("cpu"))
        np.testing.assert_allclose(ok["probability"].to_numpy(), alone, atol=1e-6)


def test_horizons_of_a_set_share_normalisation(quick_models):
    bundle = artifacts.load_models(quick_models, "cpu")
    for factor_set in FACTOR_SETS:
        stats = [bundle.models[(factor_set, h)].stats for h in HORIZONS]
        assert stats[0] == stats[1] == stats[2]


def test_scores_are_keyed_by_patient_not_row_order(quick_models):
    bundle = artifacts.load_models(quick_models, "cpu")
    features = _features()
    forward = scoring.score(bundle, features, "cpu").set_index(
        ["patient_id", "model", "horizon_days"]
    )
    backward = scoring.score(bundle, features.iloc[::-1], "cpu").set_index(
        ["patient_id", "model", "horizon_days"]
    )
    pd.testing.assert_series_equal(
        forward["probability"].sort_index(), backward["probability"].sort_index(), atol=1e-6
    )
