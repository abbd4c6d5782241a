"""Writes a night's run, scores and data-quality decisions; reads back what the report needs.

A run row and all its rows commit in one transaction (the caller's), and re-running an
as-of date replaces that date's rows, so a night is never duplicated nor half-written;
only an earlier run whose report was emailed keeps its rows, beside the current run's
(tables.in_current_run tells them apart), so that what on-call received stays queryable.
Two runs of one night never overlap (locks.py): the write itself is serialised per night.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import chain, islice

import pandas as pd
from sqlalchemy import Connection, Table, and_, delete, func, insert, select, update

from prcrs_batch.nightly import scoring
from prcrs_batch.results.locks import serialise_night
from prcrs_batch.results.tables import (
    REPORT_PENDING,
    REPORTED,
    SUPERSEDED,
    crs_patient_nights,
    crs_risk_explanations,
    crs_risk_scores,
    data_quality_issues,
    in_current_run,
    prediction_outcomes,
    scoring_runs,
)
from prcrs_batch.task.data_day import target_day

log = logging.getLogger(__name__)
SCORE_COLUMNS = scoring.COLUMNS  # one row per patient, model and horizon
INTEGER_SCORE_COLUMNS = {"horizon_days": int, "inputs_observed": int, "inputs_expected": int}
INSERT_BATCH = 10_000  # rows made Python objects at a time (memory), and per INSERT (not COPY)
ISSUE_COLUMNS = ["patient_id", "analyte", "collected_at", "raw_value", "unit", "reason"]
MAX_ERROR_CHARS = 2000  # of a failed night's error kept on its run row


@dataclass
class RunInfo:
    """One night's run: its scoring_runs row, and the facts the report states about it."""

    run_id: str
    as_of: date
    started_at: datetime
    data_cutoff: datetime  # end of the as-of day: results collected later are not used
    model_version: str | None = None
    status: str = "running"
    finished_at: datetime | None = None
    n_patients: int = 0
    n_scores: int = 0
    n_alerts: int = 0
    n_data_issues: int = 0
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # what the report must say about the night
    read_at: datetime | None = None  # warehouse wall clock when read (a live night: before the
    # cut-off); the report ages labs from the earlier of the two

    def row(self) -> dict[str, object]:
        """The scoring_runs columns."""
        return {
            "run_id": self.run_id,
            "as_of": self.as_of,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "status": self.status,
            "n_patients": self.n_patients,
            "n_scores": self.n_scores,
            "n_alerts": self.n_alerts,
            "n_data_issues": self.n_data_issues,
            "model_version": self.model_version,
            "error": None if self.error is None else self.error[:MAX_ERROR_CHARS],
        }


def _none_if_nan(value: object) -> object:
    return None if isinstance(value, float) and math.isnan(value) else value


