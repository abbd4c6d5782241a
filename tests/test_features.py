from datetime import date, timedelta

import numpy as np
import pandas as pd

from prcrs_batch.devdata.cohort import load_cohort, read_cohort
from prcrs_batch.features.cleaning import clean_labs
from prcrs_batch.features.matrix import encode, fit_input_stats, lab_matrix
from prcrs_batch.offline.datasets import LABEL_COLUMNS, horizon_labels, training_frame
from prcrs_batch.results.engines import make_engine
from prcrs_batch.task.panel import ANALYTE_CODES
from prcrs_batch.warehouse.queries import Window, active_cohort, latest_labs
from tests.support import TEST_DATA

D0 = date(2026, 1, 10)


def _grades(*pairs):
    return pd.DataFrame(
        [{"patient_id": p, "assessed_on": D0 + timedelta(days=d), "grade": g} for p, d, g in pairs]
    )


def _days(patient: str, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"patient_id": [patient] * n, "as_of": [D0 + timedelta(days=i) for i in range(n)]}
    )


def test_onset_within_h_days_among_patients_not_yet_severe():
    grades = _grades(("a", 0, 0), ("a", 1, 1), ("a", 2, 3), ("a", 3, 4))
    labelled = horizon_labels(_days("a", 4), grades)
    nan = float("nan")
    # day 0: onset on day t+2, so not within 1 day but within 2 and 3; day 1: onset next
    # day, known even though day t+3 was never assessed; days 2-3: already severe, no rows
    expected = [[0.0, 1.0, 1.0], [1.0, 1.0, 1.0], [nan, nan, nan], [nan, nan, nan]]
    np.testing.assert_array_equal(labelled[LABEL_COLUMNS].to_numpy(), np.array(expected))
    assert labelled["severe_today"].tolist() == [False, False, True, True]


def test_the_papers_target_is_kept_apart_for_the_comparison():
    grades = _grades(("a", 0, 0), ("a", 1, 1), ("a", 2, 3), ("a", 3, 4))
    paper = horizon_labels(_days("a", 4), grades)[[f"paper_label_{h}" for h in (1, 2, 3)]]
    nan = float("nan")
    expected = [[0.0, 1.0, 1.0], [1.0, 1.0, nan], [1.0, nan, nan], [nan, nan, nan]]
    np.testing.assert_array_equal(paper.to_numpy(), np.array(expected))


def test_a_patient_severe_earlier_stays_severe_until_a_lower_grade_is_assessed():
    grades = _grades(("c", 0, 3), ("c", 2, 1), ("c", 3, 1), ("c", 4, 1), ("c", 5, 1))
    labelled = horizon_labels(_days("c", 3), grades)
    # day 1 has no assessment: the latest (day 0) is grade 3; day 2 is grade 1 again
    assert labelled["severe_today"].tolist() == [True, True, False]
    assert (
        np.isnan(labelled.loc[1, "label_1"])
        and labelled.loc[2, LABEL_COLUMNS].tolist() == [0.0] * 3
    )


def test_grade_2_is_not_severe_and_unassessed_days_read_as_not_severe():
    days = pd.DataFrame({"patient_id": ["b"], "as_of": [D0]})
    grades = _grades(("b", 1, 2), ("b", 3, 3))  # day 2 never assessed
    labelled = horizon_labels(days, grades).iloc[0]
    assert labelled[LABEL_COLUMNS].tolist() == [0.0, 0.0, 1.0]
    # the candidates the target was chosen among, kept for their comparison
    by_outcome = [labelled[f"target_kept_by_outcome_{h}"] for h in (1, 2, 3)]
    assert by_outcome[0] == 0.0 and np.isnan(by_outcome[1]) and by_outcome[2] == 1.0
    censored = [labelled[f"target_censored_at_record_end_{h}"] for h in (1, 2, 3)]
    assert censored == [0.0, 0.0, 1.0]  # the record runs to day 3


def test_a_window_past_the_record_end_counts_as_not_severe():
    days = pd.DataFrame({"patient_id": ["e", "e"], "as_of": [D0, D0 + timedelta(days=1)]})
    grades = _grades(("e", 0, 1), ("e", 1, 1))  # discharged after day 1
    labelled = horizon_labels(days, grades)
    assert labelled.loc[1, LABEL_COLUMNS].tolist() == [0.0] * 3
    assert np.isnan(labelled.loc[1, "target_censored_at_record_end_1"])


def test_labels_never_cross_patients():
    days = pd.DataFrame({"patient_id": ["a"], "as_of": [D0]})
    grades = _grades(("b", 1, 4))
    # a has no grade at all: not severe, and b's grade 4 is not a's onset
    assert horizon_labels(days, grades)[LABEL_COLUMNS].iloc[0].tolist() == [0.0] * 3


def test_lab_matrix_takes_the_latest_value_and_keeps_all_columns():
    clean = pd.DataFrame(
        {
            "patient_id": ["p", "p", "q"],
            "collected_at": pd.to_datetime(
                ["2026-01-01 06:00", "2026-01-02 06:00", "2026-01-01 06:00"]
            ),
            "analyte": ["crp", "crp", "il6"],
            "value": [10.0, 50.0, 3.0],
        }
    )
    wide = lab_matrix(clean, ["p", "q", "r"])
    assert list(wide.columns) == list(ANALYTE_CODES)
    assert wide.loc["p", "crp"] == 50.0
    assert wide.loc["r"].isna().all()


def test_encode_fills_with_training_median_and_marks_missing():
    train = pd.DataFrame({"crp": [1.0, 10.0, 100.0], "il6": [np.nan, np.nan, 5.0]})
    stats = fit_input_stats(train, ["crp", "il6"])
    assert stats.fill == {"crp": 10.0, "il6": 5.0}
    values, observed = encode(pd.DataFrame({"crp": [np.nan], "il6": [5.0]}), stats)
    assert observed.tolist() == [[False, True]]
    assert values.dtype == np.float32
    again = fit_input_stats(train, ["crp", "il6"]).to_dict()
    assert type(stats).from_dict(again) == stats


def test_training_uses_the_nightly_sql_path(tmp_path):
    """A training row equals what the nightly job reads for that patient on that date."""
    frame = training_frame(TEST_DATA / "tiny_cohort.csv")
    cohort = read_cohort(TEST_DATA / "tiny_cohort.csv")
    assert len(frame) == len(cohort)
    row = frame[frame["day"] == 2].iloc[0]
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    load_cohort(engine, cohort)
    window = Window(as_of=row["as_of"], active_days=30, lookback_hours=72)
    with engine.connect() as connection:
        assert row["patient_id"] in set(
            active_cohort(connection=connection, window=window)["patient_id"]
        )
        clean, _ = clean_labs(latest_labs(connection=connection, window=window))
    nightly = lab_matrix(clean, [row["patient_id"]]).iloc[0]
    pd.testing.assert_series_equal(
        row[list(ANALYTE_CODES)].astype(float), nightly.astype(float), check_names=False
    )
    assert set(frame["label_1"].dropna()) <= {0.0, 1.0}
    engine.dispose()


def test_lookback_window_excludes_old_results(tmp_path):
    cohort = read_cohort(TEST_DATA / "tiny_cohort.csv")
    first = cohort[cohort["patient_id"] == cohort["patient_id"].iloc[0]]
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    load_cohort(engine, first)
    far = first["infusion_date"].iloc[0] + timedelta(days=int(first["day"].max()) + 5)
    with engine.connect() as connection:
        labs = latest_labs(
            connection=connection, window=Window(as_of=far, active_days=30, lookback_hours=48)
        )
    assert labs.empty
    engine.dispose()
