"""Stage 5: the alert decisions, pure. The pipeline and the report both ask this module.

- a patient's recommended model is the first factor set in the paper's order
  (`panel.FACTOR_SETS`) whose status is `ok` at every horizon; failing that, the first
  that is `ok` at any horizon; failing that, the patient is not scorable;
- the patient is an alert when that model's calibrated risk at any horizon is >= the
  model's alert threshold (a risk exactly at it is an alert), else on watch when it is >=
  the model's watch threshold (thresholds.Tiers: each model's own, from the manifest);
- a patient already severe (latest grade >= 3) is listed apart, never as an alert: the
  risks are of onset, among patients not yet severe;
- another model is told only when it disagrees materially (`disagreement`);
- how tonight compares with earlier nights is alert_states.py's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

import pandas as pd

from prcrs_batch.task.panel import FACTOR_SETS, HORIZONS, inputs_for, min_observed
from prcrs_batch.task.thresholds import Tiers

logger = logging.getLogger(__name__)

MODELS: tuple[str, ...] = tuple(FACTOR_SETS)
SEVERE_WHY = "already severe (CRS grade ≥ 3): not scored as a warning"
TIERS = ("alert", "watch")  # PatientSummary.tier; crs_patient_nights.tier
DISAGREEMENT = 0.10  # another model's highest risk this far off, across the threshold, is told


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
    """What the night decided about one active patient."""

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
    previous: tuple[date, float] | None = None  # latest earlier night: date, max risk
    trend_cid: str | None = None  # content-id of the trend chart, set by the report
    labs_first_at: datetime | None = None  # the oldest result used (labs_latest_at: newest)
    already_severe: bool = False  # latest grade >= 3: not scored as a warning
    alert_state: str = "none"  # one of alert_states.ALERT_STATES (`with_previous` sets it)
    crs_grade_on: date | None = None  # when the latest CRS grade was assessed
    labs_latest_at: datetime | None = None  # the newest result used
    set_aside: tuple[str, ...] = ()  # this patient's values set aside: "analyte: reason"
    watch: bool = False  # under the alert threshold, at or over the model's watch threshold
    threshold: float | None = None  # the recommended model's alert threshold

    @property
    def tier(self) -> str | None:
        """ "alert", "watch" or None."""
        return "alert" if self.alert else "watch" if self.watch else None

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


def summarise_patients(
    *, patients: pd.DataFrame, scores: pd.DataFrame, threshold: Tiers | float
) -> list[PatientSummary]:
    """One `PatientSummary` per active patient (and per scored patient not in `patients`).

    Args:
        patients: one row per active patient: patient_id, day_since_infusion, crs_grade
            (nullable), and optionally labs_from / labs_to (collection times used).
        scores: one row per patient x model x horizon, as `scoring.score` returns them.
        threshold: the thresholds per model (a number: one alert threshold for every
            model, no watch tier).

    >>> import pandas as pd
    >>> summarise_patients(patients=pd.DataFrame(), scores=pd.DataFrame(), threshold=0.3)
    []
    """
    tiers = as_tiers(threshold)
    by_patient = _cells(scores)
    info = {str(row["patient_id"]): row for row in records(patients)}
    orphans = [pid for pid in by_patient if pid not in info]
    if orphans:
        logger.warning("%d scored patient(s) missing from the active cohort", len(orphans))
    return [
        _summarise(pid, info.get(pid, {}), by_patient.get(pid, {}), tiers)
        for pid in [*info, *orphans]
    ]


# A score row as _model_results reads it, keyed by (model, horizon): a tuple, not a dict
# per row (180,000 rows on a 10,000-patient night).
CELL_COLUMNS = ("status", "calibrated_risk", "inputs_observed", "inputs_expected", "detail")
Cells = dict[tuple[str, int | None], tuple[Any, ...]]


def _cells(scores: pd.DataFrame) -> dict[str, Cells]:
    """Each patient's score rows by (model, horizon); of two rows for one cell, the last."""
    by_patient: dict[str, Cells] = {}
    if scores.empty:
        return by_patient
    keys = zip(*(scores[c].tolist() for c in ("patient_id", "model", "horizon_days")))
    values = zip(
        *(scores[c].tolist() if c in scores else [None] * len(scores) for c in CELL_COLUMNS)
    )
    for (pid, model, horizon), cell in zip(keys, values, strict=True):
        by_patient.setdefault(str(pid), {})[(str(model), optional_int(horizon))] = cell
    return by_patient


def alert_ids(summaries: Sequence[PatientSummary]) -> list[str]:
    """The patients whose history the report needs: the alerts."""
    return [s.patient_id for s in summaries if s.alert]


def as_tiers(threshold: Tiers | float) -> Tiers:
    """Thresholds per model; a number is one alert threshold for every model."""
    return threshold if isinstance(threshold, Tiers) else Tiers.fixed(float(threshold))


