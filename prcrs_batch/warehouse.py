"""Read-only access to the warehouse contract: runs the queries in sql/ with bound parameters.

The contract (README "Warehouse contract"): cart_infusions, lab_results, crs_assessments.
A site maps its own warehouse onto these names with views, or edits the files in sql/.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache

import pandas as pd
from sqlalchemy import Connection, Date, DateTime, Integer, String, TextualSelect, bindparam, text
from sqlalchemy.exc import SQLAlchemyError

from prcrs_batch.resources import sql_dir


class WarehouseError(RuntimeError):
    """The warehouse does not answer the contract (missing table or column, bad types)."""


@dataclass(frozen=True)
class Window:
    """What one night reads: active infusions and the lab lookback window, as bound parameters."""

    as_of: date
    active_days: int
    lookback_hours: int

    @property
    def end(self) -> datetime:
        """The data cut-off: the end of the as-of day (exclusive)."""
        return datetime.combine(self.as_of + timedelta(days=1), datetime.min.time())

    def params(self) -> dict[str, object]:
        return {
            "as_of": self.as_of,
            "first_infusion": self.as_of - timedelta(days=self.active_days),
            "window_start": self.end - timedelta(hours=self.lookback_hours),
            "window_end": self.end,
        }


_PARAM_TYPES = {
    "as_of": Date,
    "first_infusion": Date,
    "last_infusion": Date,
    "window_start": DateTime,
    "window_end": DateTime,
}


@cache
def _query(name: str, **columns: type) -> TextualSelect:
    sql = (sql_dir() / f"{name}.sql").read_text("utf-8")
    statement = text(sql)
    binds = [bindparam(p, type_=t()) for p, t in _PARAM_TYPES.items() if f":{p}" in sql]
    return statement.bindparams(*binds).columns(**{k: v() for k, v in columns.items()})


def _frame(
    connection: Connection, statement: TextualSelect, params: dict, columns: list[str]
) -> pd.DataFrame:
    sql = str(statement.element)
    used = {k: v for k, v in params.items() if f":{k}" in sql}
    try:
        rows = connection.execute(statement, used).all()
    except SQLAlchemyError as exc:
        raise WarehouseError(
            f"warehouse query failed: {exc.__class__.__name__}: {getattr(exc, 'orig', None) or exc}"
        ) from exc
    # Plain tuples: pandas inspects each Row object otherwise, ten times slower.
    return pd.DataFrame([tuple(row) for row in rows], columns=columns)


def active_cohort(*, connection: Connection, window: Window) -> pd.DataFrame:
    """patient_id, infusion_date, day_since_infusion of every active patient."""
    statement = _query("active_cohort", patient_id=String, infusion_date=Date)
    frame = _frame(connection, statement, window.params(), ["patient_id", "infusion_date"])
    frame["patient_id"] = frame["patient_id"].astype(str)
    frame["day_since_infusion"] = [(window.as_of - d).days for d in frame["infusion_date"]]
    return frame


def latest_labs(*, connection: Connection, window: Window) -> pd.DataFrame:
    """Raw (uncleaned) latest result per active patient and analyte in the lookback window."""
    statement = _query(
        "latest_labs",
        patient_id=String,
        collected_at=DateTime,
        analyte=String,
        value=String,
        unit=String,
    )
    return _frame(
        connection,
        statement,
        window.params(),
        ["patient_id", "collected_at", "analyte", "value", "unit"],
    )


def latest_crs_grades(*, connection: Connection, window: Window) -> pd.DataFrame:
    """patient_id, assessed_on, grade: the latest assessment on or before the as-of date."""
    statement = _query("latest_crs_grades", patient_id=String, assessed_on=Date, grade=Integer)
    return _frame(connection, statement, window.params(), ["patient_id", "assessed_on", "grade"])


def crs_assessments(
    *, connection: Connection, first_infusion: date, last_infusion: date
) -> pd.DataFrame:
    """Every assessment of the patients infused in a date range (training labels)."""
    statement = _query("crs_assessments", patient_id=String, assessed_on=Date, grade=Integer)
    params = {"first_infusion": first_infusion, "last_infusion": last_infusion}
    return _frame(connection, statement, params, ["patient_id", "assessed_on", "grade"])