def replace_night(
    *,
    connection: Connection,
    run: RunInfo,
    scores: pd.DataFrame,
    issues: pd.DataFrame,
    patient_nights: pd.DataFrame | None = None,
    explanations: pd.DataFrame | None = None,
) -> None:
    """Replace the rows stored for run.as_of by this run's: its scores, its patient nights
    (PATIENT_NIGHT_COLUMNS), its explanations (explanations.COLUMNS) and its issues.

    Earlier runs of the night are kept as `superseded`. Their rows go, except those of a
    run whose report was emailed (report_sent_at set): what on-call received stays, beside
    this run's. The night's predictions' outcomes go either way, to be judged again on
    this run's rows.
    """
    as_of = run.as_of
    serialise_night(connection, as_of)
    r = scoring_runs.c
    never_emailed = select(r.run_id).where(r.as_of == as_of, r.report_sent_at.is_(None))
    for table in (crs_risk_scores, crs_patient_nights, crs_risk_explanations):
        connection.execute(
            delete(table).where(table.c.as_of == as_of, table.c.run_id.in_(never_emailed))
        )
    connection.execute(delete(prediction_outcomes).where(prediction_outcomes.c.as_of == as_of))
    connection.execute(
        delete(data_quality_issues).where(data_quality_issues.c.run_id.in_(never_emailed))
    )
    connection.execute(
        update(scoring_runs)
        .where(r.as_of == as_of, r.status.in_(REPORTED))
        .values(status=SUPERSEDED)
    )
    connection.execute(insert(scoring_runs), [run.row()])
    night = {"run_id": run.run_id, "as_of": as_of}
    score_rows = (
        {
            **{k: _none_if_nan(v) for k, v in zip(SCORE_COLUMNS, row)},
            **night,
            "target_date": target_day(as_of, row[2]),
            "model_version": run.model_version,
            "created_at": run.finished_at,
        }
        for row in _python_rows(scores[SCORE_COLUMNS].astype(INTEGER_SCORE_COLUMNS))
    )
    insert_rows(connection, crs_risk_scores, score_rows)
    for table, frame in (
        (crs_patient_nights, patient_nights),
        (crs_risk_explanations, explanations),
    ):
        if frame is not None and len(frame):
            insert_rows(connection, table, [{**night, **row} for row in plain_rows(frame)])
    issue_rows = (
        {
            "run_id": run.run_id,
            "patient_id": _none_if_nan(patient_id),
            "analyte": _none_if_nan(analyte),
            "collected_at": None
            if pd.isna(collected_at)
            else pd.Timestamp(collected_at).to_pydatetime(),
            # Whole: labs/screening already cut long text to an excerpt stating its length.
            "raw_value": None if raw_value is None or pd.isna(raw_value) else str(raw_value),
            "unit": None if unit is None or pd.isna(unit) else str(unit),
            "reason": reason,
        }
        for patient_id, analyte, collected_at, raw_value, unit, reason in issues[
            ISSUE_COLUMNS
        ].itertuples(index=False, name=None)
    )
    insert_rows(connection, data_quality_issues, issue_rows)


def plain_rows(frame: pd.DataFrame) -> list[dict[str, object]]:
    """Rows as dicts of plain Python values (None for NaN/NaT, datetime for Timestamp)."""
    columns = [str(c) for c in frame.columns]
    out = []
    for row in frame.astype(object).itertuples(index=False, name=None):
        values = []
        for value in row:
            if value is None or (not isinstance(value, str) and pd.isna(value)):
                value = None
            elif isinstance(value, pd.Timestamp):
                value = value.to_pydatetime()
            elif hasattr(value, "item"):  # numpy scalar
                value = value.item()
            values.append(value)
        out.append(dict(zip(columns, values, strict=True)))
    return out


def _python_rows(frame: pd.DataFrame) -> Iterator[tuple]:
    """Rows as tuples of Python ints, floats and strings (what both drivers and COPY take
    as they are), converted INSERT_BATCH rows at a time: never the whole night at once."""
    for start in range(0, len(frame), INSERT_BATCH):
        part = frame.iloc[start : start + INSERT_BATCH]
        yield from zip(*(part[c].tolist() for c in part.columns))


def insert_rows(connection: Connection, table: Table, rows: Iterable[dict]) -> None:
    """Insert rows in the caller's transaction as they come: PostgreSQL gets one COPY (a
    night is ~200k rows at 10,000 patients), others INSERT_BATCH rows per statement."""
    rows = iter(rows)
    if connection.dialect.name != "postgresql":
        while batch := list(islice(rows, INSERT_BATCH)):
            connection.execute(insert(table), batch)
        return
    first = next(rows, None)
    if first is None:
        return
    from psycopg import sql

    columns = list(first)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    driver = connection.connection.driver_connection
    assert driver is not None  # a live connection inside the caller's transaction
    with driver.cursor() as cursor:  # same transaction
        with cursor.copy(statement) as copy:
            for row in chain([first], rows):
                copy.write_row([row[c] for c in columns])


def record_failed_run(*, connection: Connection, run: RunInfo) -> None:
    """Keep a failed night's run row (with its error); the date's earlier rows stay untouched."""
    serialise_night(connection, run.as_of)
    connection.execute(insert(scoring_runs), [run.row()])