def disagreement(summary: PatientSummary, threshold: Tiers | float) -> ModelResult | None:
    """The first other model (recommended order) whose highest risk is on the other side of
    its own alert threshold and at least `DISAGREEMENT` away from the recommended model's;
    else None."""
    tiers = as_tiers(threshold)
    if summary.max_risk is None:
        return None
    for other in summary.others:
        present = [r for r in other.risks if r is not None]
        if not present:
            continue
        highest = max(present)
        crosses = (highest >= tiers.alert_for(other.model)) != summary.alert
        if crosses and abs(highest - summary.max_risk) >= DISAGREEMENT - 1e-12:
            return other
    return None


def _summarise(pid: str, patient: Mapping[str, Any], cells: Cells, tiers: Tiers) -> PatientSummary:
    results = _model_results(cells)
    chosen = recommend_model(results)
    unscored = PatientSummary(  # what every patient has; the branches fill in the rest
        patient_id=pid,
        day_since_infusion=optional_int(patient.get("day_since_infusion")),
        crs_grade=optional_int(patient.get("crs_grade")),
        model=None,
        risks=(None,) * len(HORIZONS),
        max_risk=None,
        alert=False,
        why="",
        inputs_observed=None,
        inputs_expected=None,
        others=tuple(results),
        labs_first_at=_optional_datetime(patient.get("labs_from")),
        crs_grade_on=_optional_date(patient.get("crs_grade_on")),
        labs_latest_at=_optional_datetime(patient.get("labs_to")),
        set_aside=tuple(patient.get("set_aside") or ()),
    )
    if any(s == "already_severe" for r in results for s in r.statuses):
        return replace(unscored, why=SEVERE_WHY, already_severe=True)
    if chosen is None:
        return replace(unscored, why=_not_scorable_reason(results))
    present = [r for r in chosen.risks if r is not None]
    max_risk = max(present) if present else None
    alert_at, watch_at = tiers.alert_for(chosen.model), tiers.watch_for(chosen.model)
    alert = max_risk is not None and max_risk >= alert_at
    return replace(
        unscored,
        model=chosen.model,
        risks=chosen.risks,
        max_risk=max_risk,
        alert=alert,
        watch=not alert and max_risk is not None and watch_at is not None and max_risk >= watch_at,
        threshold=alert_at,
        why=_why_model(chosen, results),
        inputs_observed=chosen.inputs_observed,
        inputs_expected=chosen.inputs_expected,
        others=tuple(r for r in results if r.model != chosen.model),
    )


def _model_results(cells: Cells) -> list[ModelResult]:
    """The patient's rows (`_cells`) grouped per model, in the recommended order."""
    results = []
    for model in MODELS:
        risks: list[float | None] = []
        statuses: list[str] = []
        observed: int | None = None
        expected: int | None = None
        details: list[str] = []
        for horizon in HORIZONS:
            cell = cells.get((model, horizon))
            if cell is None:
                risks.append(None)
                statuses.append("missing")
                continue
            status, risk_value, observed_value, expected_value, detail = cell
            status = str(status)
            risk = optional_float(risk_value)
            if status == "ok" and risk is None:
                status = "error"  # an ok row without a risk is not usable
            statuses.append(status)
            risks.append(risk if status == "ok" else None)
            if observed is None:
                observed = optional_int(observed_value)
            if expected is None:
                expected = optional_int(expected_value)
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


def _optional_date(value: Any) -> date | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).date()


def _optional_datetime(value: Any) -> datetime | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).to_pydatetime()


def format_datetime(value: Any) -> str:
    """A timestamp to the minute, with its zone when it has one."""
    if isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M")
        return f"{text} {value.tzname()}" if value.tzinfo else text
    return str(value)


def optional_int(value: Any) -> int | None:
    """An int, or None for None/NA/NaN."""
    if value is None or value is pd.NA:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return int(value)


def optional_float(value: Any) -> float | None:
    """A float, or None for None/NA/NaN."""
    if value is None or value is pd.NA:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Rows as dicts; several times faster than DataFrame.to_dict("records")."""
    if frame is None or frame.empty:
        return []
    columns = [str(c) for c in frame.columns]
    values = [frame[c].tolist() for c in frame.columns]
    return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]


NIGHT_COLUMNS = [
    "patient_id",
    "day_since_infusion",
    "crs_grade",
    "recommended_model",
    "max_risk",
    "alert",
    "tier",
    "alert_threshold",
    "alert_state",
    "previous_max_risk",
    "labs_latest_at",
    "n_inputs_set_aside",
]


def night_rows(summaries: Sequence[PatientSummary]) -> pd.DataFrame:
    """One crs_patient_nights row per patient: what the report says about each."""
    rows = [
        (
            s.patient_id,
            s.day_since_infusion,
            s.crs_grade,
            s.model,
            s.max_risk,
            s.alert,
            s.tier,
            s.threshold,
            s.alert_state,
            s.previous[1] if s.previous else None,
            s.labs_latest_at,
            len(s.set_aside),
        )
        for s in summaries
    ]
    return pd.DataFrame(rows, columns=NIGHT_COLUMNS, dtype=object)
