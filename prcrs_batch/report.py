"""Stage 6: the alert report. Builds the context and renders templates/ with Jinja2.

Render and send are separate: this module returns a `Report` (subject, HTML, plain
text and the trend charts as PNG bytes keyed by content-id) and never talks SMTP;
`mailer.send_report` sends it. `write_report` keeps the HTML copy in the report dir.

Report rules (issue 4):
- a patient's recommended model is the first factor set in the paper's order
  (`panel.FACTOR_SETS`) whose status is `ok` at every horizon; failing that, the
  first that is `ok` at any horizon; failing that, the patient is not scorable;
- the patient is an alert when that model's calibrated risk at any horizon is
  >= the threshold (a risk exactly at the threshold is an alert);
- alerts come highest first (max risk over horizons), then a compact table of
  every other active patient, then a footer saying on which data the report rests.

The HTML is e-mail HTML: tables for layout, inline CSS only, no scripts, no remote
resources or fonts; images are referenced as `cid:<content-id>`.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import (
    ChoiceLoader,
    DictLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    select_autoescape,
)
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from prcrs_batch.panel import FACTOR_SETS, HORIZONS, SEVERE_GRADE, inputs_for, min_observed
from prcrs_batch.resources import template_dir

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE_DIR = template_dir()
TREND_DAYS = 14  # history window: trend charts and "previous run" look back this many days
MAX_CHARTS = 20  # trend charts for the highest alerts only: keeps the mail small and quick
TREND_SIZE_PX = (300, 100)  # CSS size of the trend chart; the PNG is drawn at 2x for phones
TOP_DATA_ISSUES = 3  # data-quality reasons named in the footer
MAX_ERROR_CHARS = 600  # of an error message quoted in a failure notice

MODELS: tuple[str, ...] = tuple(FACTOR_SETS)


@dataclass(frozen=True)
class Report:
    """A rendered report: what `mailer.send_report` sends and `write_report` keeps."""

    subject: str
    html: str
    text: str
    images: dict[str, bytes]  # content-id -> PNG bytes, referenced in the HTML as cid:<id>
    n_alerts: int = 0  # patients flagged (0 for an all-clear night or a failure notice)


@dataclass(frozen=True)
class ModelResult:
    """One model's outcome for one patient, across the horizons."""

    model: str
    risks: tuple[float | None, ...]  # calibrated risk per HORIZONS; None where not ok
    statuses: tuple[str, ...]  # status per HORIZONS; "missing" where no row came back
    inputs_observed: int | None
    inputs_expected: int
    detail: str

    @property
    def ok_everywhere(self) -> bool:
        return all(s == "ok" for s in self.statuses)

    @property
    def ok_anywhere(self) -> bool:
        return any(s == "ok" for s in self.statuses)

    def skipped_because(self) -> str:
        """Why the report did not use this model, in a few words."""
        if "error" in self.statuses:
            return f"{self.model}: model error"
        if "insufficient_inputs" in self.statuses:
            observed = "?" if self.inputs_observed is None else str(self.inputs_observed)
            return (
                f"{self.model}: {observed} of {self.inputs_expected} observed, "
                f"needs ≥ {min_observed(self.model)}"
            )
        if self.ok_anywhere:
            return f"{self.model}: not scored at every horizon"
        return f"{self.model}: not scored"


@dataclass(frozen=True)
class PatientSummary:
    """What the report says about one active patient."""

    patient_id: str
    day_since_infusion: int | None
    crs_grade: int | None
    model: str | None  # the recommended model; None when no model could score
    risks: tuple[float | None, ...]  # recommended model's risk per HORIZONS
    max_risk: float | None
    alert: bool
    why: str  # why this model, or why not scorable
    inputs_observed: int | None
    inputs_expected: int | None
    others: tuple[ModelResult, ...]  # the other models, in the recommended order
    previous: tuple[date, float] | None  # latest earlier run: its date, max risk on this model
    trend_cid: str | None = None
    labs_collected: str | None = None  # when the results used were collected (oldest - newest)

    @property
    def scorable(self) -> bool:
        return self.model is not None


