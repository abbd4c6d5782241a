"""The one out-of-fold loop: grouped folds, each row predicted once, the same folds for all."""

import numpy as np
import pandas as pd
import pytest
import torch

from prcrs_batch.modeling import calibration
from prcrs_batch.offline import baselines, cv, evaluation, training
from prcrs_batch.task.panel import ANALYTE_CODES, HORIZONS, inputs_for, min_observed, scorable


def _frame(n_patients: int = 30, days: int = 6, seed: int = 0) -> pd.DataFrame:
    """Synthetic patient-days: every 4th patient reaches grade 3 on day 3; 30% inputs missing."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        severe = p % 4 == 0
        for day in range(days):
            row = {"patient_id": f"P{p:02d}", "day": day, "crs_grade": 3 if severe else 1}
            row |= {c: rng.lognormal() if rng.random() > 0.3 else np.nan for c in ANALYTE_CODES}
            for h in HORIZONS:
                label = float(severe and day + h >= 3) if day + h < days else np.nan
                row[f"label_{h}"] = label
            rows.append(row)
    return pd.DataFrame(rows)


class Recorder:
    """A FitPredict that remembers what each fold gave it and predicts its seed."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, train, test, stats, horizon, seed):  # type: ignore[no-untyped-def]
        self.calls.append(
            {
                "train_patients": set(train["patient_id"]),
                "train_labelled": bool(train["label_1"].notna().all())
                if "label_1" in train
                else True,
                "test_patients": set(test["patient_id"]),
                "test_rows": test.index.to_numpy(),
                "stats": stats,
                "seed": seed,
            }
        )
        return np.full(len(test), float(seed))


def test_every_scorable_row_is_predicted_exactly_once_by_a_model_blind_to_its_patient():
    frame = _frame()
    data = cv.FoldedRows.select(frame, cv.patient_folds(frame, 5, seed=0), "cytokines")
    method = Recorder()
    oof = cv.out_of_fold(data, method, horizon=1, seed=100)
    tested = np.concatenate([c["test_rows"] for c in method.calls])
    assert sorted(tested) == list(range(len(data.rows)))
    assert not np.isnan(oof).any()
    for k, call in enumerate(method.calls):
        assert not call["train_patients"] & call["test_patients"]
        assert call["train_labelled"]  # learns from labelled rows only, predicts them all
        assert call["seed"] == 100 + k
        np.testing.assert_array_equal(oof[call["test_rows"]], 100 + k)
        # normalisation from the scorable rows of the fold's training patients only:
        # each input's fill is the median of its observed values on those rows
        rows = frame[frame["patient_id"].isin(call["train_patients"])]
        rows = rows[rows[inputs_for("cytokines")].notna().sum(axis=1) >= min_observed("cytokines")]
        for code in inputs_for("cytokines"):
            assert call["stats"].fill[code] == pytest.approx(float(rows[code].median()))
        leaky = cv.fit_set_stats(frame, "cytokines")  # every patient's rows: not a fold's
        assert call["stats"].fill != leaky.fill


def test_usable_rows_follow_the_scorability_rule_and_have_labels():
    frame = _frame()
    keep = cv.usable_rows(frame, "cytokines", 2)
    n_observed = frame[inputs_for("cytokines")].notna().sum(axis=1).to_numpy()
    expected = scorable(n_observed, "cytokines") & frame["label_2"].notna().to_numpy()
    np.testing.assert_array_equal(keep, expected)
    assert (n_observed[keep] >= min_observed("cytokines")).all()
    assert 0 < keep.sum() < len(frame)


def test_every_method_sees_the_same_folds():
    frame = _frame()
    first, second, costly = Recorder(), Recorder(), Recorder()
    methods = {"logistic": first, "boosting": second, "cnn": costly}
    oof, chosen = evaluation.cross_validate(
        frame, methods, {"all": list(methods)}, seeds=[0, 1], n_folds=3, neural_seeds=1
    )
    assert set(chosen["chosen"]) <= set(calibration.SHIPPABLE)
    assert len(first.calls) == len(second.calls) == 2 * len(HORIZONS) * 3
    for a, b in zip(first.calls, second.calls):
        assert a["train_patients"] == b["train_patients"]
        np.testing.assert_array_equal(a["test_rows"], b["test_rows"])
        assert a["stats"] is b["stats"]  # one normalisation per fold, shared
    assert len(costly.calls) == len(HORIZONS) * 3  # networks from scratch: first repeat only
    folds = oof.pivot_table(index=["seed", "horizon", "row"], columns="method", values="fold")
    assert (folds["logistic"] == folds["boosting"]).all()
    per_patient = oof.groupby(["seed", "horizon", "patient_id"])["fold"].nunique()
    assert (per_patient == 1).all()
    # fold k of CV repeat `seed` is fitted with seed * 100 + k
    assert set(oof.loc[oof["seed"] == 1, "p"]) == {100.0, 101.0, 102.0}
    # the shipped risk is cumulative over the horizons on every row
    wide = oof.pivot_table(index=["seed", "method", "row"], columns="horizon", values="c")
    assert (np.diff(wide.to_numpy(), axis=1) >= 0).all()


def test_a_baseline_runs_through_the_loop():
    frame = _frame()
    data = cv.FoldedRows.select(frame, cv.patient_folds(frame, 3, seed=0), "all")
    oof = cv.out_of_fold(data, baselines.fit_predict_logistic, horizon=1, seed=0)
    assert oof.shape == (len(data.rows),) and ((oof >= 0) & (oof <= 1)).all()


def test_seeded_scope_neither_depends_on_nor_changes_the_global_generator():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    with training.seeded(5) as gen:
        first = torch.rand(3), torch.rand(3, generator=gen)
    assert torch.equal(torch.get_rng_state(), before)
    torch.rand(10)  # the caller uses the global generator in between
    with training.seeded(5) as gen:
        again = torch.rand(3), torch.rand(3, generator=gen)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


@pytest.mark.slow
def test_head_initial_weights_do_not_depend_on_earlier_random_draws():
    frame = _frame()
    data = cv.FoldedRows.select(frame, cv.patient_folds(frame, 3, seed=0), "cytokines")
    method = baselines.head_only(2, training.TrainConfig.quick())
    first = cv.out_of_fold(data, method, horizon=1, seed=3)
    torch.rand(100)
    np.testing.assert_array_equal(cv.out_of_fold(data, method, horizon=1, seed=3), first)
