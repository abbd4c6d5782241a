"""Stage 6b: once a night is stored, the job measures itself. It judges the earlier nights'
predictions whose target date has come, once each, by the CRS grades that have arrived
(warehouse), stores them in `prediction_outcomes`, computes performance.py's figures over
the windows from the stored outcomes and drift.py's drift, and stores them in
`model_performance` and `input_drift` (a rerun of the night replaces those two). `latest`
reads them back for `prcrs-batch monitor`, with the limits it pages on.

The two halves are apart for a backfill in several processes (app/backfill.py): drift reads
tonight's inputs only (`night_drift`), so it is stored with the night in any order; the
outcomes and performance read the nights before (`judge_night`), so they are stored in date
order, after the nights are scored.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import (
    ColumnElement,
    Connection,
    Date,
    Engine,
    Insert,
    Integer,
    Select,
    String,
    and_,
    case,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from prcrs_batch.modeling.store import ModelBundle
from prcrs_batch.monitoring import drift, performance
from prcrs_batch.nightly.compute import night_tiers
from prcrs_batch.results.nights import plain_rows
from prcrs_batch.results.tables import (
    crs_patient_nights,
    crs_risk_scores,
    in_current_run,
    input_drift,
    model_performance,
    prediction_outcomes,
    scoring_runs,
)
from prcrs_batch.settings import Settings
from prcrs_batch.task.data_day import target_day
from prcrs_batch.task.panel import FACTOR_SETS, HORIZONS
from prcrs_batch.task.target import daily_grades
from prcrs_batch.task.thresholds import Tiers
from prcrs_batch.warehouse.queries import WarehouseError, Window, crs_assessments, gc_paused

logger = logging.getLogger(__name__)

# What `prcrs-batch monitor` pages on, for the `all` model where a figure exists:
AUROC_LIMIT = 0.70  # discrimination: AUROC below this
SLOPE_LIMITS = (0.5, 2.0)  # calibration: slope outside this range
RATIO_LIMITS = (0.5, 2.0)  # calibration: observed / expected event rate outside this range
# What `store` writes: the judged predictions and performance, the input drift.
JUDGED, DRIFT = "judged", "drift"


@dataclass
class Watch:
    """What the night learnt about itself, for the tables and the report's footer."""

    performance: pd.DataFrame  # performance.COLUMNS
    drift: pd.DataFrame  # drift.COLUMNS
    # window, onsets, alerted, on alert or watch (performance.flagged_ahead)
    onsets: list[tuple[int, int, int, int]] = field(default_factory=list)


def watch_night(
    settings: Settings,
    bundle: ModelBundle,
    features: pd.DataFrame,
    window: Window,
    warehouse: Engine,
    results_db: Engine,
    run_id: str,
) -> Watch:
    """Measure the stored nights up to `window.as_of` (`judge_night`) and tonight's inputs
    (`night_drift`)."""
    return replace(
        judge_night(settings, bundle, window, warehouse, results_db, run_id),
        drift=night_drift(bundle, features),
    )


def night_drift(bundle: ModelBundle, features: pd.DataFrame) -> pd.DataFrame:
    """Tonight's inputs against the training data's (drift.py): depends on no other night."""
    reference = bundle.manifest.get("training_data", {}).get("input_reference")
    if not reference:
        logger.warning("the models' manifest has no input reference: no drift measured")
        return pd.DataFrame(columns=drift.COLUMNS)
    return drift.drift(features, reference)


