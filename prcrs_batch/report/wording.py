"""The report's sentences, in the report's language: the subject, an alert card's lines, a
lab line ("IL-6 1,240 pg/mL, 06:10 today, up from 85 yesterday"), a not-scorable reason.

Every sentence goes through gettext (i18n.py); the templates translate their own words. The
HTML and the plain-text report share these strings.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from prcrs_batch.nightly.alerts import PatientSummary, disagreement
from prcrs_batch.nightly.explanations import LabLine
from prcrs_batch.results.nights import RunInfo
from prcrs_batch.task.panel import min_observed

STALE_LAB_HOURS = 24  # a card says so when its newest lab is older when the warehouse was read
FIRST_STATES = ("new", "rising")  # listed first; then continuing and falling


def N_(message: str) -> str:  # noqa: N802 - gettext's name for "mark for extraction"
    """Mark a message for extraction; translated where it is used."""
    return message


STATE_LABELS = {
    "new": N_("NEW"),
    "rising": N_("RISING"),
    "continuing": N_("CONTINUING"),
    "falling": N_("FALLING"),
}


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


class Wording:
    """The sentences of one report, in one language (`gettext` from i18n.translations)."""

    def __init__(self, gettext: Callable[[str], str] = str) -> None:
        self._ = gettext

    def subject(self, as_of: date, n_alerts: int, stale: bool = False, n_new: int = 0) -> str:
        """The mail subject: the as-of date, the number of alerts and how many are new; a
        night on a feed that looks dead never reads "all clear".

        >>> w = Wording()
        >>> w.subject(date(2026, 11, 26), 2, n_new=1), w.subject(date(2026, 11, 26), 0)
        ('PrCRS 2026-11-26 - 2 alerts, 1 new', 'PrCRS 2026-11-26 - all clear')
        >>> w.subject(date(2026, 11, 26), 0, stale=True)
        'PrCRS 2026-11-26 - STALE DATA, no alerts'
        """
        _ = self._
        alerts = _("1 alert") if n_alerts == 1 else _("%(n)s alerts") % {"n": n_alerts}
        new = _(", %(n)s new") % {"n": n_new} if n_new else ""
        head = f"PrCRS {as_of.isoformat()} - "
        if stale:
            return head + _("STALE DATA, %(alerts)s") % {
                "alerts": (alerts if n_alerts else _("no alerts")) + new
            }
        return head + (_("all clear") if n_alerts == 0 else alerts + new)

    def card(
        self, s: PatientSummary, run: RunInfo, labs: Sequence[LabLine], threshold: float
    ) -> dict[str, Any]:
        """What an alert card says, as plain strings."""
        _ = self._
        counted = Counter(s.set_aside)
        set_aside = [f"{what} (x{n})" if n > 1 else what for what, n in counted.items()]
        issues = [_("Values set aside: %(what)s") % {"what": "; ".join(set_aside)}]
        issues = issues if set_aside else []
        if s.labs_latest_at is not None:
            at = min(run.data_cutoff, run.read_at or run.data_cutoff)
            age = (at - s.labs_latest_at).total_seconds() / 3600
            if age > STALE_LAB_HOURS:
                issues.append(_("Newest lab used is %(hours)s h old") % {"hours": f"{age:.0f}"})
        other = disagreement(s, threshold)
        previous = None
        if s.previous:
            previous = _("%(day)s: highest %(before)s, tonight %(now)s") % {
                "day": self.day(s.previous[0], run.as_of),
                "before": format_pct(s.previous[1]),
                "now": format_pct(s.max_risk),
            }
        return {
            "summary": s,
            "state": s.alert_state,
            "state_label": _(STATE_LABELS.get(s.alert_state, s.alert_state)),
            "grade": self.grade(s, run.as_of),
            "labs": [self.lab(line, run.as_of) for line in labs],
            "labs_horizon": labs[0].horizon_days if labs else None,
            "issues": issues,
            "previous": previous,
            "disagreement": (
                _("The %(model)s model, on fewer labs, gives %(risks)s: %(side)s.")
                % {
                    "model": other.model,
                    "risks": " / ".join(format_pct(r) for r in other.risks),
                    "side": _("under the alert threshold")
                    if s.alert
                    else _("over the alert threshold"),
                }
                if other
                else None
            ),
        }

    def grade(self, s: PatientSummary, as_of: date) -> str:
        """ "CRS grade 1 (yesterday)" or "CRS grade not assessed"."""
        if s.crs_grade is None:
            return self._("CRS grade not assessed")
        when = f" ({self.day(s.crs_grade_on, as_of)})" if s.crs_grade_on else ""
        return self._("CRS grade %(grade)s") % {"grade": s.crs_grade} + when

    def lab(self, line: LabLine, as_of: date) -> str:
        """ "Interleukin-6 1,240 pg/mL, 06:10 today, up from 85 yesterday"."""
        _ = self._
        text = f"{_(line.name)} {format_value(line.value, line.unit)}"
        if line.collected_at is not None:
            text += ", " + self.moment(line.collected_at, as_of)
        if line.previous_value is not None and line.previous_at is not None:
            before = format_value(line.previous_value, line.unit, with_unit=False)
            now = format_value(line.value, line.unit, with_unit=False)
            if before == now:
                change = _("unchanged from %(value)s %(when)s")
            elif line.value > line.previous_value:
                change = _("up from %(value)s %(when)s")
            else:
                change = _("down from %(value)s %(when)s")
            day = line.previous_at.date()
            recent = as_of - timedelta(days=1) <= day <= as_of
            when = (
                self.day(day, as_of) if recent else _("on %(day)s") % {"day": self.day(day, as_of)}
            )
            text += ", " + change % {"value": before, "when": when}
        return text

    def not_scorable(self, s: PatientSummary) -> str:
        """Why no model could score the patient, from the models' input counts."""
        _ = self._
        counted = [r for r in s.others if r.inputs_observed is not None]
        if not counted or not any(r.inputs_observed for r in counted):
            return _("not scorable: no usable lab results in the lookback window")
        best = max(counted, key=lambda r: (r.inputs_observed or 0) - min_observed(r.model))
        return _("not scorable: too few labs (at most %(seen)s of %(needed)s needed)") % {
            "seen": best.inputs_observed,
            "needed": min_observed(best.model),
        }

    def day(self, day: date, as_of: date) -> str:
        """today / yesterday / 24 Nov."""
        if day == as_of:
            return self._("today")
        if day == as_of - timedelta(days=1):
            return self._("yesterday")
        return self._("%(day)s %(month)s") % {"day": day.day, "month": self._(day.strftime("%b"))}

    def moment(self, when: datetime, as_of: date) -> str:
        """ "06:10 today"."""
        return f"{when.strftime('%H:%M')} {self.day(when.date(), as_of)}"


MONTHS = (  # strftime("%b") in the C locale, translated by day()
    N_("Jan"),
    N_("Feb"),
    N_("Mar"),
    N_("Apr"),
    N_("May"),
    N_("Jun"),
    N_("Jul"),
    N_("Aug"),
    N_("Sep"),
    N_("Oct"),
    N_("Nov"),
    N_("Dec"),
)
