"""Read-only access to the warehouse contract: runs the queries in sql/ with bound parameters.

The contract (README "Warehouse contract"): cart_infusions, lab_results, crs_assessments.
A site maps its own warehouse onto these names with views, or edits the files in sql/; or,
with PRCRS_WAREHOUSE_MODEL=omop, the queries of sql/omop/ read an OMOP CDM v5.4 and return
the same columns with the same meaning (`Source`: the folder, the code lists as bound
parameters, and the LOINC code each lab row carries turned into its analyte code here).
Views type their columns as they like: ids may be integers, values numbers, timestamps
`timestamptz` or text. Every value read is normalised here, in one place: ids to text,
timestamps to naive wall-clock time in PRCRS_TIMEZONE (a PostgreSQL session reads its
`timestamptz` columns in that zone too), dates to dates; an unreadable one becomes NULL.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import Connection, Date, DateTime, Engine, TextClause, bindparam, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from prcrs_batch.errors import SafeMessage, describe, is_transient
from prcrs_batch.resources import sql_dir
from prcrs_batch.task.data_day import data_cutoff
from prcrs_batch.task.row_keys import screen_patients
from prcrs_batch.warehouse.code_lists import EXPANDING, CodeLists, query_params, read_code_lists

if TYPE_CHECKING:
    from prcrs_batch.settings import Settings


class WarehouseError(SafeMessage, RuntimeError):
    """The warehouse does not answer the contract (missing table or column, bad types)."""


@dataclass(frozen=True, eq=False)
class Source:
    """Which data model the warehouse holds, and what its queries need besides the window."""

    model: Literal["contract", "omop"] = "contract"
    schema: str | None = None  # PostgreSQL search_path (PRCRS_WAREHOUSE_SCHEMA)
    patient_id: str = "person_source_value"  # omop: the column shown as patient_id
    codes: CodeLists | None = None  # omop: the code lists (read_code_lists)

    @classmethod
    def from_settings(cls, settings: Settings) -> Source:
        """The source PRCRS_WAREHOUSE_MODEL / _SCHEMA / PRCRS_OMOP_* describe."""
        omop = settings.warehouse_model == "omop"
        return cls(
            model=settings.warehouse_model,
            schema=settings.warehouse_schema,
            patient_id=settings.omop_patient_id,
            codes=read_code_lists(settings.omop_codes_dir) if omop else None,
        )

    @property
    def folder(self) -> Path:
        """sql/ for the contract, sql/omop/ for an OMOP CDM."""
        return sql_dir() / "omop" if self.model == "omop" else sql_dir()

    def params(self) -> dict[str, object]:
        """The code lists and patient id column as bound parameters (omop only)."""
        if self.model != "omop":
            return {}
        return query_params(self.codes or read_code_lists(), self.patient_id)

    def analyte_codes(self, column: pd.Series) -> pd.Series:
        """The analyte column as the contract has it: an OMOP row's LOINC code -> analyte."""
        if self.model != "omop":
            return column
        return column.map((self.codes or read_code_lists()).analyte_of())


CONTRACT = Source()
UTC = ZoneInfo("UTC")


@dataclass(frozen=True)
class Window:
    """What one night reads: active infusions and the lab lookback window, as bound parameters."""

    as_of: date
    active_days: int
    lookback_hours: int
    timezone: str = "UTC"  # of the warehouse's wall-clock times (PRCRS_TIMEZONE)
    now: datetime | None = None  # results dated later are read, to be set aside as future
    source: Source = field(default=CONTRACT)  # the data model read (PRCRS_WAREHOUSE_MODEL)

    @classmethod
    def for_night(
        cls,
        settings: Settings,
        as_of: date,
        *,
        now: datetime | None = None,
        source: Source | None = None,
    ) -> Window:
        """Night `as_of` read as the settings say (PRCRS_ACTIVE_DAYS, _LOOKBACK_HOURS,
        _TIMEZONE), from the source PRCRS_WAREHOUSE_MODEL names unless `source` is given."""
        return cls(
            as_of=as_of,
            active_days=settings.active_days,
            lookback_hours=settings.lookback_hours,
            timezone=settings.timezone,
            now=now,
            source=source or Source.from_settings(settings),
        )

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def end(self) -> datetime:
        """The data cut-off: the end of the as-of (data) day, exclusive."""
        return data_cutoff(self.as_of)

    def params(self) -> dict[str, object]:
        return {
            "as_of": self.as_of,
            "first_infusion": self.as_of - timedelta(days=self.active_days),
            "window_start": self.end - timedelta(hours=self.lookback_hours),
            "window_end": self.end,
            "now": self.now,
        } | self.source.params()