def recommend_model(results: Sequence[ModelResult]) -> ModelResult | None:
    """The first result in the recommended order that is `ok` at every horizon.

    Falls back to the first that is `ok` at any horizon, else None. `results` must be
    in `FACTOR_SETS` order.

    >>> ok = ModelResult("no_cytokines", (0.1, 0.2, 0.3), ("ok",) * 3, 30, 35, "")
    >>> short = ModelResult("all", (None,) * 3, ("insufficient_inputs",) * 3, 3, 42, "")
    >>> recommend_model([short, ok]).model
    'no_cytokines'
    """
    for result in results:
        if result.ok_everywhere:
            return result
    for result in results:
        if result.ok_anywhere:
            return result
    return None


def format_pct(value: float | None) -> str:
    """A risk as a whole percentage, rounded down so it never seems to cross the threshold.

    >>> [format_pct(v) for v in (0.2999, 0.3, 0.004, None)]
    ['29%', '30%', '<1%', '–']
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value < 0.01:
        return "<1%"
    return f"{math.floor(value * 100 + 1e-9)}%"


def build_report(
    *,
    run: Mapping[str, Any],
    patients: pd.DataFrame,
    scores: pd.DataFrame,
    history: pd.DataFrame,
    data_issues: pd.DataFrame,
    threshold: float,
    template_dir: Path,
) -> Report:
    """Render the night's alert report (HTML and plain text) with its trend charts.

    Args:
        run: run_id, as_of (date), model_version, data_cutoff (datetime),
            n_patients, n_scores, n_data_issues.
        patients: one row per active patient: patient_id, infusion_date,
            day_since_infusion, crs_grade (nullable; latest assessed grade), and
            optionally labs_from / labs_to (collection times of the results used).
        scores: one row per patient x model x horizon: patient_id, model,
            horizon_days, probability, calibrated_risk, status, inputs_observed,
            inputs_expected, detail.
        history: previous nights: patient_id, as_of, model, horizon_days,
            calibrated_risk. Rows for this night or later are ignored.
        data_issues: reason, n for this night.
        threshold: alert threshold on calibrated risk, in [0, 1].
        template_dir: folder holding report.html, report.txt and base.html.

    Returns:
        The `Report`; nothing is written or sent.

    >>> import pandas as pd; from datetime import date, datetime
    >>> run = {"run_id": "r1", "as_of": date(2026, 11, 26), "model_version": "v1",
    ...        "data_cutoff": datetime(2026, 11, 26, 23, 59, 59), "n_patients": 0,
    ...        "n_scores": 0, "n_data_issues": 0}
    >>> empty = pd.DataFrame()
    >>> build_report(run=run, patients=empty, scores=empty, history=empty,
    ...              data_issues=empty, threshold=0.3,
    ...              template_dir=DEFAULT_TEMPLATE_DIR).subject
    'PrCRS 2026-11-26 - all clear'
    """
    as_of = _as_date(run["as_of"])
    recent = _recent_history(history, as_of)
    summaries = summarise_patients(
        patients=patients, scores=scores, history=recent, threshold=threshold, as_of=as_of
    )
    alerts = sorted(
        (s for s in summaries if s.alert), key=lambda s: (-(s.max_risk or 0.0), s.patient_id)
    )
    others = sorted(
        (s for s in summaries if not s.alert),
        key=lambda s: (not s.scorable, -(s.max_risk or 0.0), s.patient_id),
    )

    images: dict[str, bytes] = {}
    numbered_alerts = []
    charted = alerts[:MAX_CHARTS]
    alerted = recent[recent["patient_id"].isin([s.patient_id for s in charted])]
    trends = {key: frame for key, frame in alerted.groupby(["patient_id", "model"])}
    chart = _TrendChart(threshold) if alerts else None
    for number, summary in enumerate(alerts, start=1):
        if chart is None or number > MAX_CHARTS:
            numbered_alerts.append(summary)
            continue
        trend = trends.get((summary.patient_id, summary.model), recent.iloc[:0])
        png = chart.png(*_trend_series(summary, trend, as_of))
        cid = f"trend-{number}.{_safe_token(str(run['run_id']))}@prcrs-batch"
        images[cid] = png
        numbered_alerts.append(_with_cid(summary, cid))

    subject = make_subject(as_of, len(alerts))
    context: dict[str, Any] = {
        "subject": subject,
        "run": _run_context(run, as_of),
        "threshold": threshold,
        "threshold_pct": f"{threshold * 100:g}%",
        "alerts": numbered_alerts,
        "others": others,
        "n_patients": len(summaries),
        "n_not_scorable": sum(1 for s in summaries if not s.scorable),
        "horizons": HORIZONS,
        "severe_grade": SEVERE_GRADE,
        "models": MODELS,
        "data_issues": _data_issue_context(run, data_issues),
        "trend_size": TREND_SIZE_PX,
        "trend_days": TREND_DAYS,
        "max_charts": MAX_CHARTS,
    }
    env = template_environment(template_dir)
    html = env.get_template("report.html").render(context)
    text = env.get_template("report.txt").render(context)
    logger.info(
        "report built: %d patients, %d alerts, %d not scorable, %d charts",
        len(summaries),
        len(alerts),
        context["n_not_scorable"],
        len(images),
    )
    return Report(subject=subject, html=html, text=text, images=images, n_alerts=len(alerts))


def make_subject(as_of: date, n_alerts: int) -> str:
    """The mail subject: as-of date in ISO form and the number of alerts.

    >>> make_subject(date(2026, 11, 26), 2), make_subject(date(2026, 11, 26), 0)
    ('PrCRS 2026-11-26 - 2 alerts', 'PrCRS 2026-11-26 - all clear')
    """
    if n_alerts == 0:
        return f"PrCRS {as_of.isoformat()} - all clear"
    return f"PrCRS {as_of.isoformat()} - {n_alerts} alert{'s' if n_alerts != 1 else ''}"


def summarise_patients(
    *,
    patients: pd.DataFrame,
    scores: pd.DataFrame,
    history: pd.DataFrame,
    threshold: float,
    as_of: date,
) -> list[PatientSummary]:
    """One `PatientSummary` per active patient (and per scored patient not in `patients`)."""
    by_patient: dict[str, list[Mapping[str, Any]]] = {}
    if len(scores):
        for row in _records(scores):
            by_patient.setdefault(str(row["patient_id"]), []).append(row)
    info: dict[str, Mapping[str, Any]] = {}
    if len(patients):
        for row in _records(patients):
            info[str(row["patient_id"])] = row
    orphans = [pid for pid in by_patient if pid not in info]
    if orphans:
        logger.warning("%d scored patient(s) missing from the active cohort", len(orphans))

    previous = _previous_run_max(_recent_history(history, as_of))
    summaries = []
    for pid in [*info, *orphans]:
        results = _model_results(by_patient.get(pid, []))
        chosen = recommend_model(results)
        patient = info.get(pid, {})
        day = _optional_int(patient.get("day_since_infusion"))
        grade = _optional_int(patient.get("crs_grade"))
        collected = _collection_window(patient.get("labs_from"), patient.get("labs_to"))
        if chosen is None:
            summaries.append(
                PatientSummary(
                    patient_id=pid,
                    day_since_infusion=day,
                    crs_grade=grade,
                    model=None,
                    risks=(None,) * len(HORIZONS),
                    max_risk=None,
                    alert=False,
                    why=_not_scorable_reason(results),
                    inputs_observed=None,
                    inputs_expected=None,
                    others=tuple(results),
                    previous=None,
                    labs_collected=collected,
                )
            )
            continue
        present = [r for r in chosen.risks if r is not None]
        max_risk = max(present) if present else None
        summaries.append(
            PatientSummary(
                patient_id=pid,
                day_since_infusion=day,
                crs_grade=grade,
                model=chosen.model,
                risks=chosen.risks,
                max_risk=max_risk,
                alert=max_risk is not None and max_risk >= threshold,
                why=_why_model(chosen, results),
                inputs_observed=chosen.inputs_observed,
                inputs_expected=chosen.inputs_expected,
                others=tuple(r for r in results if r.model != chosen.model),
                previous=previous.get((pid, chosen.model)),
                labs_collected=collected,
            )
        )
    return summaries


def template_environment(template_dir: Path) -> Environment:
    """Jinja2 environment: HTML autoescaped, .txt rendered as plain text, strict names.

    The failure-notice templates have built-in fallbacks so that a night's failure
    notice goes out even when the deployed templates folder is broken.
    """
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(str(template_dir)), DictLoader(_FALLBACKS)]),
        autoescape=select_autoescape(enabled_extensions=("html", "htm"), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["pct"] = format_pct
    env.filters["model_label"] = lambda model: model if model else "none"
    return env


def write_report(report: Report, report_dir: Path, as_of: date, run_id: str) -> Path:
    """Write the HTML copy of a report, images inlined as data: URIs; return its path.

    The file is self-contained (opens in a browser without the mail's attachments)
    and is replaced atomically, so a rerun of the same night overwrites it whole.

    >>> import tempfile
    >>> r = Report("s", '<img src="cid:a@x">', "t", {"a@x": b"png"})
    >>> p = write_report(r, Path(tempfile.mkdtemp()), date(2026, 11, 26), "r1")
    >>> p.name, "data:image/png;base64,cG5n" in p.read_text()
    ('prcrs-2026-11-26-r1.html', True)
    """
    html = report.html
    for cid, png in report.images.items():
        data_uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        html = html.replace(f"cid:{cid}", data_uri)
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"prcrs-{as_of.isoformat()}-{_safe_token(str(run_id))}.html"
    fd, tmp = tempfile.mkstemp(dir=report_dir, prefix=".prcrs-", suffix=".html.tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(html)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("report written to %s", path)
    return path


def build_failure_notice(
    *, run: Mapping[str, Any], error: str, template_dir: Path | None = None
) -> Report:
    """A short notice that a night's run failed, so nobody reads silence as all clear.

    Credentials in URLs (`scheme://user:secret@host`) and `password=...` pairs are
    masked in the quoted error, which is also cut to a few hundred characters.

    >>> n = build_failure_notice(run={"run_id": "r1", "as_of": date(2026, 11, 26)},
    ...     error="could not connect to postgresql://batch:hunter2@db/warehouse")
    >>> n.subject, "hunter2" in n.text + n.html
    ('PrCRS 2026-11-26 - RUN FAILED, no risk scores', False)
    """
    as_of = _as_date(run.get("as_of")) if run.get("as_of") is not None else None
    day = as_of.isoformat() if as_of else "unknown date"
    subject = f"PrCRS {day} - RUN FAILED, no risk scores"
    context: dict[str, Any] = {
        "subject": subject,
        "run": _run_context(run, as_of),
        "error": scrub_secrets(error)[:MAX_ERROR_CHARS],
    }
    env = template_environment(template_dir or DEFAULT_TEMPLATE_DIR)
    html = env.get_template("failure.html").render(context)
    text = env.get_template("failure.txt").render(context)
    logger.info("failure notice built for run %s", context["run"]["run_id"])
    return Report(subject=subject, html=html, text=text, images={})


_URL_CREDENTIALS = re.compile(r"(?P<prefix>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@")
_KEY_VALUE_SECRET = re.compile(
    r"(?P<key>password|passwd|pwd|secret|token)(?P<sep>\s*[=:]\s*)(?P<value>[^\s,;&'\"]+)",
    re.IGNORECASE,
)


def scrub_secrets(text: str) -> str:
    """Mask passwords in URLs and `password=...` pairs.

    >>> scrub_secrets("postgresql+psycopg://u:p4ss@h/db password=x1 ok")
    'postgresql+psycopg://u:***@h/db password=*** ok'
    """
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['prefix']}***@", text)
    return _KEY_VALUE_SECRET.sub(lambda m: f"{m['key']}{m['sep']}***", text)


# --- helpers -------------------------------------------------------------------


def _model_results(rows: list[Mapping[str, Any]]) -> list[ModelResult]:
    """The patient's rows grouped per model, in the recommended order."""
    cells = {(str(r["model"]), _optional_int(r["horizon_days"])): r for r in rows}
    results = []
    for model in MODELS:
        risks: list[float | None] = []
        statuses: list[str] = []
        observed: int | None = None
        expected: int | None = None
        details: list[str] = []
        for horizon in HORIZONS:
            row = cells.get((model, horizon))
            if row is None:
                risks.append(None)
                statuses.append("missing")
                continue
            status = str(row.get("status"))
            risk = _optional_float(row.get("calibrated_risk"))
            if status == "ok" and risk is None:
                status = "error"  # an ok row without a risk is not usable
            statuses.append(status)
            risks.append(risk if status == "ok" else None)
            observed = _first_int(observed, row.get("inputs_observed"))
            expected = _first_int(expected, row.get("inputs_expected"))
            detail = row.get("detail")
            if isinstance(detail, str) and detail and detail not in details:
                details.append(detail)
        results.append(
            ModelResult(
                model=model,
                risks=tuple(risks),
                statuses=tuple(statuses),
                inputs_observed=observed,
                inputs_expected=expected if expected is not None else len(inputs_for(model)),
                detail="; ".join(details),
            )
        )
    return results


def _why_model(chosen: ModelResult, results: Sequence[ModelResult]) -> str:
    observed = "?" if chosen.inputs_observed is None else str(chosen.inputs_observed)
    reason = (
        "first model in the recommended order with enough inputs: "
        f"{chosen.model} {chosen.inputs_expected} inputs needs ≥ {min_observed(chosen.model)} "
        f"observed; {observed} of {chosen.inputs_expected} observed"
    )
    skipped = [r.skipped_because() for r in results[: MODELS.index(chosen.model)]]
    if skipped:
        reason += " (skipped " + "; ".join(skipped) + ")"
    if not chosen.ok_everywhere:
        reason += "; not scored at every horizon"
    return reason


def _not_scorable_reason(results: Sequence[ModelResult]) -> str:
    if all(all(s == "missing" for s in r.statuses) for r in results):
        return "no scores this run"
    errors = [r.model for r in results if "error" in r.statuses]
    counted = [r for r in results if r.inputs_observed is not None and r.model not in errors]
    parts = []
    if counted:  # name the model that came closest to having enough inputs
        best = max(counted, key=lambda r: (r.inputs_observed or 0) - min_observed(r.model))
        if not best.inputs_observed:
            parts.append("no lab inputs observed before the cut-off")
        else:
            parts.append(
                f"too few inputs (best: {best.model} {best.inputs_observed} of "
                f"{best.inputs_expected} observed, needs ≥ {min_observed(best.model)})"
            )
    if errors:
        parts.append(f"model error in {', '.join(errors)}")
    return "; ".join(parts) or "not scored"


def _previous_run_max(recent: pd.DataFrame) -> dict[tuple[str, str], tuple[date, float]]:
    """(patient, model) -> (date, max risk over horizons) of the latest earlier run."""
    if recent.empty:
        return {}
    last = recent.groupby(["patient_id", "model"])["as_of"].transform("max")
    latest = recent[recent["as_of"] == last]
    out = latest.groupby(["patient_id", "model", "as_of"])["calibrated_risk"].max().dropna()
    return {
        (str(p), str(m)): (pd.Timestamp(night).date(), float(v))
        for (p, m, night), v in zip(out.index.tolist(), out.tolist(), strict=True)
    }


HISTORY_COLUMNS = ["patient_id", "as_of", "model", "horizon_days", "calibrated_risk"]


def _recent_history(history: pd.DataFrame | None, as_of: date) -> pd.DataFrame:
    """History rows from the TREND_DAYS days before as_of (tonight's own rows dropped),
    typed for speed: str ids and models, datetime64 as_of (midnight), float risks."""
    if history is not None and history.attrs.get("recent_before") == as_of:
        return history  # already prepared by build_report
    if history is None or history.empty:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in HISTORY_COLUMNS})
        frame["as_of"] = pd.Series(dtype="datetime64[ns]")
        frame.attrs["recent_before"] = as_of
        return frame
    nights = pd.to_datetime(history["as_of"]).dt.normalize()
    tonight = pd.Timestamp(as_of)
    keep = (nights < tonight) & (nights >= tonight - pd.Timedelta(days=TREND_DAYS))
    frame = history.loc[keep, HISTORY_COLUMNS].copy()
    frame["as_of"] = nights[keep]
    frame["patient_id"] = frame["patient_id"].astype(str)
    frame["model"] = frame["model"].astype(str)
    frame["calibrated_risk"] = pd.to_numeric(frame["calibrated_risk"], errors="coerce")
    frame.attrs["recent_before"] = as_of
    return frame


