"""The night's data day (task.data_day, METHOD.md point 8): a night run by the scheduler at
02:00 scores yesterday, with exactly the features training's row for yesterday holds."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import select

from prcrs_batch.app import pipeline
from prcrs_batch.features import matrix
from prcrs_batch.modeling import store
from prcrs_batch.modeling.networks import predict
from prcrs_batch.offline import datasets
from prcrs_batch.results.tables import crs_risk_scores
from prcrs_batch.task.data_day import data_cutoff, data_day, target_day
from prcrs_batch.task.panel import ANALYTE_CODES, HORIZONS, inputs_for
from tests.support import TEST_DATA
from tests.support.nightly import AS_OF


def test_a_night_at_2am_scores_yesterday():
    assert data_day(datetime(2026, 12, 3, 2, 0)) == date(2026, 12, 2)
    assert data_cutoff(date(2026, 12, 2)) == datetime(2026, 12, 3, 0, 0)
    assert [target_day(date(2026, 12, 2), h) for h in HORIZONS] == [
        date(2026, 12, 3),
        date(2026, 12, 4),
        date(2026, 12, 5),
    ]


def test_the_scheduled_night_has_training_rows_features(settings, warehouse):
    """The scheduler's path at 02:00 the morning after AS_OF (labs of later days are in the
    warehouse too, as they would be in a backfill): the night is AS_OF, and each scored
    patient's inputs and raw probability are those of training's row for day AS_OF."""
    at_2am = datetime.combine(AS_OF + timedelta(days=1), time(2, 0))
    summary = pipeline.run_claimed_night(settings, host="test", now=at_2am)
    assert summary is not None and summary.status == "succeeded", summary
    assert summary.as_of == AS_OF
    assert summary.data_cutoff == datetime.combine(AS_OF + timedelta(days=1), time.min) - (
        timedelta(seconds=1)
    )

    query = select(crs_risk_scores).where(
        crs_risk_scores.c.run_id == summary.run_id, crs_risk_scores.c.status == "ok"
    )
    with warehouse.connect() as connection:
        stored = pd.DataFrame(connection.execute(query).mappings().all())
    assert (stored["target_date"] == [target_day(AS_OF, h) for h in stored["horizon_days"]]).all()

    frame = datasets.training_frame(TEST_DATA / "tiny_cohort.csv")
    rows = frame[frame["as_of"] == AS_OF].set_index("patient_id")
    bundle = store.load_models(settings.model_dir, "cpu")
    compared = 0
    for (factor_set, horizon), model in bundle.models.items():
        night = stored[(stored["model"] == factor_set) & (stored["horizon_days"] == horizon)]
        night = night.set_index("patient_id").sort_index()
        assert set(night.index) <= set(rows.index)  # nobody scored without a training row
        row = rows.loc[night.index, list(ANALYTE_CODES)]
        observed = row[inputs_for(factor_set)].notna().sum(axis=1)
        assert (night["inputs_observed"] == observed).all(), (factor_set, horizon)
        expected = predict(model.members, *matrix.encode(row, model.stats))
        np.testing.assert_allclose(night["probability"], expected, rtol=1e-5, atol=1e-7)
        compared += len(night)
    assert compared > 20
