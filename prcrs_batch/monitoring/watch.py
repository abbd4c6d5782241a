"""Stage 6b: once a night is stored, the job measures itself. It reads the earlier nights'
stored risks and what the team was told (results database) and the CRS grades that have
arrived since (warehouse), computes performance.py's performance and drift.py's drift, and
stores them in `model_performance` and `input_drift` (a rerun of the night replaces its
rows). `latest` reads them back for `prcrs-batch monitor`, with the limits it pages on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta

import pandas as pd
from sqlalchemy import Connection, Engine, Select, delete, func, insert, select

from prcrs_batch.modeling.store import ModelBundle
from prcrs_batch.monitoring import drift, performance
from prcrs_batch.nightly.compute import night_tiers
from prcrs_batch.results.nights import plain_rows
from prcrs_batch.results.tables import (
    crs_patient_nights,
    crs_risk_scores,
    input_drift,
    model_performance,
)
from prcrs_batch.settings import Settings
from prcrs_batch.task.panel import HORIZONS
from prcrs_batch.warehouse.queries import WarehouseError, Window, crs_assessments

logger = logging.getLogger(__name__)

# What `prcrs-batch monitor` pages on, for the `all` model where a figure exists:
AUROC_LIMIT = 0.70  # discrimination: AUROC below this
SLOPE_LIMITS = (0.5, 2.0)  # calibration: slope outside this range
RATIO_LIMITS = (0.5, 2.0)  # calibration: observed / expected event rate outside this range


@dataclass
class Watch:
    """What the night learnt about itself, for the tables and the report's footer."""

    performance: pd.DataFrame  # performance.COLUMNS
    drift: pd.DataFrame  # drift.COLUMNS
    onsets: list[tuple[int, int, int]] = field(default_factory=list)  # window, onsets, warned


def watch_night(
    settings: Settings,
    bundle: ModelBundle,
    features: pd.DataFrame,
    window: Window,
    warehouse: Engine,
    results_db: Engine,
) -> Watch:
    """Measure the stored nights up to `window.as_of` and tonight's inputs."""
    as_of = window.as_of
    since = as_of - timedelta(days=max(settings.monitor_windows) + max(HORIZONS))
    s, n = crs_risk_scores.c, crs_patient_nights.c
    with results_db.connect() as connection:
        predictions = _frame(
            connection,
            select(
                s.patient_id, s.as_of, s.model, s.horizon_days, s.calibrated_risk, s.status
            ).where(s.as_of >= since, s.as_of < as_of, s.status == "ok"),
        )
        nights = _frame(
            connection,
            select(n.patient_id, n.as_of, n.alert).where(n.as_of >= since, n.as_of <= as_of),
        )
    try:
        with warehouse.connect() as connection:
            assessments = crs_assessments(
                connection=connection,
                first_infusion=since - timedelta(days=settings.active_days),
                last_infusion=as_of,
                source=window.source,
                zone=window.zone,
            )
    except WarehouseError as exc:  # grades are optional: the night's notes already say so
        logger.warning("no outcomes to judge the stored risks by: %s", exc)
        assessments = pd.DataFrame(columns=["patient_id", "assessed_on", "grade"])
    grades = performance.daily_grades(assessments)
    judged = (
        performance.performance(
            predictions, grades, as_of, settings.monitor_windows, night_tiers(settings, bundle)
        )
        if grades
        else pd.DataFrame(columns=performance.COLUMNS)
    )
    reference = bundle.manifest.get("training_data", {}).get("input_reference")
    drifted = drift.drift(features, reference) if reference else pd.DataFrame(columns=drift.COLUMNS)
    if not reference:
        logger.warning("the models' manifest has no input reference: no drift measured")
    onsets = [
        (w, *performance.flagged_ahead(nights, grades, as_of, w)) for w in settings.monitor_windows
    ]
    return Watch(judged, drifted, onsets)


def store(connection: Connection, watch: Watch, run_id: str, as_of: date) -> None:
    """Replace the night's model_performance and input_drift rows."""
    night = {"run_id": run_id, "as_of": as_of}
    for table, frame in ((model_performance, watch.performance), (input_drift, watch.drift)):
        connection.execute(delete(table).where(table.c.as_of == as_of))
        if len(frame):
            rows = [{**night, **row} for row in plain_rows(frame)]
            connection.execute(insert(table), rows)


def latest(results_db: Engine, days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The newest night's performance (windows of at most `days` days) and drift rows."""
    with results_db.connect() as connection:
        out = []
        for table in (model_performance, input_drift):
            newest = select(func.max(table.c.as_of)).scalar_subquery()
            query = select(table).where(table.c.as_of == newest)
            if table is model_performance:
                query = query.where(table.c.window_days <= days).order_by(
                    table.c.model, table.c.horizon_days, table.c.window_days
                )
            out.append(_frame(connection, query))
    return out[0], out[1]


def breaches(performance: pd.DataFrame) -> list[str]:
    """The limits the `all` model crosses, one line each (empty: nothing to page on)."""
    found = []
    for row in performance[performance["model"] == "all"].itertuples():
        where = f"all {row.horizon_days}d, {row.window_days} days"
        if pd.notna(row.auroc) and row.auroc < AUROC_LIMIT:
            found.append(f"{where}: AUROC {row.auroc:.2f} < {AUROC_LIMIT}")
        if pd.notna(row.calibration_slope) and not (
            SLOPE_LIMITS[0] <= row.calibration_slope <= SLOPE_LIMITS[1]
        ):
            found.append(
                f"{where}: calibration slope {row.calibration_slope:.2f} outside {SLOPE_LIMITS}"
            )
        if pd.notna(row.auroc) and row.mean_predicted:
            ratio = row.observed_rate / row.mean_predicted
            if not RATIO_LIMITS[0] <= ratio <= RATIO_LIMITS[1]:
                found.append(
                    f"{where}: observed / expected events {ratio:.2f} outside {RATIO_LIMITS}"
                )
    return found


def _frame(connection: Connection, query: Select) -> pd.DataFrame:
    result = connection.execute(query)
    return pd.DataFrame([tuple(r) for r in result], columns=list(result.keys()))