def _trend_series(
    summary: PatientSummary, trend: pd.DataFrame, as_of: date
) -> tuple[list[date], list[list[float | None]]]:
    """Nights (earlier runs, then tonight) and the risk per horizon on each night."""
    risk_at = {
        (night.date(), int(horizon)): _optional_float(risk)
        for night, horizon, risk in trend[["as_of", "horizon_days", "calibrated_risk"]].itertuples(
            index=False
        )
    }
    nights = [*sorted({night for night, _ in risk_at}), as_of]
    for i, horizon in enumerate(HORIZONS):
        risk_at[(as_of, horizon)] = summary.risks[i]
    return nights, [[risk_at.get((night, h)) for night in nights] for h in HORIZONS]


class _TrendChart:
    """A tiny line chart of one model's risk per horizon, night by night.

    One Agg figure is drawn once and reused for every alerted patient: building the
    axes and legend costs more than drawing the lines.
    """

    def __init__(self, threshold: float) -> None:
        width, height = TREND_SIZE_PX
        self.figure = Figure(figsize=(width / 100, height / 100), dpi=200)  # 2x for phones
        FigureCanvasAgg(self.figure)
        ax = self.figure.add_axes((0.13, 0.2, 0.85, 0.74))
        shades = ("#08306b", "#2171b5", "#6baed6")
        self.lines = [
            ax.plot([], [], color=shade, linewidth=1.1, marker="o", markersize=1.8, label=f"{h}d")[
                0
            ]
            for h, shade in zip(HORIZONS, shades, strict=True)
        ]
        ax.axhline(threshold, color="#c62828", linewidth=0.8, linestyle="--")
        ax.set_ylim(0, 1)
        ax.set_yticks([0, threshold, 1])
        ax.set_yticklabels(["0", f"{threshold * 100:g}%", "100%"])
        ax.tick_params(labelsize=6, length=2, pad=1)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.legend(
            loc="upper left",
            fontsize=5.5,
            frameon=False,
            ncol=3,
            handlelength=1.2,
            borderaxespad=0.1,
            columnspacing=0.8,
        )
        self.ax = ax

    def png(self, nights: list[date], series: list[list[float | None]]) -> bytes:
        for line, values in zip(self.lines, series, strict=True):
            points = [(i, v) for i, v in enumerate(values) if v is not None]
            line.set_data([i for i, _ in points], [v for _, v in points])
        self.ax.set_xlim(-0.3, len(nights) - 0.7)
        if len(nights) == 1:  # first scored night: tonight's points only
            self.ax.set_xticks([0])
            self.ax.set_xticklabels(["tonight"])
        else:
            self.ax.set_xticks([0, len(nights) - 1])
            self.ax.set_xticklabels([nights[0].strftime("%d %b"), "tonight"])
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", metadata={"Software": None})
        return buffer.getvalue()


