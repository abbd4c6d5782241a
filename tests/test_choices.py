"""Model choices (issue 11, item 6): the temporal context, the ensemble-size options read
from one fit, and the rule fixed before the comparison; tiny data, quick settings."""

import numpy as np
import pandas as pd
import pytest

from prcrs_batch.devdata.cohort import read_cohort
from prcrs_batch.features import temporal
from prcrs_batch.features.matrix import fit_input_stats
from prcrs_batch.modeling.networks import PrCRS, PrCRSConfig
from prcrs_batch.offline import model_choices, training
from prcrs_batch.offline.datasets import training_frame
from prcrs_batch.task.panel import HORIZONS, inputs_for
from tests.support import TEST_DATA

CFG = training.TrainConfig.quick()
INPUTS = inputs_for("cytokines")


def test_previous_result_is_the_one_before_the_latest_in_the_window():
    frame = training_frame(TEST_DATA / "tiny_cohort.csv", previous=True)
    prev = [temporal.PREVIOUS_PREFIX + c for c in INPUTS]
    assert not frame.loc[frame["day"] == 0, prev].notna().any().any()  # nothing before day 0
    raw = read_cohort(TEST_DATA / "tiny_cohort.csv").sort_values(["patient_id", "day"])
    today = raw[INPUTS].astype(float).to_numpy()
    yesterday = raw.groupby("patient_id")[INPUTS].shift(1).astype(float).to_numpy()
    kept = frame.set_index(["patient_id", "day"]).loc[list(zip(raw["patient_id"], raw["day"]))]
    both = (kept[INPUTS].to_numpy() == today) & ~np.isnan(yesterday)  # results on t and t-1
    assert both.sum() > 20
    np.testing.assert_array_equal(kept[prev].to_numpy()[both], yesterday[both])
    # without the option the frame is what it was
    plain = training_frame(TEST_DATA / "tiny_cohort.csv")
    assert not any(c.startswith(temporal.PREVIOUS_PREFIX) for c in plain.columns)


def _rows(n_patients: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    patients = np.repeat([f"P{seed}-{i}" for i in range(n_patients)], 4)
    y = rng.random(len(patients)) < 0.3
    values = rng.lognormal(1.0, 0.5, (len(patients), len(INPUTS))) * (1 + y[:, None])
    frame = pd.DataFrame(values, columns=INPUTS)
    previous = pd.DataFrame(values * 0.8, columns=[temporal.PREVIOUS_PREFIX + c for c in INPUTS])
    previous.iloc[::3] = np.nan
    return pd.concat([frame, previous], axis=1).assign(
        patient_id=patients, day=np.tile(np.arange(4), n_patients), label_1=y.astype(float)
    )


@pytest.fixture(scope="module")
def fold():
    train, test = _rows(20, 0), _rows(5, 1)
    bodies = []
    for k in range(2):
        with training.seeded(k):
            bodies.append(PrCRS(PrCRSConfig(n_classes=3, d_model=16, readout="mean")).eval())
    return bodies, train, test, fit_input_stats(train, INPUTS)


def test_each_ensemble_size_is_the_first_members_of_one_shipped_fit(fold):
    bodies, train, test, stats = fold
    members = model_choices.MemberLogits(bodies, CFG)
    shipped = training.transfer(bodies, CFG)(train, test, stats, 1, 7)
    np.testing.assert_array_equal(members.ensemble(2)(train, test, stats, 1, 7), shipped)
    one = training.transfer(bodies[:1], CFG)(train, test, stats, 1, 7)
    np.testing.assert_array_equal(members.ensemble(1)(train, test, stats, 1, 7), one)
    assert len(members._fits) == 1  # both sizes read the same fit


@pytest.mark.parametrize("kind", temporal.KINDS)
def test_a_head_with_context_gives_one_reproducible_risk_per_test_row(fold, kind):
    bodies, train, test, stats = fold
    method = model_choices.transfer_with_context(bodies, CFG, kind)
    p = method(train, test, stats, 1, 7)
    assert p.shape == (len(test),) and ((p > 0) & (p < 1)).all()
    np.testing.assert_array_equal(p, method(train, test, stats, 1, 7))


def test_change_inputs_are_zero_and_masked_without_a_previous_result():
    stats = fit_input_stats(_rows(3, 2), INPUTS)
    frame = _rows(3, 2)
    change = temporal.change_inputs(frame, stats)
    assert change.shape == (len(frame), 2 * len(INPUTS))
    missing = frame[temporal.PREVIOUS_PREFIX + INPUTS[0]].isna().to_numpy()
    assert (change[missing, 0] == 0).all() and (change[missing, len(INPUTS)] == 0).all()
    assert (change[~missing, 0] > 0).all()  # latest = previous / 0.8: a rise


def _summary(gains: dict[str, tuple[float, float, float]]) -> pd.DataFrame:
    rows = []
    for method, gain in {"prcrs_transfer": (0.0, 0.0, 0.0), **gains}.items():
        for h, g in zip(HORIZONS, gain):
            auroc = 0.85 + g
            ci = (auroc - 0.03, auroc + 0.03)
            rows.append(
                {
                    "factor_set": "all",
                    "horizon": h,
                    "method": method,
                    "auroc": auroc,
                    "auroc_ci": ci,
                }
            )
    return pd.DataFrame(rows)


def test_an_option_is_kept_only_if_it_gains_the_margin_at_every_horizon():
    table = model_choices.verdict(
        _summary(
            {
                "prcrs_transfer_1": (0.004, 0.02, 0.02),  # short of the margin at 1 day
                "context_days": (0.006, 0.006, 0.006),
                "context_change": (0.01, 0.01, 0.01),  # passes, and gains the most
                "context_days_change": (0.02, 0.01, -0.001),
            }
        ),
        n_members=5,
    ).set_index("method")
    assert table.loc["prcrs_transfer", "option"].startswith("skip readout, 5 member(s)")
    assert not table.loc["prcrs_transfer_1", "kept"]
    assert table.loc["context_change", "kept"] and not table.loc["context_days", "kept"]
    assert not table.loc["context_days_change", "kept"]
    assert table.loc["context_change", "gain_2"] == pytest.approx(0.01)


def test_the_section_states_the_rule_and_says_when_nothing_is_kept():
    lines = model_choices.section(_summary({"prcrs_transfer_3": (0.001, -0.002, 0.0)}), n_members=5)
    text = "\n".join(lines)
    assert "## Model choices" in text and f"by at least {model_choices.MARGIN}" in text
    assert "| ensemble size | 3 member(s) | 0.851 (0.82-0.88) |" in text
    assert "+0.001 / -0.002 / +0.000 | no |" in text
    assert "No option tried meets its rule: every shipped choice stays." in text
    assert model_choices.section(_summary({}).query("method != 'prcrs_transfer'"), 5) == []
