"""Stage 7: the alert report. Renders templates/ with Jinja2 into a `Report`; never sends.

Render and send are separate: this module returns a `Report` (subject, HTML, plain text
and the trend charts as PNG bytes keyed by content-id); `outbox` keeps it on disk and
`mailer` sends it. What the report says about each patient is decided by `alerts` and
`history`; why, by `explanations`.

New and rising alerts come first, then continuing and falling ones (each group highest
risk first), each card with its three risks, the labs that raised them (with the points
each adds), the data behind them and a trend chart where there is history; then the
patients already severe; then one compact table of every other active patient; a footer
says on which data it rests.

Two HTML renderings of the same night: the complete report (every alert a card: written to
the report folder and attached to the mail) and the mail's own HTML part, which must stay
under `HTML_BUDGET_BYTES` as sent whatever the night (Gmail clips a longer one, hiding the
footer): the first `max_cards` alerts as cards, every further alert one compact row, the
other patients in the compact table; `fit.py` shortens the lists when that is still too long,
and the mail says what is only in the attachment. The plain-text part lists every alert.
The HTML is e-mail HTML for a phone: tables for layout, one `<style>` block of shared
classes (the few things that must survive a client that drops it, such as a risk over the
threshold in bold, are plain HTML), no scripts, no remote resources or fonts; images are
referenced as `cid:<content-id>`.
"""

from __future__ import annotations

import base64
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
from prcrs_batch.nightly.alerts import MODELS, PatientSummary, as_tiers, format_datetime
from prcrs_batch.nightly.explanations import LabLine
from prcrs_batch.report.charts import TREND_SIZE_PX, TrendChart, trend_series
from prcrs_batch.report.fit import Listing, fit_listing, listed_context, sent_bytes
from prcrs_batch.report.i18n import translations
from prcrs_batch.report.wording import FIRST_STATES, Wording, format_pct
from prcrs_batch.resources import template_dir as default_template_dir
from prcrs_batch.results.nights import RunInfo
from prcrs_batch.task.panel import BY_CODE, HORIZONS
from prcrs_batch.task.target import SEVERE_GRADE
from prcrs_batch.task.thresholds import Tiers

logger = logging.getLogger(__name__)

MAX_CHARTS = 20  # trend charts for the first alerts listed only: keeps the mail small and quick
MAX_CARDS = 12  # alerts shown as cards in the mail (PRCRS_MAX_ALERT_CARDS)
HTML_BUDGET_BYTES = 90 * 1024  # the mail's HTML part as sent: Gmail clips past about 102 KB
TOP_DATA_ISSUES = 3  # data-quality reasons named in the footer
MAX_ERROR_CHARS = 600  # of an error message quoted in a failure notice


@dataclass(frozen=True)
class Report:
    """A rendered report: what `mailer` sends and `outbox` keeps."""

    subject: str
    html: str  # the mail's HTML part (an alert report's: under HTML_BUDGET_BYTES)
    text: str  # the plain-text part (an alert report's: every alert)
    images: dict[str, bytes]  # content-id -> PNG bytes, referenced in the HTML as cid:<id>
    n_alerts: int = 0  # patients flagged (0 for an all-clear night or a failure notice)
    full_html: str | None = None  # the complete report (every alert a card); None: `html` is
    attachment_name: str | None = None  # the complete report's file name in the mail

    @property
    def complete_html(self) -> str:
        """The whole report: what the report folder keeps and the mail attaches."""
        return self.html if self.full_html is None else self.full_html