def _with_cid(summary: PatientSummary, cid: str) -> PatientSummary:
    return replace(summary, trend_cid=cid)


def _run_context(run: Mapping[str, Any], as_of: date | None) -> dict[str, Any]:
    cutoff = run.get("data_cutoff")
    return {
        "run_id": str(run.get("run_id", "unknown")),
        "as_of": as_of.isoformat() if as_of else "unknown",
        "model_version": str(run.get("model_version") or "unknown"),
        "data_cutoff": _format_datetime(cutoff) if cutoff is not None else "unknown",
        "n_patients": run.get("n_patients"),
        "n_scores": run.get("n_scores"),
    }


def _data_issue_context(run: Mapping[str, Any], data_issues: pd.DataFrame) -> dict[str, Any]:
    top: list[tuple[str, int]] = []
    total_from_table = 0
    if data_issues is not None and len(data_issues):
        counts = data_issues.groupby("reason")["n"].sum().sort_values(ascending=False)
        total_from_table = int(counts.sum())
        top = [(str(reason), int(n)) for reason, n in counts.head(TOP_DATA_ISSUES).items()]
    total = run.get("n_data_issues")
    return {"total": int(total) if total is not None else total_from_table, "top": top}


def _collection_window(first: Any, last: Any) -> str | None:
    """ "2026-11-25 06:00 to 2026-11-26 06:00", or one time, or None when nothing was used."""
    if first is None or last is None or pd.isna(first) or pd.isna(last):
        return None
    first, last = pd.Timestamp(first).to_pydatetime(), pd.Timestamp(last).to_pydatetime()
    if first == last:
        return _format_datetime(last)
    return f"{_format_datetime(first)} to {_format_datetime(last)}"


