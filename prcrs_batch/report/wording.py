"""The report's sentences, in the report's language: the subject, an alert card's lines, a
lab line ("IL-6 1,240 pg/mL (+14 points), 06:10 today, up from 85 yesterday"), why a model
was chosen or none could score, a value set aside and why.

Every sentence goes through gettext (i18n.py); the templates translate their own words. The
HTML and the plain-text report share these strings; so does `prcrs-batch score`'s answer.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from prcrs_batch.nightly.alerts import (
    MODELS,
    ModelResult,
    PatientSummary,
    as_tiers,
    disagreement,
)
from prcrs_batch.nightly.explanations import LabLine
from prcrs_batch.results.nights import RunInfo
from prcrs_batch.task.panel import min_observed
from prcrs_batch.task.thresholds import Tiers

STALE_LAB_HOURS = 24  # a card says so when its newest lab is older when the warehouse was read
FIRST_STATES = ("new", "rising")  # listed first; then continuing and falling
GRADE_DATED_DAYS = 2  # a CRS grade older than this is dated wherever it is shown


def N_(message: str) -> str:  # noqa: N802 - gettext's name for "mark for extraction"
    """Mark a message for extraction; translated where it is used."""
    return message


STATE_LABELS = {
    "new": N_("NEW"),
    "rising": N_("RISING"),
    "continuing": N_("CONTINUING"),
    "falling": N_("FALLING"),
}


# A value set aside, as features.cleaning.set_aside_by_patient words its reason ("IL6: unknown
# unit"): the reason translated, the analyte as the warehouse wrote it.
SET_ASIDE_REASONS = {
    "unknown analyte": N_("unknown analyte"),
    "future timestamp": N_("future timestamp"),
    "missing timestamp": N_("missing timestamp"),
    "no number": N_("no number"),
    "non ascii digits": N_("non ascii digits"),
    "value too long": N_("value too long"),
    "unknown unit": N_("unknown unit"),
    "implausible value": N_("implausible value"),
    "conflicting duplicate": N_("conflicting duplicate"),
    "patient id unstorable": N_("patient id unstorable"),
    "missing patient id": N_("missing patient id"),
    "invalid crs grade": N_("invalid CRS grade"),
    "censored bound used": N_("censored bound used"),
    "analyte code normalised": N_("analyte code normalised"),
    "duplicate result": N_("duplicate result"),
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


def format_points(contribution: float, gettext: Callable[[str], str] = str) -> str:
    """What a lab adds to the risk, in percentage points, rounded to the nearest point.

    >>> format_points(0.1249), format_points(0.01), format_points(0.004)
    ('+12 points', '+1 point', '+<1 point')
    """
    points = round(contribution * 100)
    if points < 1:
        return gettext("+<1 point")
    if points == 1:
        return gettext("+1 point")
    return gettext("+%(n)s points") % {"n": points}


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

    def __init__(self, gettext: Callable[[str], str] = str, read_days_after: int = 1) -> None:
        """`read_days_after`: how many days after its data day (task.data_day) the text is
        read, which "today" and "yesterday" are counted from: 1 for a night's report (read
        the morning after), 0 for `score`'s answer about labs given today."""
        self._ = gettext
        self.read_days_after = read_days_after

    def reader_day(self, as_of: date) -> date:
        """The day the reader reads a text about data day `as_of`."""
        return as_of + timedelta(days=self.read_days_after)

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
        self, s: PatientSummary, run: RunInfo, labs: Sequence[LabLine], threshold: Tiers | float
    ) -> dict[str, Any]:
        """What an alert card says, as plain strings; the patient's model's alert threshold
        is named when it is not the one the report states (the `all` model's)."""
        tiers = as_tiers(threshold)
        _ = self._
        counted = Counter(self.set_aside(what) for what in s.set_aside)
        set_aside = [f"{what} (x{n})" if n > 1 else what for what, n in counted.items()]
        issues = [_("Values set aside: %(what)s") % {"what": "; ".join(set_aside)}]
        issues = issues if set_aside else []
        if s.labs_latest_at is not None:
            at = min(run.data_cutoff, run.read_at or run.data_cutoff)
            age = (at - s.labs_latest_at).total_seconds() / 3600
            if age > STALE_LAB_HOURS:
                issues.append(_("Newest lab used is %(hours)s h old") % {"hours": f"{age:.0f}"})
        other = disagreement(s, tiers)
        own = tiers.alert_for(s.model)
        previous = None
        if s.previous:
            previous = _("%(day)s: highest %(before)s, tonight %(now)s") % {
                "day": self.night(s.previous[0], run.as_of),
                "before": format_pct(s.previous[1]),
                "now": format_pct(s.max_risk),
            }
        return {
            "summary": s,
            "state": s.alert_state,
            "state_label": _(STATE_LABELS.get(s.alert_state, s.alert_state)),
            "grade": self.grade(s, run.as_of),
            "grade_cell": self.grade_cell(s, run.as_of),
            "labs": [self.lab(line, run.as_of) for line in labs],
            "labs_horizon": labs[0].horizon_days if labs else None,
            "top_lab": self.lab_short(labs[0]) if labs else None,
            "collected": self.window(s, run.as_of),
            "threshold_note": _("alert at ≥ %(threshold)s on this model")
            % {"threshold": f"{own * 100:g}%"}
            if own != tiers.headline
            else None,
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

    def grade_cell(self, s: PatientSummary, as_of: date) -> str:
        """A table's CRS column: the grade, dated when older than `GRADE_DATED_DAYS`.

        >>> from prcrs_batch.nightly.alerts import PatientSummary
        >>> s = PatientSummary("p", 5, 1, None, (None,) * 3, None, False, "", None, None, (),
        ...                    crs_grade_on=date(2026, 11, 20))
        >>> Wording().grade_cell(s, date(2026, 11, 26)), Wording().grade_cell(s, date(2026, 11, 21))
        ('1 (20 Nov)', '1')
        """
        if s.crs_grade is None:
            return "–"
        if s.crs_grade_on is not None and (as_of - s.crs_grade_on).days > GRADE_DATED_DAYS:
            return f"{s.crs_grade} ({self.day(s.crs_grade_on, as_of)})"
        return str(s.crs_grade)

    def lab(self, line: LabLine, as_of: date) -> str:
        """ "Interleukin-6 1,240 pg/mL (+14 points), 06:10 today, up from 85 yesterday": what
        the lab adds to the risk stands by its value, so a falling lab that still raises the
        risk reads as what it is."""
        _ = self._
        text = self.lab_short(line)
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
            day, today = line.previous_at.date(), self.reader_day(as_of)
            recent = today - timedelta(days=1) <= day <= today
            when = (
                self.day(day, as_of) if recent else _("on %(day)s") % {"day": self.day(day, as_of)}
            )
            text += ", " + change % {"value": before, "when": when}
        return text

    def lab_short(self, line: LabLine) -> str:
        """ "Interleukin-6 1,240 pg/mL (+14 points)": a compact row's top lab."""
        value = format_value(line.value, line.unit)
        return f"{self._(line.name)} {value} ({format_points(line.contribution, self._)})"

    def set_aside(self, what: str) -> str:
        """ "IL6: unknown unit" (features.cleaning's words) with the reason translated."""
        analyte, sep, reason = what.rpartition(": ")
        if not sep or reason not in SET_ASIDE_REASONS:
            return what
        return f"{analyte}: {self._(SET_ASIDE_REASONS[reason])}"

    def reason(self, code: str) -> str:
        """A data-quality reason code (unknown_unit) in words, translated."""
        words = str(code).replace("_", " ")
        return self._(SET_ASIDE_REASONS[words]) if words in SET_ASIDE_REASONS else words

    def window(self, s: PatientSummary, as_of: date) -> str | None:
        """When the results used were collected: "06:00 1 Dec to 06:00 yesterday", one
        time, or None when none was used."""
        first, last = s.labs_first_at, s.labs_latest_at
        if first is None or last is None:
            return None
        if first == last:
            return self.moment(last, as_of)
        return self._("%(first)s to %(last)s") % {
            "first": self.moment(first, as_of),
            "last": self.moment(last, as_of),
        }

    def why(self, s: PatientSummary) -> str:
        """Why this model, or why none could score, translated (`PatientSummary.why` in the
        report's language; the English is the same sentence)."""
        _ = self._
        if s.already_severe:
            return _("already severe (CRS grade ≥ 3): not scored as a warning")
        if s.model is None:
            return self._none_scored(s.others)
        observed = "?" if s.inputs_observed is None else str(s.inputs_observed)
        reason = _(
            "first model in the recommended order with enough inputs: %(model)s %(all)s inputs "
            "needs ≥ %(needed)s observed; %(seen)s of %(all)s observed"
        ) % {
            "model": s.model,
            "all": s.inputs_expected,
            "needed": min_observed(s.model),
            "seen": observed,
        }
        before = MODELS[: MODELS.index(s.model)] if s.model in MODELS else ()
        skipped = [self._skipped(r) for r in s.others if r.model in before]
        if skipped:
            reason += _(" (skipped %(models)s)") % {"models": "; ".join(skipped)}
        if any(r is None for r in s.risks):
            reason += _("; not scored at every horizon")
        return reason

    def _skipped(self, r: ModelResult) -> str:
        """ModelResult.skipped_because, translated."""
        _ = self._
        if "error" in r.statuses:
            return _("%(model)s: model error") % {"model": r.model}
        if "insufficient_inputs" in r.statuses:
            return _("%(model)s: %(seen)s of %(all)s observed, needs ≥ %(needed)s") % {
                "model": r.model,
                "seen": "?" if r.inputs_observed is None else r.inputs_observed,
                "all": r.inputs_expected,
                "needed": min_observed(r.model),
            }
        if r.ok_anywhere:
            return _("%(model)s: not scored at every horizon") % {"model": r.model}
        return _("%(model)s: not scored") % {"model": r.model}

    def _none_scored(self, results: Sequence[ModelResult]) -> str:
        """alerts' not-scorable reason, translated."""
        _ = self._
        if all(all(s == "missing" for s in r.statuses) for r in results):
            return _("no scores this run")
        errors = [r.model for r in results if "error" in r.statuses]
        counted = [r for r in results if r.inputs_observed is not None and r.model not in errors]
        parts = []
        if counted:
            best = max(counted, key=lambda r: (r.inputs_observed or 0) - min_observed(r.model))
            if not best.inputs_observed:
                parts.append(_("no lab inputs observed before the cut-off"))
            else:
                parts.append(
                    _(
                        "too few inputs (best: %(model)s %(seen)s of %(all)s observed, "
                        "needs ≥ %(needed)s)"
                    )
                    % {
                        "model": best.model,
                        "seen": best.inputs_observed,
                        "all": best.inputs_expected,
                        "needed": min_observed(best.model),
                    }
                )
        if errors:
            parts.append(_("model error in %(models)s") % {"models": ", ".join(errors)})
        return "; ".join(parts) or _("not scored")

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
        """today / yesterday / 24 Nov, as the reader of data day `as_of`'s text counts them.

        >>> Wording().day(date(2026, 11, 26), date(2026, 11, 26))  # read the morning after
        'yesterday'
        >>> Wording(read_days_after=0).day(date(2026, 11, 26), date(2026, 11, 26))
        'today'
        """
        return self._relative(day, self.reader_day(as_of))

    def night(self, night: date, as_of: date) -> str:
        """An earlier night named from tonight's (data day `as_of`): the night before is
        "yesterday", as in "yesterday: highest 27%, tonight 60%".

        >>> Wording().night(date(2026, 11, 25), date(2026, 11, 26))
        'yesterday'
        """
        return self._relative(night, as_of)

    def _relative(self, day: date, today: date) -> str:
        if day == today:
            return self._("today")
        if day == today - timedelta(days=1):
            return self._("yesterday")
        return self._("%(day)s %(month)s") % {"day": day.day, "month": self._(day.strftime("%b"))}

    def moment(self, when: datetime, as_of: date) -> str:
        """ "06:10 today"."""
        return self._("%(time)s %(day)s") % {
            "time": when.strftime("%H:%M"),
            "day": self.day(when.date(), as_of),
        }


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
