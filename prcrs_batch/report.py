"""Stage 7: the alert report. Renders templates/ with Jinja2 into a `Report`; never sends.

Render and send are separate: this module returns a `Report` (subject, HTML, plain text
and the trend charts as PNG bytes keyed by content-id); `outbox` keeps it on disk and
`mailer` sends it. What the report says about each patient is decided by `alerts`.

Alerts come highest first (max risk over horizons), then a compact table of every other
active patient, then a footer saying on which data the report rests. The HTML is e-mail
HTML: tables for layout, inline CSS only, no scripts, no remote resources or fonts;
images are referenced as `cid:<content-id>`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
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

from prcrs_batch.alerts import (
    HISTORY_COLUMNS,
    HISTORY_DAYS,
    MODELS,
    PatientSummary,
    format_datetime,
)
from prcrs_batch.charts import TREND_SIZE_PX, TrendChart, trend_series
from prcrs_batch.errors import scrub_secrets
from prcrs_batch.panel import HORIZONS, SEVERE_GRADE
from prcrs_batch.resources import template_dir as default_template_dir
from prcrs_batch.results import RunInfo

logger = logging.getLogger(__name__)

MAX_CHARTS = 20  # trend charts for the highest alerts only: keeps the mail small and quick
TOP_DATA_ISSUES = 3  # data-quality reasons named in the footer
MAX_ERROR_CHARS = 600  # of an error message quoted in a failure notice


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
    template_dir: Path | None = None,
) -> Report:
    """Render the night's alert report (HTML and plain text) with its trend charts.

    Args:
        run: the night's run (id, as-of date, model version, data cut-off, counts).
        summaries: one per active patient, from `alerts.summarise_patients` (and
            `alerts.with_previous` for the alerts' earlier nights).
        history: the earlier nights, as `alerts.recent_history` returns them (read for
            the last `alerts.HISTORY_DAYS` days); the alerts' trend charts come from it.
        data_issues: this night's data-quality decisions per reason.
        threshold: alert threshold on calibrated risk, in [0, 1].
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
    alerts = sorted(
        (s for s in summaries if s.alert), key=lambda s: (-(s.max_risk or 0.0), s.patient_id)
    )
    severe = sorted((s for s in summaries if s.already_severe), key=lambda s: s.patient_id)
    others = sorted(
        (s for s in summaries if not s.alert and not s.already_severe),
        key=lambda s: (not s.scorable, -(s.max_risk or 0.0), s.patient_id),
    )
    images, numbered_alerts = _charts(run, alerts, history, threshold)
    subject = make_subject(run.as_of, len(alerts), stale=run.status == "stale_data")
    context: dict[str, Any] = {
        "subject": subject,
        "run": _run_context(run),
        "threshold": threshold,
        "threshold_pct": f"{threshold * 100:g}%",
        "alerts": numbered_alerts,
        "others": others,
        "severe": severe,
        "n_patients": len(summaries),
        "n_not_scorable": sum(1 for s in summaries if not s.scorable and not s.already_severe),
        "horizons": HORIZONS,
        "severe_grade": SEVERE_GRADE,
        "models": MODELS,
        "data_issues": _data_issue_context(run, data_issues),
        "trend_size": TREND_SIZE_PX,
        "trend_days": HISTORY_DAYS,
        "max_charts": MAX_CHARTS,
        "stale_data": run.error if run.status == "stale_data" else None,  # freshness.py's why
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


def _charts(
    run: RunInfo, alerts: list[PatientSummary], history: pd.DataFrame, threshold: float
) -> tuple[dict[str, bytes], list[PatientSummary]]:
    """Trend charts of the `MAX_CHARTS` highest alerts; the alerts, charted ones with a cid."""
    if not alerts:
        return {}, []
    charted = alerts[:MAX_CHARTS]
    history = history if not history.empty else pd.DataFrame(columns=HISTORY_COLUMNS)
    mine = history[history["patient_id"].isin([s.patient_id for s in charted])]
    trends = {key: frame for key, frame in mine.groupby(["patient_id", "model"])}
    chart = TrendChart(threshold)
    images: dict[str, bytes] = {}
    numbered = []
    for number, summary in enumerate(charted, start=1):
        trend = trends.get((summary.patient_id, summary.model), mine.iloc[:0])
        cid = f"trend-{number}.{safe_token(run.run_id)}@prcrs-batch"
        images[cid] = chart.png(*trend_series(summary, trend, run.as_of))
        numbered.append(replace(summary, trend_cid=cid))
    return images, numbered + alerts[MAX_CHARTS:]


def make_subject(as_of: date, n_alerts: int, stale: bool = False) -> str:
    """The mail subject: as-of date in ISO form and the number of alerts; a night on a feed
    that looks dead never reads "all clear".

    >>> make_subject(date(2026, 11, 26), 2), make_subject(date(2026, 11, 26), 0)
    ('PrCRS 2026-11-26 - 2 alerts', 'PrCRS 2026-11-26 - all clear')
    >>> make_subject(date(2026, 11, 26), 0, stale=True)
    'PrCRS 2026-11-26 - STALE DATA, no alerts'
    """
    day = as_of.isoformat()
    if stale:
        return f"PrCRS {day} - STALE DATA, {n_alerts or 'no'} alert{'s' if n_alerts != 1 else ''}"
    if n_alerts == 0:
        return f"PrCRS {day} - all clear"
    return f"PrCRS {day} - {n_alerts} alert{'s' if n_alerts != 1 else ''}"


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