def judge_night(
    settings: Settings,
    bundle: ModelBundle,
    window: Window,
    warehouse: Engine,
    results_db: Engine,
    run_id: str,
) -> Watch:
    """Judge the stored nights' predictions up to `window.as_of` and measure the windows
    (no drift: `night_drift`).

    Bounded work: the predictions whose target date has come and that no night has judged
    yet are judged now (`_judge`) and stored in prediction_outcomes at once, as judged by
    `run_id`; the windows' figures then come from the stored outcomes, never from all of
    history: SQL totals for every model (`_totals`) and, for the `all` model that `monitor`
    pages on, its rows (AUROC, calibration, lead time, interval).
    """
    as_of = window.as_of
    windows = settings.monitor_windows
    longest = max(windows)
    since = as_of - timedelta(days=longest + max(HORIZONS))
    grades = daily_grades(_assessments(settings, warehouse, window, since))
    tiers = night_tiers(settings, bundle)
    if grades:  # no grades read: nothing is judged tonight (a later night will)
        with results_db.begin() as connection:
            _judge(connection, _unjudged_nights(connection, since, as_of), grades, run_id, as_of)
    onset_patients = sorted(
        {p for p, _ in performance.onsets(grades, as_of - timedelta(days=longest - 1), as_of)}
    )
    with results_db.connect() as connection:
        # one horizon's rows at a time: a third of the memory (2.6 GB at 10,000 x 90 nights)
        paged = [
            performance.figures(
                _dated(
                    _frame(connection, _outcome_rows(performance.PAGED_MODEL, h, as_of, longest))
                ),
                grades,
                as_of,
                windows,
                tiers,
            )
            for h in HORIZONS
        ]
        totals = _per_window(_frame(connection, _totals(as_of, windows, tiers)), windows)
        n = crs_patient_nights.c
        nights = _frame(
            connection,
            select(n.patient_id, n.as_of, n.alert, n.tier).where(
                n.as_of >= since,
                n.as_of <= as_of,
                n.patient_id.in_(onset_patients),
                in_current_run(crs_patient_nights),
            ),
        )
    figures = pd.concat(
        [
            *paged,
            performance.from_totals(totals, windows),
        ],
        ignore_index=True,
    )
    onsets = [(w, *performance.flagged_ahead(nights, grades, as_of, w)) for w in windows]
    return Watch(figures, pd.DataFrame(columns=drift.COLUMNS), onsets)


def _assessments(
    settings: Settings, warehouse: Engine, window: Window, since: date
) -> pd.DataFrame:
    """The CRS grades of the patients infused in time to be judged; none (a warning) when
    the warehouse cannot give them: the night's notes already say why."""
    try:
        with warehouse.connect() as connection:
            return crs_assessments(
                connection=connection,
                first_infusion=since - timedelta(days=settings.active_days),
                last_infusion=window.as_of,
                source=window.source,
                zone=window.zone,
            )
    except WarehouseError as exc:
        logger.warning("no outcomes to judge the stored risks by: %s", exc)
        return pd.DataFrame(columns=["patient_id", "assessed_on", "grade"])


def _outcome_rows(model: str, horizon: int, as_of: date, days: int) -> Select:
    """One model's judged predictions at one horizon whose target date lies in the last
    `days` days."""
    o = prediction_outcomes.c
    return select(
        o.patient_id,
        o.as_of,
        o.model,
        o.horizon_days,
        o.calibrated_risk,
        o.target_date.label("target"),
        o.outcome.label("y"),
    ).where(
        o.model == model,
        o.horizon_days == horizon,
        o.target_date > as_of - timedelta(days=days),
        o.target_date <= as_of,
    )


# The sums performance.from_totals turns into figures, per model, horizon and window.
SUMS = (
    "n_predictions",
    "n_events",
    "sum_predicted",
    "sum_squared_error",
    "n_flagged",
    "n_flagged_events",
)