_PARAM_TYPES = {
    "as_of": Date,
    "first_infusion": Date,
    "last_infusion": Date,
    "window_start": DateTime,
    "window_end": DateTime,
    "now": DateTime,
    "fresh_since": DateTime,  # feed_freshness.sql (freshness.py)
}


def render(folder: Path, name: str, dialect: str = "postgresql") -> str:
    """The SQL of `name`.sql in a folder (sql/ or sql/omop/) for a database `dialect`
    (postgresql, sqlite), its shared parts included.

    A query file is a Jinja template only for `{% include "shared/..." %}`: the active
    patients and a day's grade are written once, in the folder's shared/ (a site edits one
    file per concept); `dialect` is there for the one expression the two databases spell
    differently (a date plus one day). Nothing else is rendered into the SQL: every value is
    a bound parameter. An unknown template variable fails rather than rendering empty.
    """
    environment = Environment(
        loader=FileSystemLoader(folder),
        undefined=StrictUndefined,
        autoescape=False,  # SQL, not HTML: no value is ever rendered into it
    )
    return environment.get_template(f"{name}.sql").render(dialect=dialect)


@cache
def query(folder: Path, name: str, dialect: str = "postgresql") -> TextClause:
    """The query `name`.sql of a folder (sql/ or sql/omop/), rendered once per dialect
    (`render`), its parameters typed; a code list (sql/omop/) is an expanding parameter."""
    sql = render(folder, name, dialect)
    binds = [bindparam(p, type_=t()) for p, t in _PARAM_TYPES.items() if f":{p}" in sql]
    binds += [bindparam(p, expanding=True) for p in sorted(EXPANDING) if f":{p}" in sql]
    return text(sql).bindparams(*binds)


def prepare(connection: Connection, source: Source, zone: ZoneInfo | None = None) -> None:
    """PostgreSQL: read timestamptz in `zone` and the tables of PRCRS_WAREHOUSE_SCHEMA, for
    this transaction only (both bound parameters)."""
    if connection.dialect.name != "postgresql":
        return
    if zone is not None:
        connection.execute(text("SELECT set_config('TimeZone', :zone, true)"), {"zone": str(zone)})
    if source.schema:
        connection.execute(
            text("SELECT set_config('search_path', :path, true)"), {"path": source.schema}
        )


BATCH_ROWS = 50_000  # rows fetched and made columns at a time (scripts/bench_read.py)
Columns = Mapping[str, Callable[[pd.Series], Any] | None]  # name -> normalise (None: as read)


