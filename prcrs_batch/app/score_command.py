"""`prcrs-batch score`: patients scored from lab rows given by hand, through the nightly path.

The rows are put in a scratch, in-memory warehouse with the contract's tables (no unique
keys: duplicates reach the job as they would from a real warehouse) and read back by the
nightly queries and `compute.score_night`, so the same rows give the same numbers as the
nightly run: the same lookback window, cleaning, units, features, models, calibration,
recommended model and explanations. Nothing is written to the results database; earlier
nights are not read (every alert reads `new`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Column, MetaData, Table, create_engine, insert
from sqlalchemy.pool import StaticPool

from prcrs_batch.devdata import csv_input
from prcrs_batch.modeling.store import ModelBundle
from prcrs_batch.nightly.alert_states import HISTORY_COLUMNS
from prcrs_batch.nightly.compute import ScoredNight, score_night
from prcrs_batch.nightly.scoring import COLUMNS as SCORE_COLUMNS
from prcrs_batch.results.nights import plain_rows
from prcrs_batch.settings import Settings
from prcrs_batch.warehouse.contract import warehouse_metadata
from prcrs_batch.warehouse.queries import CONTRACT, Window, read_night

LAB_COLUMNS = ["patient_id", "collected_at", "analyte", "value", "unit"]
ISSUE_FIELDS = ["analyte", "collected_at", "raw_value", "unit", "reason"]


class InputError(ValueError):
    """What cannot be scored at all: rows that are not a table, missing columns, no rows,
    models that cannot be loaded."""


def read_rows(data: bytes, kind: str, name: str = "<stdin>") -> pd.DataFrame:
    """Lab rows from CSV or JSON-lines bytes, the contract's lab_results columns, as text.

    Read strictly: a file that is not UTF-8 text, a CSV row with the wrong number of
    fields or a header with another delimiter, a line that is not a JSON object: one
    InputError naming the file and the line; columns are never shifted.

    >>> read_rows(b"patient_id,collected_at,analyte,value,unit\\np1,2026-11-26 06:00,il6,<2,pg/mL",
    ...           "csv")["value"].tolist()
    ['<2']
    """
    try:
        text = csv_input.decode(data, name)
        if kind == "csv":
            frame = csv_input.read_csv(
                text, name, expected=LAB_COLUMNS, dtype=str, keep_default_na=False
            ).frame
        else:
            frame = pd.DataFrame(_json_lines(text, name), dtype=object)
    except csv_input.InputFileError as exc:
        raise InputError(str(exc)) from None
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{name}: cannot read the lab rows as {kind}: {exc}") from None
    missing = [c for c in LAB_COLUMNS if c not in frame.columns and c != "unit"]
    if missing:
        raise InputError(f"{name}: lab rows lack the column(s) {', '.join(missing)} ({kind})")
    frame = frame.reindex(columns=LAB_COLUMNS)
    return frame.map(lambda v: None if v is None or v == "" else v)  # empty CSV cell: NULL


def _json_lines(text: str, name: str) -> list[dict[str, Any]]:
    """One JSON object per non-blank line, or InputFileError naming the line."""
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise csv_input.InputFileError(f"{name}, line {number}: not JSON: {exc.msg}") from None
        if not isinstance(record, dict):
            raise csv_input.InputFileError(
                f"{name}, line {number}: a JSON {type(record).__name__}, not an object"
            )
        records.append(record)
    return records


def lab_option(text: str, patient_id: str, collected_at: datetime) -> dict[str, Any]:
    """One `--lab` option, "il6=1240" or "crp=85 mg/L", as a lab row.

    >>> lab_option("crp=85 mg/L", "p1", datetime(2026, 11, 26, 6))["unit"]
    'mg/L'
    """
    code, sep, rest = text.partition("=")
    if not sep or not code.strip():
        raise InputError(f"--lab {text!r}: expected ANALYTE=VALUE [UNIT], e.g. il6=1240")
    value, _, unit = rest.strip().partition(" ")
    return {
        "patient_id": patient_id,
        "collected_at": collected_at,
        "analyte": code.strip(),
        "value": value or None,
        "unit": unit.strip() or None,
    }


def gather_rows(
    data: bytes | None,
    kind: str,
    labs: tuple[str, ...],
    patient_id: str,
    collected_at: datetime,
    name: str = "<stdin>",
) -> pd.DataFrame:
    """The rows of a file's bytes (or None) and of the `--lab` options, together."""
    rows = read_rows(data, kind, name) if data is not None else pd.DataFrame(columns=LAB_COLUMNS)
    extra = pd.DataFrame(
        [lab_option(lab, patient_id, collected_at) for lab in labs], columns=LAB_COLUMNS
    )
    parts = [part for part in (rows, extra) if len(part)]
    if not parts:
        raise InputError("no lab rows: give a file (or - for standard input) and/or --lab")
    return pd.concat(parts, ignore_index=True)


@dataclass(frozen=True)
class Request:
    """What to score: the rows, the night, and the optional patient facts."""

    labs: pd.DataFrame  # LAB_COLUMNS
    as_of: date
    infusion_date: date | None = None  # None: the as-of date (day 0)
    grade: int | None = None  # latest CRS grade on the as-of date


