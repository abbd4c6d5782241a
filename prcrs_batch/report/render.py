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
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
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

from prcrs_batch.errors import scrub_secrets
from prcrs_batch.monitoring.watch import Watch
from prcrs_batch.nightly.alert_states import HISTORY_COLUMNS, HISTORY_DAYS
from prcrs_batch.nightly.alerts import MODELS, PatientSummary, format_datetime
from prcrs_batch.nightly.explanations import LabLine
from prcrs_batch.report.charts import TREND_SIZE_PX, TrendChart, trend_series
from prcrs_batch.report.i18n import translations
from prcrs_batch.report.wording import FIRST_STATES, Wording, format_pct
from prcrs_batch.resources import template_dir as default_template_dir
from prcrs_batch.results.nights import RunInfo
from prcrs_batch.task.panel import BY_CODE, HORIZONS
from prcrs_batch.task.target import SEVERE_GRADE

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


def build_report(
    *,
    run: RunInfo,
    summaries: Sequence[PatientSummary],
    history: pd.DataFrame,
    data_issues: Mapping[str, int],
    threshold: float,
    reasons: Mapping[str, Sequence[LabLine]] | None = None,
    template_dir: Path | None = None,
    language: str = "en",
    watch: Watch | None = None,
    silent: bool = False,
) -> Report:
    """Render the night's alert report (HTML and plain text) with its trend charts.

    Args:
        run: the night's run (id, as-of date, model version, data cut-off, counts).
        summaries: one per active patient, from `alerts.summarise_patients` and
            `alert_states.with_previous` (earlier nights and alert states).
        history: the earlier nights, as `alert_states.recent_history` returns them (read for
            the last `HISTORY_DAYS` days); the alerts' trend charts come from it.
        data_issues: this night's data-quality decisions per reason.
        threshold: alert threshold on calibrated risk, in [0, 1].
        reasons: patient_id -> the labs that raised the risk (`explanations.lab_lines`).
        template_dir: folder holding report.html, report.txt and base.html.
        language: "en" or "zh" (i18n.LANGUAGES).
        watch: what the night measured of itself (watch.py), for the footer.
        silent: silent mode: marked at the top as not for clinical use.

    Returns:
        The `Report`; nothing is written or sent.

    >>> from datetime import date, datetime
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
    env = template_environment(template_dir, language)
    wording = Wording(gettext_for(template_dir, language))
    images, charted = _charts(run, alerts, history, threshold)
    cards = [wording.card(s, run, reasons.get(s.patient_id, ()), threshold) for s in charted]
    n_new = sum(1 for s in alerts if s.alert_state == "new")
    stale = run.status == "stale_data"
    subject = wording.subject(run.as_of, len(alerts), stale=stale, n_new=n_new)
    if silent:
        subject = "[SILENT] " + subject
    context: dict[str, Any] = {
        "subject": subject,
        "run": _run_context(run),
        "threshold": threshold,
        "threshold_pct": f"{threshold * 100:g}%",
        "first": [c for c in cards if c["state"] in FIRST_STATES],
        "later": [c for c in cards if c["state"] not in FIRST_STATES],
        "n_alerts": len(alerts),
        "others": [
            {"summary": p, "why": None if p.scorable else wording.not_scorable(p)} for p in others
        ],
        "severe": [
            {
                "summary": s,
                "grade_on": wording.day(s.crs_grade_on, run.as_of) if s.crs_grade_on else None,
            }
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
        "silent": silent,
        "watch": _watch_context(watch),
    }
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


def template_environment(template_dir: Path | None = None, language: str = "en") -> Environment:
    """Jinja2 environment: HTML autoescaped, .txt rendered as plain text, strict names, the
    report's language installed for `_()` (i18n.py).

    The failure-notice templates have built-in fallbacks so that a night's failure
    notice goes out even when the deployed templates folder is broken.
    """
    folder = Path(template_dir or default_template_dir())
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(str(folder)), DictLoader(_FALLBACKS)]),
        extensions=["jinja2.ext.i18n"],
        autoescape=select_autoescape(enabled_extensions=("html", "htm"), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.install_gettext_translations(translations(folder, language), newstyle=True)  # type: ignore[attr-defined]
    env.globals["language"] = language
    env.filters["pct"] = format_pct
    env.filters["model_label"] = lambda model: model if model else "none"
    return env


def _watch_context(watch: Watch | None) -> dict[str, Any] | None:
    """The footer's monitoring figures: onsets warned of, observed vs expected, drift."""
    if watch is None:
        return None
    perf = watch.performance
    first = perf[(perf["model"] == "all") & (perf["horizon_days"] == HORIZONS[0])]
    rates = first[first["n_predictions"] > 0].head(1)
    drift = watch.drift
    drifting = drift[drift["drifting"].astype(bool)] if len(drift) else drift
    return {
        "onsets": watch.onsets,
        "rates": [
            (int(r.window_days), format_pct(r.observed_rate), format_pct(r.mean_predicted))
            for r in rates.itertuples()
        ],
        "drifting": [
            (BY_CODE[a].display_name, f"{p:.2f}")
            for a, p in zip(drifting["analyte"], drifting["psi"], strict=True)
        ],
    }


def gettext_for(template_dir: Path | None, language: str) -> Callable[[str], str]:
    """The language's gettext, for sentences built in Python (wording.py, score_command.py)."""
    return translations(Path(template_dir or default_template_dir()), language).gettext


def build_failure_notice(
    *, run: RunInfo, error: str, template_dir: Path | None = None, language: str = "en"
) -> Report:
    """A short notice that a night's run failed, so nobody reads silence as all clear.

    The quoted error has its secrets masked and is cut to a few hundred characters.

    >>> from datetime import date, datetime
    >>> run = RunInfo("r1", date(2026, 11, 26), datetime(2026, 11, 26), datetime(2026, 11, 26))
    >>> n = build_failure_notice(run=run,
    ...     error="could not connect to postgresql://batch:hunter2@db/warehouse")
    >>> n.subject, "hunter2" in n.text + n.html
    ('PrCRS 2026-11-26 - RUN FAILED, no risk scores', False)
    """
    env = template_environment(template_dir, language)
    _ = gettext_for(template_dir, language)
    subject = f"PrCRS {run.as_of.isoformat()} - " + _("RUN FAILED, no risk scores")
    context: dict[str, Any] = {
        "subject": subject,
        "run": _run_context(run),
        "error": scrub_secrets(error)[:MAX_ERROR_CHARS],
    }
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