def _read(
    connection: Connection,
    name: str,
    params: dict,
    columns: Columns,
    zone: ZoneInfo,
    source: Source = CONTRACT,
) -> pd.DataFrame:
    """The query's rows as a frame, each column normalised. Read BATCH_ROWS rows at a time
    (PostgreSQL: from a server-side cursor), each batch made columns at once: a night's
    millions of rows are never all Python rows at once, nor all in libpq's memory."""
    statement = query(source.folder, name, connection.dialect.name)
    used = {k: v for k, v in params.items() if f":{k}" in statement.text}
    name = f"{source.folder.name}/{name}" if source.model != "contract" else name
    shared: dict[object, object] = {}  # one object per distinct string, over all the batches
    try:
        prepare(connection, source, zone)  # timestamptz read and compared in the zone
        streamed = {"stream_results": True}  # yield_per is ignored for text(): size below
        result = connection.execute(statement, used, execution_options=streamed)
        if len(keys := list(result.keys())) != len(columns):  # rows are read by position
            raise WarehouseError(f"warehouse query {name}.sql returned {keys}, not {list(columns)}")
        with gc_paused():
            frames = [_frame(batch, columns, shared) for batch in result.partitions(BATCH_ROWS)]
    except DBAPIError as exc:
        if is_transient(exc):
            raise  # results.engines.with_db_retries retries it
        raise WarehouseError(f"warehouse query {name}.sql failed: {describe(exc)}") from exc
    except SQLAlchemyError as exc:
        raise WarehouseError(f"warehouse query {name}.sql failed: {describe(exc)}") from exc
    return pd.concat(frames or [_frame([], columns, shared)], ignore_index=True)


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic GC during a read (which makes no cycles): each batch's row objects live long
    enough to reach the oldest generation, and collecting it every batch or two nearly
    doubled the read's CPU time (scripts/bench_read.py)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _frame(rows: Sequence[Sequence[Any]], columns: Columns, shared: dict) -> pd.DataFrame:
    """Rows -> frame, each column normalised by its function, then its equal strings made
    one object (`_share`)."""
    by_column = dict(zip(columns, zip(*rows)))  # no tuple per row: fewer objects to collect
    frame = pd.DataFrame(by_column, columns=list(columns), dtype=object)
    for name, normalise in columns.items():
        if normalise is not None:
            frame[name] = normalise(frame[name])
        frame[name] = _share(frame[name], shared)
    return frame


def _share(column: pd.Series, shared: dict[object, object]) -> pd.Series:
    """A text column (NULLs aside) with each string replaced by the first equal one in
    `shared`: a night's rows hold far fewer distinct ids, analytes, units and values than
    rows, and the database hands over a new object for each. Other columns: as they are."""
    if column.dtype != object or pd.api.types.infer_dtype(column, skipna=True) != "string":
        return column
    values = column.to_numpy()  # a NULL (None or NaN) is its own key: kept as read
    return pd.Series(list(map(shared.setdefault, values, values)), index=column.index, dtype=object)


def _each_distinct(column: pd.Series, convert: Callable[[Any], Any]) -> list[Any]:
    """convert() of each value, computed once per distinct value."""
    seen: dict[Any, Any] = {}
    out = []
    for value in column:
        try:
            if value not in seen:
                seen[value] = convert(value)
            out.append(seen[value])
        except TypeError:  # unhashable (a JSON column)
            out.append(convert(value))
    return out


def _text(value: Any) -> str | None:
    """An id, code or unit as text: 12, 12.0 and Decimal("12") are all "12"."""
    if value is None or value is pd.NA or isinstance(value, float) and value != value:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return str(int(value))
    return str(value)


def _texts(column: pd.Series) -> pd.Series:
    if pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty"):
        return column
    return pd.Series(_each_distinct(column, _text), index=column.index, dtype=object)


def _timestamp(value: Any, zone: ZoneInfo) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(zone).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, date):
        return datetime.combine(value, time())
    if isinstance(value, str):
        try:
            return _timestamp(datetime.fromisoformat(value.strip()), zone)
        except ValueError:
            return None
    return None


def _timestamps(zone: ZoneInfo) -> Callable[[pd.Series], pd.Series]:
    def normalise(column: pd.Series) -> pd.Series:
        if pd.api.types.infer_dtype(column, skipna=True) in ("datetime", "empty"):
            try:  # all datetime objects: naive, or aware in one zone
                converted = pd.to_datetime(column)
            except (ValueError, TypeError):  # offsets differ: one by one below
                pass
            else:
                if converted.dt.tz is not None:
                    converted = converted.dt.tz_convert(zone).dt.tz_localize(None)
                return converted.astype("datetime64[us]")
        values = _each_distinct(column, lambda v: _timestamp(v, zone))
        return pd.Series(values, index=column.index, dtype="datetime64[us]")

    return normalise


def _dates(zone: ZoneInfo) -> Callable[[pd.Series], pd.Series]:
    def one(value: Any) -> date | None:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        stamp = _timestamp(value, zone)
        return None if stamp is None else stamp.date()

    return lambda column: pd.Series(_each_distinct(column, one), index=column.index, dtype=object)


