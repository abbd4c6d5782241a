"""Scoring runs each frozen body once per factor set; the result must equal each model run alone."""

import logging

import numpy as np
import pandas as pd

from prcrs_batch.modeling import device, store
from prcrs_batch.nightly import scoring
from prcrs_batch.resources import model_dir
from prcrs_batch.task.panel import ANALYTE_CODES, FACTOR_SETS, HORIZONS
from tests.support.nightly import COHORT


def _features() -> pd.DataFrame:
    frame = COHORT.drop_duplicates("patient_id").set_index("patient_id")[list(ANALYTE_CODES)]
    return frame.apply(pd.to_numeric, errors="coerce")


def test_shared_body_pass_equals_each_model_alone(quick_models):
    bundle = store.load_models(quick_models, "cpu")
    features = _features()
    scores = scoring.score(bundle, features, "cpu")
    assert len(scores) == len(features) * len(FACTOR_SETS) * len(HORIZONS)
    for (factor_set, horizon), model in bundle.models.items():
        rows = scores[(scores["model"] == factor_set) & (scores["horizon_days"] == horizon)]
        ok = rows[rows["status"] == "ok"]
        if ok.empty:
            continue
        alone = model.probabilities(features.loc[ok["patient_id"]], device.resolve_device("cpu"))
        np.testing.assert_allclose(ok["probability"].to_numpy(), alone, atol=1e-6)


def test_horizons_of_a_set_share_normalisation(quick_models):
    bundle = store.load_models(quick_models, "cpu")
    for factor_set in FACTOR_SETS:
        stats = [bundle.models[(factor_set, h)].stats for h in HORIZONS]
        assert stats[0] == stats[1] == stats[2]


def test_scores_are_keyed_by_patient_not_row_order(quick_models):
    bundle = store.load_models(quick_models, "cpu")
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


def test_risks_are_cumulative_over_the_horizons_for_every_patient_and_model(quick_models):
    bundle = store.load_models(quick_models, "cpu")
    scores = scoring.score(bundle, _features(), "cpu")
    ok = scores[scores["status"] == "ok"]
    wide = ok.pivot_table(
        index=["patient_id", "model"], columns="horizon_days", values="calibrated_risk"
    ).dropna()
    assert len(wide) > 0
    assert (np.diff(wide.to_numpy(), axis=1) >= 0).all()


def test_a_patient_already_severe_is_not_scored_as_a_warning(quick_models):
    bundle = store.load_models(quick_models, "cpu")
    features = _features()
    severe = str(features.index[0])
    scores = scoring.score(bundle, features, "cpu", already_severe=[severe])
    mine = scores[scores["patient_id"] == severe]
    assert len(mine) == len(FACTOR_SETS) * len(HORIZONS)
    assert (mine["status"] == "already_severe").all()
    assert mine["calibrated_risk"].isna().all() and mine["probability"].isna().all()
    others = scores[scores["patient_id"] != severe]
    assert "already_severe" not in set(others["status"])


def test_loading_quick_models_warns_loudly(quick_models, caplog):
    caplog.set_level(logging.WARNING, logger="prcrs_batch")
    store.load_models(quick_models, "cpu")
    assert any("--quick" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_chunked_scoring_equals_one_batch(quick_models, monkeypatch):
    bundle = store.load_models(quick_models, "cpu")
    features = _features()
    monkeypatch.setitem(scoring.CHUNK_ROWS, "cpu", len(features) + 1)
    whole = scoring.score(bundle, features, "cpu")
    monkeypatch.setitem(scoring.CHUNK_ROWS, "cpu", 7)  # several chunks and a short last one
    chunked = scoring.score(bundle, features, "cpu")
    pd.testing.assert_frame_equal(whole, chunked, check_exact=False, atol=1e-6, rtol=0)


def _noisy_cohort(n: int) -> pd.DataFrame:
    """`n` development-cohort rows resampled with noise: many distinct inputs per model."""
    rng = np.random.default_rng(0)
    base = _features()
    rows = base.iloc[rng.integers(0, len(base), n)].to_numpy(dtype=float, na_value=np.nan)
    rows = rows * rng.lognormal(0, 0.05, rows.shape)
    return pd.DataFrame(rows, columns=base.columns, index=[f"p{i}" for i in range(n)])


def _assert_fused_equals_plain(bundle, features, monkeypatch):
    monkeypatch.setattr(scoring, "FUSED", False)
    plain = scoring.score(bundle, features, "cpu")
    monkeypatch.setattr(scoring, "FUSED", True)
    monkeypatch.setitem(scoring.CHUNK_ROWS, "cpu", 13)  # many chunks, a short last one
    monkeypatch.setattr(scoring, "workers", lambda device: 2)  # chunks on two threads
    fused = scoring.score(bundle, features, "cpu")
    assert (fused["status"] == "ok").sum() > 0
    pd.testing.assert_frame_equal(plain, fused, check_exact=False, atol=1e-6, rtol=0)


def test_fused_cpu_path_gives_the_risks_of_the_networks_as_trained(quick_models, monkeypatch):
    bundle = store.load_models(quick_models, "cpu")
    _assert_fused_equals_plain(bundle, _noisy_cohort(150), monkeypatch)


def test_fused_cpu_path_gives_the_shipped_models_risks(monkeypatch):
    bundle = store.load_models(model_dir(), "cpu")
    assert not bundle.errors()
    _assert_fused_equals_plain(bundle, _noisy_cohort(300), monkeypatch)
