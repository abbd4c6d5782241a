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


def _obuchowski_by_loops(y, p, groups, z=1.959963984540054):
    """Obuchowski (1997) written out pair by pair, as the Cleveland Clinic's reference R
    functions (funcs_clusteredROC.R) do: the check on the vectorised one."""
    pos, neg = p[y == 1], p[y == 0]

    def psi(a, b):
        return 1.0 if a > b else 0.5 if a == b else 0.0

    theta = sum(psi(a, b) for a in pos for b in neg) / (len(pos) * len(neg))
    ids = sorted(set(groups))
    m = np.array([sum(1 for g, t in zip(groups, y) if g == i and t == 1) for i in ids])
    n = np.array([sum(1 for g, t in zip(groups, y) if g == i and t == 0) for i in ids])
    x = [sum(psi(v, b) for b in neg) / len(neg) for v in pos]
    w = [sum(psi(a, v) for a in pos) / len(pos) for v in neg]
    pos_groups, neg_groups = groups[y == 1], groups[y == 0]
    xc = np.array([sum(v for v, g in zip(x, pos_groups) if g == i) for i in ids])
    yc = np.array([sum(v for v, g in zip(w, neg_groups) if g == i) for i in ids])
    big_m, big_n, k = m.sum(), n.sum(), len(ids)
    i10, i01 = (m > 0).sum(), (n > 0).sum()
    s10 = i10 / ((i10 - 1) * big_m) * ((xc - m * theta) ** 2).sum()
    s01 = i01 / ((i01 - 1) * big_n) * ((yc - n * theta) ** 2).sum()
    s11 = k / (k - 1) * ((xc - m * theta) * (yc - n * theta)).sum()
    se = np.sqrt(s10 / big_m + s01 / big_n + 2 * s11 / (big_m * big_n))
    return theta - z * se, theta + z * se


def test_the_clustered_auroc_interval_is_obuchowskis_and_deLongs_without_clusters():
    rng = np.random.default_rng(11)
    for rows, per_patient in ((60, 1), (90, 3), (120, 6)):
        groups = np.repeat(np.arange(rows // per_patient), per_patient)
        y = (rng.random(rows) < 0.25).astype(int)
        p = np.round(rng.random(rows) * (0.6 + 0.3 * y), 2)  # ties on purpose
        np.testing.assert_allclose(
            metrics.clustered_auroc_ci(y, p, groups), _obuchowski_by_loops(y, p, groups), atol=1e-12
        )
    # one row per patient: DeLong's interval (its placements' sample variances)
    y = (rng.random(80) < 0.3).astype(int)
    p = rng.random(80) + 0.4 * y
    theta = metrics.auroc(y, p)
    x = np.array([np.mean(v > p[y == 0]) for v in p[y == 1]])
    w = np.array([np.mean(p[y == 1] > v) for v in p[y == 0]])
    se = np.sqrt(x.var(ddof=1) / len(x) + w.var(ddof=1) / len(w))
    low, high = metrics.clustered_auroc_ci(y, p, np.arange(80))
    assert (low, high) == pytest.approx((theta - 1.959964 * se, theta + 1.959964 * se), abs=1e-6)


def test_the_clustered_auroc_interval_is_as_wide_as_a_patient_bootstrap():
    """Patients with correlated nights: the analytic interval agrees with 2,000 patient
    resamples (within 15 % of the width), and is wider than one that ignores the patients
    (DeLong's, too narrow for correlated rows)."""
    rng = np.random.default_rng(3)
    patients, nights = 400, 8
    frailty = np.repeat(rng.normal(size=patients), nights)
    risk = 1 / (1 + np.exp(-(-2.5 + 1.2 * frailty + rng.normal(scale=0.5, size=len(frailty)))))
    y = (rng.random(len(risk)) < risk).astype(int)
    p = risk + rng.normal(scale=0.05, size=len(risk))
    groups = np.repeat(np.arange(patients), nights)
    low, high = metrics.clustered_auroc_ci(y, p, groups)
    counts = rng.multinomial(patients, np.full(patients, 1 / patients), size=2000)
    draws = metrics.weighted_auroc(y, p, counts[:, groups])
    boot_low, boot_high = np.percentile(draws, [2.5, 97.5])
    assert low < metrics.auroc(y, p) < high
    assert abs((high - low) - (boot_high - boot_low)) < 0.15 * (boot_high - boot_low)
    naive_low, naive_high = metrics.clustered_auroc_ci(y, p, np.arange(len(y)))
    assert high - low > 1.1 * (naive_high - naive_low)
    assert np.isnan(metrics.clustered_auroc_ci(y, p, np.zeros(len(y)))[0])


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