def build_report(
    *,
    run: RunInfo,
    summaries: Sequence[PatientSummary],
    history: pd.DataFrame,
    data_issues: Mapping[str, int],
    threshold: Tiers | float,
    reasons: Mapping[str, Sequence[LabLine]] | None = None,
    template_dir: Path | None = None,
    language: str = "en",
    watch: Watch | None = None,
    silent: bool = False,
    max_cards: int = MAX_CARDS,
    html_budget: int = HTML_BUDGET_BYTES,
) -> Report:
    """Render the night's alert report (the mail's HTML, the complete HTML, plain text) with
    its trend charts.

    Args:
        run: the night's run (id, as-of date, model version, data cut-off, counts).
        summaries: one per active patient, from `alerts.summarise_patients` and
            `alert_states.with_previous` (earlier nights and alert states).
        history: the earlier nights, as `alert_states.recent_history` returns them (read for
            the last `HISTORY_DAYS` days); the alerts' trend charts come from it.
        data_issues: this night's data-quality decisions per reason.
        threshold: the alert and watch thresholds per model (thresholds.Tiers; a number is
            one alert threshold for every model); the report states the `all` model's.
        reasons: patient_id -> the labs that raised the risk (`explanations.lab_lines`).
        template_dir: folder holding report.html, report.txt and base.html.
        language: "en" or "zh" (i18n.LANGUAGES).
        watch: what the night measured of itself (watch.py), for the footer.
        silent: silent mode: marked at the top as not for clinical use.
        max_cards: alerts shown as cards in the mail; the rest are compact rows.
        html_budget: most bytes of the mail's HTML part as sent (`fit.sent_bytes`).

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
    tiers = as_tiers(threshold)
    alerts = sorted(
        (s for s in summaries if s.alert),
        key=lambda s: (s.alert_state not in FIRST_STATES, -(s.max_risk or 0.0), s.patient_id),
    )
    severe = sorted((s for s in summaries if s.already_severe), key=lambda s: s.patient_id)
    on_watch = sorted(
        (s for s in summaries if s.watch), key=lambda s: (-(s.max_risk or 0.0), s.patient_id)
    )
    others = sorted(
        (s for s in summaries if not s.alert and not s.watch and not s.already_severe),
        key=lambda s: (not s.scorable, -(s.max_risk or 0.0), s.patient_id),
    )
    env = template_environment(template_dir, language)
    wording = Wording(gettext_for(template_dir, language))
    images, charted = _charts(run, alerts, history, tiers)
    cards = [wording.card(s, run, reasons.get(s.patient_id, ()), tiers) for s in charted]
    n_new = sum(1 for s in alerts if s.alert_state == "new")
    stale = run.status == "stale_data"
    subject = wording.subject(run.as_of, len(alerts), stale=stale, n_new=n_new)
    if silent:
        subject = "[SILENT] " + subject
    attachment = f"prcrs-{run.as_of.isoformat()}.html"
    context: dict[str, Any] = {
        "subject": subject,
        "run": _run_context(run),
        "threshold_pct": f"{tiers.headline * 100:g}%",
        "n_alerts": len(alerts),
        "n_first": sum(1 for c in cards if c["state"] in FIRST_STATES),
        "n_later": sum(1 for c in cards if c["state"] not in FIRST_STATES),
        "n_others": len(others),
        "n_watch": len(on_watch),
        "n_severe": len(severe),
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
        "watch": _watch_context(watch, wording),
        "attachment": attachment,
    }
    listed: dict[str, list[dict[str, Any]]] = {
        "watch": [{"summary": p, "grade": wording.grade_cell(p, run.as_of)} for p in on_watch],
        "others": [
            {
                "summary": p,
                "why": None if p.scorable else wording.not_scorable(p),
                "grade": wording.grade_cell(p, run.as_of),
            }
            for p in others
        ],
        "severe": [
            {
                "summary": s,
                "grade_on": wording.day(s.crs_grade_on, run.as_of) if s.crs_grade_on else None,
            }
            for s in severe
        ],
    }

    def render(name: str, listing: Listing, complete: bool = False) -> str:
        return env.get_template(name).render(
            context, **listed_context(cards, listed, listing), complete=complete
        )

    everything = Listing(len(cards), 0, len(severe), len(others), len(on_watch))
    full_html = render("report.html", everything, complete=True)
    in_mail = min(max_cards, len(cards))
    wanted = Listing(in_mail, len(cards) - in_mail, len(severe), len(others), len(on_watch))
    html, shown = fit_listing(lambda listing: render("report.html", listing), wanted, html_budget)
    text = render("report.txt", wanted)
    logger.info(
        "report built: %d patients, %d alerts (%d new), %d on watch, %d not scorable, %d charts; "
        "mail: "
        "%d cards, %d alert rows, %d of %d other patients, %d bytes of HTML (as sent)",
        len(summaries),
        len(alerts),
        n_new,
        len(on_watch),
        context["n_not_scorable"],
        len(images),
        shown.cards,
        shown.rows,
        shown.others,
        len(others),
        sent_bytes(html),
    )
    return Report(
        subject=subject,
        html=html,
        text=text,
        images=images,
        n_alerts=len(alerts),
        full_html=full_html,
        attachment_name=attachment,
    )


def _charts(
    run: RunInfo, alerts: list[PatientSummary], history: pd.DataFrame, tiers: Tiers
) -> tuple[dict[str, bytes], list[PatientSummary]]:
    """Trend charts of the first `MAX_CHARTS` alerts listed (new and rising first: the mail's
    cards) that have earlier nights on their model (a first night has nothing to draw); the
    alerts, charted ones with a cid."""
    history = history if not history.empty else pd.DataFrame(columns=HISTORY_COLUMNS)
    charted = [s for s in alerts if s.previous is not None][:MAX_CHARTS]
    if not charted:
        return {}, list(alerts)
    mine = history[history["patient_id"].isin([s.patient_id for s in charted])]
    trends = {key: frame for key, frame in mine.groupby(["patient_id", "model"])}
    charts: dict[float, TrendChart] = {}
    images: dict[str, bytes] = {}
    cids: dict[str, str] = {}
    for number, summary in enumerate(charted, start=1):
        trend = trends.get((summary.patient_id, summary.model), mine.iloc[:0])
        cid = f"trend-{number}.{safe_token(run.run_id)}@prcrs-batch"
        at = tiers.alert_for(summary.model)
        chart = charts.setdefault(at, TrendChart(at))
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


def _watch_context(watch: Watch | None, wording: Wording) -> dict[str, Any] | None:
    """The footer's monitoring, in plain words: of the onsets, how many were warned of; how
    many onsets the 1-day risks expected and how many came; the drifting labs."""
    if watch is None:
        return None
    perf = watch.performance
    first = perf[(perf["model"] == "all") & (perf["horizon_days"] == HORIZONS[0])]
    rates = first[first["n_predictions"] > 0].head(1)
    drift = watch.drift
    drifting = drift[drift["drifting"].astype(bool)] if len(drift) else drift
    return {
        "onsets": watch.onsets,
        "expected": [
            (
                int(r.window_days),
                _about(float(r.mean_predicted) * int(r.n_predictions)),
                int(r.n_events),
            )
            for r in rates.itertuples()
        ],
        "drifting": [wording._(BY_CODE[a].display_name) for a in drifting["analyte"]],
    }


def _about(expected: float) -> int:
    """An expected count as a reader says it: the nearest whole number.

    >>> _about(6.6), _about(2.5), _about(0.4)
    (7, 3, 0)
    """
    return int(expected + 0.5)


def self_contained(html: str, images: Mapping[str, bytes]) -> str:
    """The HTML with its cid: images inlined as data: URIs (opens in a browser alone).

    >>> self_contained('<img src="cid:a@x">', {"a@x": b"png"})
    '<img src="data:image/png;base64,cG5n">'
    """
    for cid, png in images.items():
        data_uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        html = html.replace(f"cid:{cid}", data_uri)
    return html


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
