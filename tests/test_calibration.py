"""Calibration methods on synthetic scores whose answers are known."""

import numpy as np
import pytest

from prcrs_batch.modeling import calibration
from prcrs_batch.task import metrics


def test_neighbour_window_fraction_in_window_by_hand():
    scores = np.arange(100) / 100.0  # 0.00 .. 0.99
    labels = (np.arange(100) % 4 == 0).astype(int)  # every 4th is severe
    params = calibration.fit_neighbour_window(scores, labels)
    # p = 0.50 -> position 50, half-window 15 -> rows 35..65 (31 rows)
    expected_mid = labels[35:66].mean()
    # p = 0.10 -> position 10, half-window 20 cut at 0 -> rows 0..30
    expected_low = labels[0:31].mean()
    # p = 0.95 -> position 95, half-window 10 cut at 99 -> rows 85..99
    expected_high = labels[85:100].mean()
    got = calibration.apply_calibration(params, np.array([0.50, 0.10, 0.95]))
    np.testing.assert_allclose(got, [expected_mid, expected_low, expected_high])


def test_neighbour_window_is_order_free_and_keeps_nan():
    rng = np.random.default_rng(0)
    scores, labels = rng.random(200), rng.integers(0, 2, 200)
    a = calibration.fit_neighbour_window(scores, labels)
    perm = rng.permutation(200)
    b = calibration.fit_neighbour_window(scores[perm], labels[perm])
    p = np.array([0.2, np.nan, 0.9])
    np.testing.assert_allclose(
        calibration.apply_calibration(a, p), calibration.apply_calibration(b, p)
    )
    assert np.isnan(calibration.apply_calibration(a, p)[1])


def test_isotonic_recovers_a_known_monotone_map():
    rng = np.random.default_rng(1)
    p = rng.random(20000)
    true_risk = p**2  # the model is overconfident: real risk is p squared
    y = (rng.random(20000) < true_risk).astype(int)
    params = calibration.fit_isotonic(p, y)
    grid = np.array([0.2, 0.5, 0.8])
    np.testing.assert_allclose(calibration.apply_calibration(params, grid), grid**2, atol=0.04)
    cal = calibration.apply_calibration(params, np.sort(p))
    assert np.all(np.diff(cal) >= -1e-12)  # monotone
    assert metrics.ece(calibration.apply_calibration(params, p), y) < metrics.ece(p, y)


def test_isotonic_separable_gives_zero_and_one_and_clips():
    params = calibration.fit_isotonic(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]))
    got = calibration.apply_calibration(params, np.array([-1.0, 0.15, 0.85, 2.0]))
    np.testing.assert_allclose(got, [0.0, 0.0, 1.0, 1.0])


def test_ece_and_brier_known_values():
    p = np.array([0.1, 0.1, 0.9, 0.9])
    y = np.array([0, 0, 1, 0])
    # bin 1: mean p 0.1, frac 0 -> 0.1; bin 9: mean p 0.9, frac 0.5 -> 0.4; weights 1/2 each
    assert metrics.ece(p, y) == pytest.approx(0.25)
    assert metrics.brier(p, y) == pytest.approx((0.01 + 0.01 + 0.01 + 0.81) / 4)


def test_cross_fitting_never_uses_the_rows_own_fold():
    # fold 0 is all severe, fold 1 none: a calibrator fitted elsewhere cannot know that
    p = np.full(40, 0.5)
    y = np.r_[np.ones(20), np.zeros(20)].astype(int)
    folds = np.r_[np.zeros(20), np.ones(20)].astype(int)
    for method in (m for m in calibration.METHODS if m != "none"):  # "none" fits nothing
        cal = calibration.cross_fitted(method, p, y, folds)
        np.testing.assert_allclose(cal[:20], 0.0, atol=1e-5)  # Platt/beta: a constant at
        np.testing.assert_allclose(cal[20:], 1.0, atol=1e-5)  # the (clipped) rate


