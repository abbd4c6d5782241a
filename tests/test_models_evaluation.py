"""Evaluation metrics and the clinical baseline, on hand-made data."""

import numpy as np
import pandas as pd
import pytest

from prcrs_batch.offline import baselines
from prcrs_batch.task import metrics


def test_binary_metrics_by_hand():
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.5, 0.4, 0.9])
    m = metrics.binary_metrics(y, p, threshold=0.3)
    assert m["auroc"] == pytest.approx(5 / 6)  # 5 of 6 (positive, negative) pairs ordered
    assert m["sensitivity"] == 1.0 and m["specificity"] == pytest.approx(2 / 3)
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert m["n_positive"] == 2


def test_bootstrap_resamples_patients_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(60), 5)
    y = np.repeat(rng.integers(0, 2, 60), 5)
    p = np.clip(y * 0.3 + rng.random(300) * 0.7, 0, 1)
    ci = metrics.bootstrap_ci(y, [p], groups, n_boot=200)
    auroc = metrics.auroc(y, p)
    assert ci["auroc"][0] < auroc < ci["auroc"][1]


def test_m_easix_is_ldh_times_crp_over_platelets_and_nan_when_missing():
    frame = pd.DataFrame({"ldh": [200.0, 300.0], "crp": [10.0, np.nan], "platelet": [100.0, 50.0]})
    score = baselines.m_easix(frame)
    assert score[0] == pytest.approx(np.log(200 * 10 / 100))
    assert np.isnan(score[1])


def test_the_vectorised_bootstrap_equals_sklearn_on_each_resample():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    y = (rng.random(300) < 0.2).astype(int)
    p = np.round(rng.random(300) * (0.5 + 0.4 * y), 2)  # ties on purpose
    weights = rng.multinomial(300, np.full(300, 1 / 300), size=25)
    got = metrics.weighted_auroc(y, p, weights)
    expected = [roc_auc_score(y, p, sample_weight=w) for w in weights]
    np.testing.assert_allclose(got, expected, atol=1e-12)
    groups = np.repeat(np.arange(100), 3)
    low, high = metrics.bootstrap_auroc_ci(y, p, groups, n_boot=200)
    assert low < metrics.auroc(y, p) < high


def test_auroc_and_auprc_equal_sklearns_with_ties():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    for decimals in (1, 2, 6):  # many ties, some, none
        y = (rng.random(500) < 0.1).astype(int)
        p = np.round(rng.random(500) * 0.7 + 0.3 * y, decimals)
        assert metrics.auroc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert metrics.auprc(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert np.isnan(metrics.auroc(np.zeros(4), np.arange(4))) and np.isnan(metrics.auprc(y * 0, p))


def test_the_nightly_job_does_not_import_sklearn():
    """A second of start-up per night: monitoring's metrics are numpy."""
    import subprocess
    import sys

    code = (
        "import sys, prcrs_batch.app.cli, prcrs_batch.app.pipeline; print('sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
