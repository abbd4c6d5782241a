"""One target (task.target): the labels training learns from equal, row for row, the outcomes
monitoring judges the stored predictions by, on one warehouse (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
from sqlalchemy import select

from prcrs_batch.offline import datasets
from prcrs_batch.results.tables import crs_risk_scores, prediction_outcomes
from prcrs_batch.task.panel import HORIZONS
from tests.support import TEST_DATA
from tests.support.nightly import run_night

# Two patients of the tiny cohort: CART-1000 reaches grade 3 on its last day (2023-11-23),
# CART-1010 never does and its record ends before a 3-day window does (2023-07-22).
STRETCHES = [(date(2023, 11, 20), date(2023, 11, 22)), (date(2023, 7, 20), date(2023, 7, 22))]
KEYS = ["patient_id", "as_of", "horizon_days"]


def _nights() -> list[date]:
    """Each stretch's nights and the nights after it that judge its last predictions."""
    last = max(HORIZONS)
    return [
        first + timedelta(days=k)
        for first, end in STRETCHES
        for k in range((end - first).days + last + 1)
    ]


def _frame(engine, query) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    with engine.connect() as connection:
        return pd.DataFrame(connection.execute(query).mappings().all())


def test_training_labels_equal_monitoring_outcomes(settings, warehouse):
    for night in _nights():
        # after a stretch's last labs the feed looks dead (stale_data): scored, judged all the same
        assert run_night(settings, warehouse, as_of=night).status in ("succeeded", "stale_data")
    judged = _frame(warehouse, select(prediction_outcomes))
    ok = _frame(
        warehouse,
        select(*(crs_risk_scores.c[k] for k in KEYS), crs_risk_scores.c.model).where(
            crs_risk_scores.c.status == "ok"
        ),
    )

    training = datasets.training_frame(TEST_DATA / "tiny_cohort.csv")
    in_stretch = [any(a <= d <= b for a, b in STRETCHES) for d in training["as_of"]]
    labels = pd.concat(
        [
            training.loc[in_stretch, ["patient_id", "as_of"]].assign(
                horizon_days=h, label=training.loc[in_stretch, f"label_{h}"]
            )
            for h in HORIZONS
        ]
    )
    labels = labels[labels["label"].notna()]  # already severe: no row, no prediction

    # every training row of these nights was scored and judged, each model by the same label
    scored = ok[ok["model"] == "all"].merge(labels, on=KEYS)
    assert len(scored) == len(labels) and len(labels) >= 12
    both = judged.merge(labels, on=KEYS, how="inner")
    assert set(map(tuple, both[KEYS].drop_duplicates().to_numpy())) == set(
        map(tuple, labels[KEYS].to_numpy())
    )
    assert (both["outcome"] == both["label"]).all(), both[both["outcome"] != both["label"]]
    assert set(both["label"]) == {0.0, 1.0}  # onsets and non-onsets both compared