def test_compare_and_choose_prefer_the_lower_brier():
    rng = np.random.default_rng(2)
    p = rng.random(3000)
    y = (rng.random(3000) < p**3).astype(int)
    folds = rng.integers(0, 5, 3000)
    comparison = calibration.compare(p, y, folds)
    assert set(comparison) == {"raw", *calibration.METHODS}
    best = calibration.choose(comparison)
    assert comparison[best]["brier"] == min(comparison[m]["brier"] for m in calibration.SHIPPABLE)
    assert comparison[best]["ece"] < comparison["raw"]["ece"]


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown calibration method"):
        calibration.apply_calibration({"method": "temperature"}, np.array([0.5]))


@pytest.mark.parametrize("method", calibration.SHIPPABLE)
def test_shipped_calibrators_keep_the_order_and_are_continuous(method):
    """Non-decreasing over a fine grid, and a 2e-7 difference (CPU vs GPU) moves < 1e-4."""
    rng = np.random.default_rng(3)
    p = rng.beta(0.6, 4.0, 3000)
    y = (rng.random(3000) < np.sqrt(p) * 0.6).astype(int)
    params = calibration.fit(method, p, y)
    grid = np.linspace(0.0, 1.0, 20001)
    risk = calibration.apply_calibration(params, grid)
    assert np.all(np.diff(risk) >= -1e-12)
    nudged = calibration.apply_calibration(params, np.clip(grid + 2e-7, 0, 1))
    assert np.max(np.abs(nudged - risk)) < 1e-4


def test_isotonic_does_not_tie_what_the_model_separates():
    """Interpolated between block centres: distinct probabilities inside the fitted range get
    distinct risks (the step version gave 7 values to 47 patients)."""
    rng = np.random.default_rng(4)
    p = rng.random(2000)
    y = (rng.random(2000) < p).astype(int)
    params = calibration.fit_isotonic(p, y)
    inside = np.linspace(params["x"][0], params["x"][-1], 500)[1:-1]
    assert len(np.unique(calibration.apply_calibration(params, inside))) == len(inside)


def test_neighbour_window_is_not_shipped_because_it_breaks_the_order():
    rng = np.random.default_rng(5)
    p = rng.random(400)
    y = rng.integers(0, 2, 400)
    risk = calibration.apply_calibration(
        calibration.fit_neighbour_window(p, y), np.linspace(0, 1, 2001)
    )
    assert np.any(np.diff(risk) < 0)
    assert "neighbour_window" not in calibration.SHIPPABLE


def test_cumulative_risks_never_fall_with_the_horizon():
    risks = np.array([[0.5, 0.38, 0.28], [0.1, 0.2, 0.15], [np.nan, 0.2, 0.1]])
    got = calibration.cumulative(risks)
    np.testing.assert_allclose(got[:2], [[0.5, 0.5, 0.5], [0.1, 0.2, 0.2]])
    assert np.isnan(got[2, 0]) and got[2, 1:].tolist() == [0.2, 0.2]


def test_the_rule_is_also_judged_on_folds_it_did_not_choose_on():
    rng = np.random.default_rng(3)
    p = rng.uniform(0.01, 0.6, 400)
    y = (rng.random(400) < p**1.5).astype(float)
    folds = np.arange(400) % 4
    choice = calibration.choose_cross_fitted(p, y, folds)
    # by hand: each fold takes the method with the lowest Brier on the other folds' rows
    risks = {m: calibration.cross_fitted(m, p, y, folds) for m in calibration.SHIPPABLE}
    out = np.empty(400)
    for k in range(4):
        inner = folds != k
        best = min(
            calibration.SHIPPABLE,
            key=lambda m: (
                metrics.brier(risks[m][inner], y[inner]),
                calibration.SHIPPABLE.index(m),
            ),
        )
        out[~inner] = risks[best][~inner]
    assert choice.nested["brier"] == pytest.approx(metrics.brier(out, y))
    assert choice.nested["ece"] == pytest.approx(metrics.ece(out, y))