def active_cohort(*, connection: Connection, window: Window) -> pd.DataFrame:
    """patient_id, infusion_date, day_since_infusion of every active patient."""
    columns = {"patient_id": _texts, "infusion_date": _dates(window.zone)}
    frame = _read(connection, "active_cohort", window.params(), columns, window.zone, window.source)
    frame["day_since_infusion"] = [
        None if d is None else (window.as_of - d).days for d in frame["infusion_date"]
    ]
    return frame


def latest_labs(*, connection: Connection, window: Window) -> pd.DataFrame:
    """The raw (uncleaned) results cleaning.clean_labs chooses from: every result of the active
    patients in the lookback window, those dated after `window.now`, those without a
    collection time, and the window's results without a patient id."""
    columns = {
        "patient_id": _texts,
        "collected_at": _timestamps(window.zone),
        "analyte": _texts,
        "value": None,  # text or number: cleaning.parse_value reads it
        "unit": _texts,
    }
    frame = _read(connection, "latest_labs", window.params(), columns, window.zone, window.source)
    frame["analyte"] = window.source.analyte_codes(frame["analyte"])
    return frame


def latest_crs_grades(*, connection: Connection, window: Window) -> pd.DataFrame:
    """patient_id, assessed_on, grade: the latest assessment on or before the as-of date.

    The grade is as read (row_keys.screen_patients checks it)."""
    columns = {"patient_id": _texts, "assessed_on": _dates(window.zone), "grade": None}
    params = window.params()
    grades = _read(connection, "latest_crs_grades", params, columns, window.zone, window.source)
    return grades.drop_duplicates("patient_id")


def optional_crs_grades(
    *, connection: Connection, window: Window
) -> tuple[pd.DataFrame, str | None]:
    """latest_crs_grades, or no grades and why when crs_assessments (optional for scoring)
    cannot be read or holds none for the active patients. Run it last on a connection:
    on PostgreSQL a failed query ends the transaction."""
    try:
        grades = latest_crs_grades(connection=connection, window=window)
    except WarehouseError as exc:
        empty = pd.DataFrame(columns=["patient_id", "assessed_on", "grade"])
        return empty, f"CRS grades unavailable: {exc}"
    if grades.empty:
        return grades, "CRS grades unavailable: crs_assessments holds none for the active patients"
    return grades, None


def crs_assessments(
    *,
    connection: Connection,
    first_infusion: date,
    last_infusion: date,
    source: Source = CONTRACT,
    zone: ZoneInfo = UTC,
) -> pd.DataFrame:
    """Every day's grade of the patients infused in a date range (training labels, the
    outcomes monitoring judges by); `assessed_on` read in the site's time zone `zone`
    (PRCRS_TIMEZONE), as latest_crs_grades reads it."""
    params: dict[str, object] = {"first_infusion": first_infusion, "last_infusion": last_infusion}
    params |= source.params()
    columns = {"patient_id": _texts, "assessed_on": _dates(zone), "grade": None}
    return _read(connection, "crs_assessments", params, columns, zone, source)


@dataclass
class NightInputs:
    """What the night reads from the warehouse, patients screened."""

    patients: pd.DataFrame  # active_cohort's columns + crs_grade, crs_grade_on
    labs: pd.DataFrame
    issues: pd.DataFrame  # patients set aside, grades not read (row_keys.screen_patients)
    notes: list[str]  # e.g. CRS grades unavailable


def read_night(warehouse: Engine, window: Window) -> NightInputs:
    """Active cohort, lab rows and latest CRS grades (optional: read last), in one
    warehouse connection; patients whose ids cannot key their rows are set aside."""
    with warehouse.connect() as connection:
        patients = active_cohort(connection=connection, window=window)
        labs = latest_labs(connection=connection, window=window)
        grades, grades_note = optional_crs_grades(connection=connection, window=window)
    grades = grades[["patient_id", "grade", "assessed_on"]]
    patients = patients.merge(grades, on="patient_id", how="left")
    renamed = patients.rename(columns={"grade": "crs_grade", "assessed_on": "crs_grade_on"})
    patients, issues = screen_patients(renamed)
    notes = [grades_note] if grades_note else []
    return NightInputs(patients=patients, labs=labs, issues=issues, notes=notes)