def score_request(settings: Settings, bundle: ModelBundle, request: Request) -> ScoredNight:
    """Score every patient in `request.labs` for `request.as_of`, as the nightly job would."""
    engine = create_engine("sqlite://", poolclass=StaticPool)
    scratch = MetaData()
    for table in warehouse_metadata.sorted_tables:  # columns only: no keys, all nullable
        Table(table.name, scratch, *[Column(c.name, c.type) for c in table.columns])
    scratch.create_all(engine)
    labs = request.labs.copy()
    labs["collected_at"] = pd.to_datetime(labs["collected_at"], errors="coerce")
    labs["value"] = labs["value"].map(lambda v: None if v is None else str(v))
    ids = sorted({str(p) for p in labs["patient_id"].dropna()})
    infused = request.infusion_date or request.as_of
    with engine.begin() as connection:
        tables = scratch.tables
        if ids:
            rows = [{"patient_id": p, "infusion_date": infused} for p in ids]
            connection.execute(insert(tables["cart_infusions"]), rows)
        if len(labs):
            connection.execute(insert(tables["lab_results"]), plain_rows(labs))
        if request.grade is not None and ids:
            grades = [
                {"patient_id": p, "assessed_on": request.as_of, "grade": request.grade} for p in ids
            ]
            connection.execute(insert(tables["crs_assessments"]), grades)
    window = Window.for_night(  # the contract tables made above, whatever the site's model
        settings,
        request.as_of,
        now=datetime.now(settings.zone).replace(tzinfo=None),
        source=CONTRACT,
    )
    night = read_night(engine, window)
    empty = pd.DataFrame(columns=HISTORY_COLUMNS)
    scored = score_night(settings, bundle, night, window, read_history=lambda ids: empty)
    engine.dispose()
    return scored


def answer(settings: Settings, request: Request, as_json: bool) -> str:
    """Load the models, score the request, and give the answer as text or JSON."""
    from prcrs_batch.errors import describe
    from prcrs_batch.modeling.device import set_torch_threads
    from prcrs_batch.modeling.store import load_models
    from prcrs_batch.nightly.compute import night_tiers

    set_torch_threads(settings.torch_threads)
    try:
        bundle = load_models(settings.model_dir, device=settings.device)
        night_tiers(settings, bundle)  # a manifest without thresholds is refused here
    except Exception as exc:
        raise InputError(f"cannot load the models: {describe(exc)}") from None
    scored = score_request(settings, bundle, request)
    if as_json:
        return json.dumps(as_json_list(scored, request.as_of), indent=2)
    return as_text(scored, request.as_of, settings)


def default_collected_at(settings: Settings, as_of: date) -> datetime:
    """When a `--lab` value counts as collected: now on today's night, else the end of the
    as-of day (the nightly cut-off)."""
    now = datetime.now(settings.zone).replace(tzinfo=None)
    end = datetime.combine(as_of + timedelta(days=1), datetime.min.time()) - timedelta(minutes=1)
    return min(now, end)


def as_json_list(scored: ScoredNight, as_of: date) -> list[dict[str, Any]]:
    """One object per patient (the README's `score --json` schema)."""
    out = []
    for s in scored.summaries:
        risks = scored.scores[scored.scores["patient_id"] == s.patient_id]
        explained = scored.explained[scored.explained["patient_id"] == s.patient_id]
        issues = scored.issues[scored.issues["patient_id"] == s.patient_id]
        out.append(
            {
                "patient_id": s.patient_id,
                "as_of": as_of.isoformat(),
                "recommended_model": s.model,
                "alert": s.alert,
                "why": s.why,
                "risks": _json_rows(risks[SCORE_COLUMNS[1:]]),
                "explanations": _json_rows(explained.drop(columns="patient_id")),
                "data_issues": _json_rows(issues[ISSUE_FIELDS]),
            }
        )
    return out


def _json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """nights.plain_rows made JSON-ready (`_json_value`)."""
    return [{k: _json_value(v) for k, v in row.items()} for row in plain_rows(frame)]


def _json_value(value: object) -> object:
    """ISO text for a time, None for a non-finite number, else the value."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def as_text(scored: ScoredNight, as_of: date, settings: Settings) -> str:
    """The short human answer, in the report's language: per patient the recommended model's
    three risks, why that model, the labs that raised the risk most, the values set aside."""
    from prcrs_batch.report.render import gettext_for
    from prcrs_batch.report.wording import Wording, format_pct

    _ = gettext_for(None, settings.report_language)
    wording = Wording(_, read_days_after=0)  # labs given today, read today
    reasons = scored.reasons()
    model_word = _("model")
    lines = []
    for s in scored.summaries:
        state = (
            _("ALERT")
            if s.alert
            else _("watch")
            if s.watch
            else _("already severe")
            if s.already_severe
            else _("no alert")
        )
        at = scored.tiers.alert_for(s.model)
        lines.append(f"{s.patient_id}  {as_of.isoformat()}  {state} (≥ {at * 100:g}%)")
        if s.model is not None:
            risks = " / ".join(format_pct(r) for r in s.risks)
            lines.append(
                "  " + _("risk of severe CRS within 1 / 2 / 3 days: %(risks)s") % {"risks": risks}
            )
        lines.append(f"  {model_word} {s.model or '-'}: {wording.why(s)}")
        labs = reasons.get(s.patient_id, ())
        if labs:
            lines.append(
                "  "
                + _("Labs that raised the %(days)s-day risk most:") % {"days": labs[0].horizon_days}
            )
            lines += [f"    - {wording.lab(line, as_of)}" for line in labs]
        mine = scored.issues[scored.issues["patient_id"] == s.patient_id]
        for analyte, raw, reason in mine[["analyte", "raw_value", "reason"]].itertuples(
            index=False
        ):
            lines.append(f"  ! {analyte} {raw!s}: {wording.reason(reason)}")
    return "\n".join(lines) or _("no patient to score: no lab row had a usable patient id")