def _totals(as_of: date, windows: Sequence[int], tiers: Tiers) -> Select:
    """Per model (but the paged one) and horizon, the SUMS over the judged predictions
    whose target date lies in the last `w` days, for each window w at once (columns
    `n_predictions_30`, ...: one read of the longest window); each model flagged at its own
    alert threshold. Summed first per patient and the shortest window holding the target
    date, then per model: the patients are counted among those groups (a COUNT(DISTINCT)
    over the rows was 7 times slower, a CASE per window and row twice)."""
    o = prediction_outcomes.c
    threshold = case(
        {model: tiers.alert_for(model) for model in FACTOR_SETS},
        value=o.model,
        else_=tiers.default_alert,
    )
    flagged = o.calibrated_risk >= threshold
    error = o.calibrated_risk - o.outcome
    shortest = case(
        *((o.target_date > as_of - timedelta(days=w), w) for w in sorted(windows)),
    )
    per_group = (
        select(
            o.model,
            o.horizon_days,
            o.patient_id,
            shortest.label("window_days"),
            func.count().label("n_predictions"),
            func.sum(o.outcome).label("n_events"),
            func.sum(o.calibrated_risk).label("sum_predicted"),
            func.sum(error * error).label("sum_squared_error"),
            func.sum(case((flagged, 1), else_=0)).label("n_flagged"),
            func.sum(case((and_(flagged, o.outcome == 1), 1), else_=0)).label("n_flagged_events"),
        )
        .where(
            o.model != performance.PAGED_MODEL,
            o.outcome.is_not(None),
            o.target_date > as_of - timedelta(days=max(windows)),
            o.target_date <= as_of,
        )
        .group_by(o.model, o.horizon_days, o.patient_id, shortest)
        .subquery()
    )
    g = per_group.c
    return select(
        g.model,
        g.horizon_days,
        *(
            func.count(func.distinct(case((g.window_days <= w, g.patient_id)))).label(
                f"n_patients_{w}"
            )
            for w in windows
        ),
        *(
            func.sum(case((g.window_days <= w, g[name]))).label(f"{name}_{w}")
            for w in windows
            for name in SUMS
        ),
    ).group_by(g.model, g.horizon_days)


def _per_window(totals: pd.DataFrame, windows: Sequence[int]) -> list[pd.DataFrame]:
    """`_totals`' one frame as one frame per window (performance.from_totals' input)."""
    out = []
    for w in windows:
        names = ["n_patients", *SUMS]
        frame = totals[["model", "horizon_days", *(f"{n}_{w}" for n in names)]]
        frame = frame.set_axis(["model", "horizon_days", *names], axis=1)
        out.append(frame[frame["n_patients"] > 0].reset_index(drop=True))
    return out


def _unjudged_nights(connection: Connection, since: date, as_of: date) -> list[tuple[date, int]]:
    """The (night, horizon) pairs since `since` whose target date has come and that no
    night has judged. A night judges all of a pair's predictions at once and a rerun of the
    night drops them all (results.nights.replace_night), so one stored outcome per pair
    says it is judged: an index probe each, where an anti-join of every stored prediction
    with every outcome read the whole window (13.6 s at 10,000 patients x 90 nights)."""
    r, o = scoring_runs.c, prediction_outcomes.c
    nights = connection.execute(
        select(r.as_of).where(r.as_of >= since, r.as_of < as_of, in_current_run(scoring_runs))
    ).scalars()
    pairs = sorted(
        {(n, h) for n in map(_as_date, nights) for h in HORIZONS if target_day(n, h) <= as_of}
    )
    judged = [
        connection.execute(select(exists().where(o.as_of == n, o.horizon_days == h))).scalar_one()
        for n, h in pairs
    ]
    return [pair for pair, done in zip(pairs, judged, strict=True) if not done]


def _pending(pairs: Sequence[tuple[date, int]]) -> ColumnElement[bool]:
    """The stored ok predictions (the current runs': a kept emailed run's rows are not
    judged again) of these (night, horizon) pairs."""
    s = crs_risk_scores.c
    if not pairs:
        return false()
    return and_(
        s.status == "ok",
        in_current_run(crs_risk_scores),
        s.target_date.in_(sorted({target_day(n, h) for n, h in pairs})),
        or_(*(and_(s.as_of == n, s.horizon_days == h) for n, h in pairs)),
    )