def score_history(
    *, connection: Connection, since: date, before: date, trend_patients: list[str]
) -> pd.DataFrame:
    """Calibrated risks stored for nights in [since, before) that the report needs.

    Every patient's latest earlier night per model (the report's "previous run"), and every
    night for `trend_patients` (those it may chart), not the whole window: a week of a large
    cohort is over a million rows.
    """
    s = crs_risk_scores.c
    current = in_current_run(crs_risk_scores)
    in_window = (s.as_of >= since, s.as_of < before, s.status == "ok", current)
    last = (
        select(s.patient_id, s.model, func.max(s.as_of).label("as_of"))
        .where(*in_window)
        .group_by(s.patient_id, s.model)
        .subquery()
    )
    columns = (s.patient_id, s.as_of, s.model, s.horizon_days, s.calibrated_risk)
    latest = (
        select(*columns)
        .join(
            last,
            and_(
                s.patient_id == last.c.patient_id, s.model == last.c.model, s.as_of == last.c.as_of
            ),
        )
        .where(s.status == "ok", current)
    )
    rows = [tuple(row) for row in connection.execute(latest)]  # tuples: fast into pandas
    for start in range(0, len(trend_patients), 500):  # bounded IN lists
        chunk = trend_patients[start : start + 500]
        trends = select(*columns).where(*in_window, s.patient_id.in_(chunk))
        rows += [tuple(row) for row in connection.execute(trends)]
    frame = pd.DataFrame(
        rows, columns=["patient_id", "as_of", "model", "horizon_days", "calibrated_risk"]
    )
    return frame.drop_duplicates(["patient_id", "as_of", "model", "horizon_days"])


def stored_run(*, connection: Connection, as_of: date) -> str | None:
    """The run id whose rows are stored for the night (its latest reported run), or None."""
    r = scoring_runs.c
    query = (
        select(r.run_id)
        .where(r.as_of == as_of, r.status.in_(REPORTED))
        .order_by(r.started_at.desc())
        .limit(1)
    )
    return connection.execute(query).scalar_one_or_none()


def stored_scores(*, connection: Connection, as_of: date) -> pd.DataFrame:
    """The current run's rows stored for one night, ordered; used by tests and backfill
    checks."""
    columns = [crs_risk_scores.c[name] for name in ["as_of", *SCORE_COLUMNS]]
    query = (
        select(*columns)
        .where(crs_risk_scores.c.as_of == as_of, in_current_run(crs_risk_scores))
        .order_by(
            crs_risk_scores.c.patient_id, crs_risk_scores.c.model, crs_risk_scores.c.horizon_days
        )
    )
    rows = [tuple(row) for row in connection.execute(query)]
    return pd.DataFrame(rows, columns=["as_of", *SCORE_COLUMNS])


def mark_report(
    *,
    connection: Connection,
    run_id: str,
    path: str | None = None,
    sent_at: datetime | None = None,
    status: str | None = None,
) -> None:
    """Record a night's report path, sending time and/or `report_status` on its run row."""
    values: dict[str, object] = {}
    if path is not None:
        values["report_path"] = path
    if sent_at is not None:
        values["report_sent_at"] = sent_at
    if status is not None:
        values["report_status"] = status
    if values:
        connection.execute(
            update(scoring_runs).where(scoring_runs.c.run_id == run_id).values(**values)
        )


def undelivered_reports(*, connection: Connection, before: date) -> list[dict]:
    """Reported runs before a date whose report is `pending` (written, kept, never sent),
    oldest night first, with when they ran (outbox.py resends or expires them)."""
    query = (
        select(
            scoring_runs.c.run_id,
            scoring_runs.c.as_of,
            scoring_runs.c.report_path,
            scoring_runs.c.started_at,
            scoring_runs.c.finished_at,
        )
        .where(
            scoring_runs.c.status.in_(REPORTED),
            scoring_runs.c.report_status == REPORT_PENDING,
            scoring_runs.c.report_path.is_not(None),
            scoring_runs.c.report_sent_at.is_(None),
            scoring_runs.c.as_of < before,
        )
        .order_by(scoring_runs.c.as_of)
    )
    return [dict(row._mapping) for row in connection.execute(query)]
