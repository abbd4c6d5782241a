"""Stage 7: the alert report. Renders templates/ with Jinja2 into a `Report`; never sends.

Render and send are separate: this module returns a `Report` (subject, HTML, plain text
and the trend charts as PNG bytes keyed by content-id); `outbox` keeps it on disk and
`mailer` sends it. What the report says about each patient is decided by `alerts` and
`history`; why, by `explanations`.

New and rising alerts come first, then continuing and falling ones (each group highest
risk first), each card with its three risks, the labs that raised them, the data behind
them and a trend chart where there is history; then the patients already severe; then one
compact table of every other active patient; a footer says on which data it rests. The
HTML is e-mail HTML for a phone: tables for layout, inline CSS only, no scripts, no remote
resources or fonts; images are referenced as `cid:<content-id>`.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
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

from prcrs_batch.alerts import MODELS, PatientSummary, disagreement, format_datetime
from prcrs_batch.charts import TREND_SIZE_PX, TrendChart, trend_series
from prcrs_batch.errors import scrub_secrets
from prcrs_batch.explanations import LabLine
from prcrs_batch.history import HISTORY_COLUMNS, HISTORY_DAYS
from prcrs_batch.panel import HORIZONS, SEVERE_GRADE
from prcrs_batch.resources import template_dir as default_template_dir
from prcrs_batch.results import RunInfo

logger = logging.getLogger(__name__)

MAX_CHARTS = 20  # trend charts for the highest alerts only: keeps the mail small and quick
TOP_DATA_ISSUES = 3  # data-quality reasons named in the footer
MAX_ERROR_CHARS = 600  # of an error message quoted in a failure notice
STALE_LAB_HOURS = 24  # a card says so when its newest lab is older at the data cut-off
FIRST_STATES = ("new", "rising")  # listed first; then continuing and falling
STATE_LABELS = {"new": "NEW", "rising": "RISING", "continuing": "CONTINUING", "falling": "FALLING"}


@dataclass(frozen=True)
class Report:
    """A rendered report: what `mailer` sends and `outbox` keeps."""

    subject: str
    html: str
    text: str
    images: dict[str, bytes]  # content-id -> PNG bytes, referenced in the HTML as cid:<id>
    n_alerts: int = 0  # patients flagged (0 for an all-clear night or a failure notice)


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
    run: RunInfo,
    summaries: Sequence[PatientSummary],
    history: pd.DataFrame,
    data_issues: Mapping[str, int],
    threshold: float,
    reasons: Mapping[str, Sequence[LabLine]] | None = None,
    template_dir: Path | None = None,
) -> Report:
    """Render the night's alert report (HTML and plain text) with its trend charts.

    Args:
        run: the night's run (id, as-of date, model version, data cut-off, counts).
        summaries: one per active patient, from `alerts.summarise_patients` and
            `history.with_previous` (earlier nights and alert states).
        history: the earlier nights, as `history.recent_history` returns them (read for
            the last `HISTORY_DAYS` days); the alerts' trend charts come from it.
        data_issues: this night's data-quality decisions per reason.
        threshold: alert threshold on calibrated risk, in [0, 1].
        reasons: patient_id -> the labs that raised the risk (`explanations.lab_lines`).
        template_dir: folder holding report.html, report.txt and base.html.

    Returns:
        The `Report`; nothing is written or sent.

    >>> from datetime import datetime
    >>> run = RunInfo("r1", date(2026, 11, 26), datetime(2026, 11, 26),
    ...               datetime(2026, 11, 26, 23, 59, 59), "v1")
    >>> build_report(run=run, summaries=[], history=pd.DataFrame(), data_issues={},
    ...              threshold=0.3).subject
    'PrCRS 2026-11-26 - all clear'
    """
    reasons = reasons or {}
    alerts = sorted(
        (s for s in summaries if s.alert),
        key=lambda s: (s.alert_state not in FIRST_STATES, -(s.max_risk or 0.0), s.patient_id),
    )
    severe = sorted((s for s in summaries if s.already_severe), key=lambda s: s.patient_id)
    others = sorted(
        (s for s in summaries if not s.alert and not s.already_severe),
        key=lambda s: (not s.scorable, -(s.max_risk or 0.0), s.patient_id),
    )
    images, charted = _charts(run, alerts, history, threshold)
    cards = [_card(s, run, reasons.get(s.patient_id, ()), threshold) for s in charted]
    n_new = sum(1 for s in alerts if s.alert_state == "new")
    subject = make_subject(run.as_of, len(alerts), stale=run.status == "stale_data", n_new=n_new)
    context: dict[str, Any] = {
        "subject": subject,
        "run": _run_context(run),
        "threshold": threshold,
        "threshold_pct": f"{threshold * 100:g}%",
        "first": [c for c in cards if c["state"] in FIRST_STATES],
        "later": [c for c in cards if c["state"] not in FIRST_STATES],
        "n_alerts": len(alerts),
        "others": others,
        "severe": [
            {"summary": s, "grade_on": _day(s.crs_grade_on, run.as_of) if s.crs_grade_on else None}
            for s in severe
        ],
        "n_patients": len(summaries),
        "n_not_scorable": sum(1 for s in summaries if not s.scorable and not s.already_severe),
        "horizons": HORIZONS,
        "severe_grade": SEVERE_GRADE,
        "models": MODELS,
        "data_issues": _data_issue_context(run, data_issues),
        "trend_size": TREND_SIZE_PX,
        "trend_days": HISTORY_DAYS,
        "stale_data": run.error if run.status == "stale_data" else None,  # freshness.py's why
    }
    env = template_environment(template_dir)
    html = env.get_template("report.html").render(context)
    text = env.get_template("report.txt").render(context)
    logger.info(
        "report built: %d patients, %d alerts (%d new), %d not scorable, %d charts",
        len(summaries),
        len(alerts),
        n_new,
        context["n_not_scorable"],
        len(images),
    )
    return Report(subject=subject, html=html, text=text, images=images, n_alerts=len(alerts))


def _card(
    s: PatientSummary, run: RunInfo, labs: Sequence[LabLine], threshold: float
) -> dict[str, Any]:
    """What an alert card says, as plain strings (the HTML and the text share them)."""
    counted = Counter(s.set_aside)
    set_aside = [f"{what} (x{n})" if n > 1 else what for what, n in counted.items()]
    issues = [f"Values set aside: {'; '.join(set_aside)}"] if set_aside else []
    if s.labs_latest_at is not None:
        at = min(run.data_cutoff, run.read_at or run.data_cutoff)
        age = (at - s.labs_latest_at).total_seconds() / 3600
        if age > STALE_LAB_HOURS:
            issues.append(f"Newest lab used is {age:.0f} h old")
    other = disagreement(s, threshold)
    return {
        "summary": s,
        "state": s.alert_state,
        "state_label": STATE_LABELS.get(s.alert_state, s.alert_state),
        "grade": _grade_text(s, run.as_of),
        "labs": [lab_text(line, run.as_of) for line in labs],
        "labs_horizon": labs[0].horizon_days if labs else None,
        "issues": issues,
        "previous": (
            f"{_day(s.previous[0], run.as_of)}: highest {format_pct(s.previous[1])}, "
            f"tonight {format_pct(s.max_risk)}"
            if s.previous
            else None
        ),
        "disagreement": (
            f"The {other.model} model, on fewer labs, gives "
            f"{' / '.join(format_pct(r) for r in other.risks)}: "
            f"{'under' if s.alert else 'over'} the alert threshold."
            if other
            else None
        ),
    }


def _grade_text(s: PatientSummary, as_of: date) -> str:
    if s.crs_grade is None:
        return "CRS grade not assessed"
    when = f" ({_day(s.crs_grade_on, as_of)})" if s.crs_grade_on else ""
    return f"CRS grade {s.crs_grade}{when}"


def lab_text(line: LabLine, as_of: date) -> str:
    """ "IL-6 1,240 pg/mL, 06:10 today, up from 85 yesterday"."""
    text = f"{line.name} {format_value(line.value, line.unit)}"
    if line.collected_at is not None:
        text += f", {_moment(line.collected_at, as_of)}"
    if line.previous_value is not None and line.previous_at is not None:
        before = format_value(line.previous_value, line.unit, with_unit=False)
        now = format_value(line.value, line.unit, with_unit=False)
        change = (
            "unchanged from"
            if before == now
            else ("up from" if line.value > line.previous_value else "down from")
        )
        day = _day(line.previous_at.date(), as_of)
        text += f", {change} {before} {day if day in ('today', 'yesterday') else 'on ' + day}"
    return text


def format_value(value: float, unit: str, *, with_unit: bool = True) -> str:
    """A lab value as a clinician writes it: fractions as percentages, thousands grouped.

    >>> format_value(1240.0, "pg/mL"), format_value(0.697, "fraction"), format_value(6.12, "mmol/L")
    ('1,240 pg/mL', '70%', '6.12 mmol/L')
    """
    if unit == "fraction":
        return f"{value * 100:.0f}%"
    if unit.startswith("as recorded"):  # the development cohort's chloride: no stated unit
        with_unit = False
    if abs(value) >= 100:
        number = f"{value:,.0f}"
    elif abs(value) >= 10:
        number = f"{value:.1f}".removesuffix(".0")
    else:
        number = f"{value:.3g}"
    return f"{number} {unit}" if with_unit else number


def _day(day: date, as_of: date) -> str:
    """today / yesterday / 24 Nov."""
    if day == as_of:
        return "today"
    if day == as_of - timedelta(days=1):
        return "yesterday"
    return f"{day.day} {day.strftime('%b')}"


def _moment(when: datetime, as_of: date) -> str:
    return f"{when.strftime('%H:%M')} {_day(when.date(), as_of)}"


def _charts(
    run: RunInfo, alerts: list[PatientSummary], history: pd.DataFrame, threshold: float
) -> tuple[dict[str, bytes], list[PatientSummary]]:
    """Trend charts of the `MAX_CHARTS` highest alerts that have earlier nights on their
    model (a first night has nothing to draw); the alerts, charted ones with a cid."""
    history = history if not history.empty else pd.DataFrame(columns=HISTORY_COLUMNS)
    with_history = [s for s in alerts if s.previous is not None]
    charted = sorted(with_history, key=lambda s: -(s.max_risk or 0.0))[:MAX_CHARTS]
    if not charted:
        return {}, list(alerts)
    mine = history[history["patient_id"].isin([s.patient_id for s in charted])]
    trends = {key: frame for key, frame in mine.groupby(["patient_id", "model"])}
    chart = TrendChart(threshold)
    images: dict[str, bytes] = {}
    cids: dict[str, str] = {}
    for number, summary in enumerate(charted, start=1):
        trend = trends.get((summary.patient_id, summary.model), mine.iloc[:0])
        cid = f"trend-{number}.{safe_token(run.run_id)}@prcrs-batch"
        images[cid] = chart.png(*trend_series(summary, trend, run.as_of))
        cids[summary.patient_id] = cid
    return images, [replace(s, trend_cid=cids.get(s.patient_id)) for s in alerts]


def make_subject(as_of: date, n_alerts: int, stale: bool = False, n_new: int = 0) -> str:
    """The mail subject: as-of date in ISO form, the number of alerts and how many are new;
    a night on a feed that looks dead never reads "all clear".

    >>> make_subject(date(2026, 11, 26), 2, n_new=1), make_subject(date(2026, 11, 26), 0)
    ('PrCRS 2026-11-26 - 2 alerts, 1 new', 'PrCRS 2026-11-26 - all clear')
    >>> make_subject(date(2026, 11, 26), 0, stale=True)
    'PrCRS 2026-11-26 - STALE DATA, no alerts'
    """
    day = as_of.isoformat()
    plural = "s" if n_alerts != 1 else ""
    new = f", {n_new} new" if n_new else ""
    if stale:
        return f"PrCRS {day} - STALE DATA, {n_alerts or 'no'} alert{plural}{new}"
    if n_alerts == 0:
        return f"PrCRS {day} - all clear"
    return f"PrCRS {day} - {n_alerts} alert{plural}{new}"


def template_environment(template_dir: Path | None = None) -> Environment:
    """Jinja2 environment: HTML autoescaped, .txt rendered as plain text, strict names.

    The failure-notice templates have built-in fallbacks so that a night's failure
    notice goes out even when the deployed templates folder is broken.
    """
    env = Environment(
        loader=ChoiceLoader(
            [FileSystemLoader(str(template_dir or default_template_dir())), DictLoader(_FALLBACKS)]
        ),
        autoescape=select_autoescape(enabled_extensions=("html", "htm"), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["pct"] = format_pct
    env.filters["model_label"] = lambda model: model if model else "none"
    return env


def build_failure_notice(*, run: RunInfo, error: str, template_dir: Path | None = None) -> Report:
    """A short notice that a night's run failed, so nobody reads silence as all clear.

    The quoted error has its secrets masked and is cut to a few hundred characters.

    >>> from datetime import datetime
    >>> run = RunInfo("r1", date(2026, 11, 26), datetime(2026, 11, 26), datetime(2026, 11, 26))
    >>> n = build_failure_notice(run=run,
    ...     error="could not connect to postgresql://batch:hunter2@db/warehouse")
    >>> n.subject, "hunter2" in n.text + n.html
    ('PrCRS 2026-11-26 - RUN FAILED, no risk scores', False)
    """
    subject = f"PrCRS {run.as_of.isoformat()} - RUN FAILED, no risk scores"
    context: dict[str, Any] = {
        "subject": subject,
        "run": _run_context(run),
        "error": scrub_secrets(error)[:MAX_ERROR_CHARS],
    }
    env = template_environment(template_dir)
    html = env.get_template("failure.html").render(context)
    text = env.get_template("failure.txt").render(context)
    logger.info("failure notice built for run %s", run.run_id)
    return Report(subject=subject, html=html, text=text, images={})


def safe_token(text: str) -> str:
    """A run id made safe for file names and content-ids.

    >>> safe_token("run/1")
    'run_1'
    """
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:64] or "run"


def _run_context(run: RunInfo) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "as_of": run.as_of.isoformat(),
        "model_version": run.model_version or "unknown",
        "data_cutoff": format_datetime(run.data_cutoff),
        "n_patients": run.n_patients,
        "n_scores": run.n_scores,
        "notes": list(run.notes),  # e.g. grades unavailable, models in error
    }


def _data_issue_context(run: RunInfo, counts: Mapping[str, int]) -> dict[str, Any]:
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_DATA_ISSUES]
    return {"total": run.n_data_issues, "top": [(str(r), int(n)) for r, n in top]}


# Used when the deployed templates folder lacks the failure notice: a failed night must
# still be announced. The files in templates/ take precedence.
_FALLBACKS = {
    "failure.txt": (
        "{{ subject }}\n\n"
        "The nightly PrCRS run for {{ run.as_of }} failed (run {{ run.run_id }}).\n"
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