def _format_datetime(value: Any) -> str:
    if isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M")
        return f"{text} {value.tzname()}" if value.tzinfo else text
    return str(value)


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _optional_int(value: Any) -> int | None:
    if value is None or value is pd.NA:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return int(value)


def _optional_float(value: Any) -> float | None:
    if value is None or value is pd.NA:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _first_int(current: int | None, value: Any) -> int | None:
    return current if current is not None else _optional_int(value)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts; several times faster than DataFrame.to_dict("records")."""
    columns = [str(c) for c in frame.columns]
    values = [frame[c].tolist() for c in frame.columns]
    return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]


def _safe_token(text: str) -> str:
    """Keep a run id safe for file names and content-ids."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:64] or "run"


# Used when the deployed templates folder lacks the failure notice: a failed night must
# still be announced. The files in templates/ take precedence.
_FALLBACKS = {
    "failure.txt": (
        "{{ subject }}\n\nThe nightly PrCRS run for {{ run.as_of }} failed (run {{ run.run_id }}).\n"
        "No risk scores were published for this night: the absence of alerts means nothing.\n\n"
        "Error: {{ error }}\n"
    ),
    "failure.html": (
        "<!DOCTYPE html><html><body><p><strong>{{ subject }}</strong></p>"
        "<p>The nightly PrCRS run for {{ run.as_of }} failed (run {{ run.run_id }}). "
        "No risk scores were published for this night: the absence of alerts means nothing.</p>"
        "<p>Error: {{ error }}</p></body></html>"
    ),
}