def _judge(
    connection: Connection,
    pairs: Sequence[tuple[date, int]],
    grades: dict[str, dict[date, int]],
    run_id: str,
    as_of: date,
) -> None:
    """Store the pairs' predictions in prediction_outcomes with their outcomes. Each
    (patient, night, horizon) is labelled once in Python by the target
    (performance.outcomes: the same label for the six models); the rows are copied in SQL
    with outcome 0, then the few 1s and NULLs (already severe) set: what travels is a
    sixth of the predictions' keys and the non-zero labels, not every prediction twice."""
    s, o = crs_risk_scores.c, prediction_outcomes.c
    pending = _pending(pairs)
    keys = _frame(
        connection, select(s.patient_id, s.as_of, s.horizon_days).where(pending).distinct()
    )
    if not len(keys):
        return
    keys["as_of"] = [_as_date(d) for d in keys["as_of"]]
    labels = performance.outcomes(keys, grades)
    connection.execute(
        outcomes_from_scores(
            pending,
            run_id=literal(run_id, String),
            outcome=literal(0, Integer),
            judged_on=literal(as_of, Date),
        )
    )
    for outcome, chosen in ((1, labels == 1), (None, np.isnan(labels))):
        for (night, horizon), group in keys[chosen].groupby(["as_of", "horizon_days"]):
            patients = [str(p) for p in group["patient_id"]]
            for start in range(0, len(patients), 500):  # bounded IN lists
                connection.execute(
                    update(prediction_outcomes)
                    .where(
                        o.as_of == night,
                        o.horizon_days == int(horizon),
                        o.patient_id.in_(patients[start : start + 500]),
                    )
                    .values(outcome=outcome)
                )


def outcomes_from_scores(
    where: ColumnElement[bool],
    *,
    run_id: ColumnElement[str],
    outcome: ColumnElement[int],
    judged_on: ColumnElement[date],
) -> Insert:
    """Copy the crs_risk_scores rows `where` selects into prediction_outcomes, with the
    judging run, outcome and night given as SQL expressions: how a judged prediction is
    stored (`_judge`; the steady-state benchmark's history, scripts/bench_load.py)."""
    s = crs_risk_scores.c
    copied = select(
        run_id,
        s.as_of,
        s.patient_id,
        s.model,
        s.horizon_days,
        s.target_date,
        s.calibrated_risk,
        outcome,
        judged_on,
    ).where(where)
    columns = ["run_id", "as_of", "patient_id", "model", "horizon_days", "target_date"]
    columns += ["calibrated_risk", "outcome", "judged_on"]
    return insert(prediction_outcomes).from_select(columns, copied)


def _as_date(value: date | str) -> date:
    """A DATE as SQLite gives it back (text) or PostgreSQL (a date)."""
    return value if type(value) is date else pd.Timestamp(value).date()


def _dated(stored: pd.DataFrame) -> pd.DataFrame:
    """Stored outcomes typed as performance.figures reads them: dates, float outcomes."""
    out = stored.copy()
    for column in ("as_of", "target"):
        out[column] = [_as_date(d) for d in out[column]]
    out["y"] = pd.to_numeric(out["y"], errors="coerce").astype(float)
    return out


def store(
    connection: Connection,
    watch: Watch,
    run_id: str,
    as_of: date,
    parts: Collection[str] = (JUDGED, DRIFT),
) -> None:
    """Replace the night's model_performance rows (`JUDGED`; the outcomes judged tonight
    are stored already, by judge_night) and its input_drift rows (`DRIFT`): `parts` says
    which."""
    night = {"run_id": run_id, "as_of": as_of}
    for table, frame, part in (
        (model_performance, watch.performance, JUDGED),
        (input_drift, watch.drift, DRIFT),
    ):
        if part not in parts:
            continue
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
    """A query's rows as a frame, read with the cyclic GC paused (queries.gc_paused)."""
    with gc_paused():
        result = connection.execute(query)
        columns = list(result.keys())
        values = list(zip(*result.all())) or [()] * len(columns)
    return pd.DataFrame({c: list(v) for c, v in zip(columns, values, strict=True)}, columns=columns)
