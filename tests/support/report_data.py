"""Tiny synthetic inputs for render.build_report. Synthetic ids only, no patient data."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

import pandas as pd

from prcrs_batch.nightly import alerts
from prcrs_batch.nightly.alert_states import recent_history, with_previous
from prcrs_batch.nightly.explanations import LabLine
from prcrs_batch.report.render import Report, build_report
from prcrs_batch.resources import template_dir
from prcrs_batch.results.nights import RunInfo
from prcrs_batch.task.panel import BY_CODE, FACTOR_SETS, HORIZONS, inputs_for
from prcrs_batch.task.thresholds import Tiers

TEMPLATE_DIR = template_dir()
AS_OF = date(2026, 11, 26)
THRESHOLD = 0.30

Risks = tuple[float, float, float]


def make_run(n_patients: int = 0, n_data_issues: int = 4) -> RunInfo:
    return RunInfo(
        run_id="0b7e2c8e-run-test",
        as_of=AS_OF,
        started_at=datetime.combine(AS_OF, time(2, 0)),
        data_cutoff=datetime.combine(AS_OF, time(23, 59, 59)),
        model_version="prcrs-2026.11-test",
        n_patients=n_patients,
        n_scores=n_patients * len(FACTOR_SETS) * len(HORIZONS),
        n_data_issues=n_data_issues,
    )


def summarise(
    patients: pd.DataFrame,
    scores: pd.DataFrame,
    history: pd.DataFrame,
    threshold: Tiers | float,
) -> list[alerts.PatientSummary]:
    """The pipeline's alert decisions, as it takes them before the report."""
    summaries = alerts.summarise_patients(patients=patients, scores=scores, threshold=threshold)
    return with_previous(summaries, recent_history(history, AS_OF), threshold)


def render_report(
    *,
    run: RunInfo,
    patients: pd.DataFrame,
    scores: pd.DataFrame,
    history: pd.DataFrame,
    data_issues: dict[str, int],
    threshold: Tiers | float = THRESHOLD,
) -> Report:
    """Alert decisions then the report, as the pipeline chains them."""
    return build_report(
        run=run,
        summaries=summarise(patients, scores, history, threshold),
        history=recent_history(history, AS_OF),
        data_issues=data_issues,
        threshold=threshold,
        template_dir=TEMPLATE_DIR,
    )


def make_patients(ids: list[str], grades: dict[str, int] | None = None) -> pd.DataFrame:
    grades = grades or {}
    return pd.DataFrame(
        {
            "patient_id": ids,
            "infusion_date": [AS_OF - timedelta(days=4 + i) for i in range(len(ids))],
            "day_since_infusion": [4 + i for i in range(len(ids))],
            "crs_grade": pd.array([grades.get(p) for p in ids], dtype="Int64"),
        }
    )


def make_scores(spec: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """spec: patient -> model -> (r1, r2, r3) risks, "insufficient", "error", or a dict
    horizon -> risk/"error" for mixed rows. Models not named are insufficient; a patient
    whose spec is "severe" has every row already_severe."""
    rows = []
    for pid, models in spec.items():
        for model in FACTOR_SETS:
            expected = len(inputs_for(model))
            value = "severe" if models == "severe" else models.get(model, "insufficient")
            for i, horizon in enumerate(HORIZONS):
                cell = value.get(horizon, "error") if isinstance(value, dict) else value
                if isinstance(cell, tuple):
                    cell = cell[i]
                if cell == "insufficient":
                    status, risk, observed, detail = (
                        "insufficient_inputs",
                        None,
                        2,
                        "too few inputs",
                    )
                elif cell == "severe":
                    status, risk, observed, detail = "already_severe", None, expected, None
                elif cell == "error":
                    status, risk, observed, detail = (
                        "error",
                        None,
                        expected - 1,
                        "model file failed checksum",
                    )
                else:
                    status, risk, observed, detail = "ok", float(cell), expected - 1, None
                rows.append(
                    {
                        "patient_id": pid,
                        "model": model,
                        "horizon_days": horizon,
                        "probability": risk,
                        "calibrated_risk": risk if risk is not None else float("nan"),
                        "status": status,
                        "inputs_observed": observed,
                        "inputs_expected": expected,
                        "detail": detail,
                    }
                )
    return pd.DataFrame(rows)


def make_history(pid: str, model: str, nights: int = 5, start: float = 0.05) -> pd.DataFrame:
    rows = []
    for k in range(nights, 0, -1):
        for horizon in HORIZONS:
            rows.append(
                {
                    "patient_id": pid,
                    "as_of": AS_OF - timedelta(days=k),
                    "model": model,
                    "horizon_days": horizon,
                    "calibrated_risk": start + 0.04 * (nights - k) + 0.02 * horizon,
                }
            )
    return pd.DataFrame(rows)


def make_data_issues() -> dict[str, int]:
    return {"implausible_value": 2, "unknown_unit": 1, "unparseable_text": 1}


EMPTY_HISTORY = pd.DataFrame(
    columns=["patient_id", "as_of", "model", "horizon_days", "calibrated_risk"]
)


def crowded_night(
    n_alerts: int, n_others: int, n_severe: int = 5, id_width: int = 4, charted: int = 30
) -> dict[str, Any]:
    """build_report's arguments for a night of `n_alerts` alerts (each with five lab lines,
    the first `charted` with earlier nights: states and trend charts), `n_others` patients
    under the threshold and `n_severe` already severe. Ids are SYN-A<n>, SYN-O<n>, SYN-S<n>,
    zero-padded to `id_width` digits (a long width: a warehouse with long ids); the charted
    alerts are by turns new, rising, continuing and falling."""
    alerting = [f"SYN-A{i:0{id_width}d}" for i in range(n_alerts)]
    quiet = [f"SYN-O{i:0{id_width}d}" for i in range(n_others)]
    severe = [f"SYN-S{i:0{id_width}d}" for i in range(n_severe)]
    spec: dict[str, Any] = {
        pid: {"all": (0.31 + 0.6 * i / max(n_alerts, 1), 0.5, 0.9)}
        for i, pid in enumerate(alerting)
    }
    spec |= {
        pid: {"all": (0.01, 0.05 + 0.2 * i / max(n_others, 1), 0.2)} for i, pid in enumerate(quiet)
    }
    spec |= {pid: "severe" for pid in severe}
    ids = list(spec)
    grades = {pid: 3 for pid in severe} | {pid: 1 for pid in alerting[::3]}
    starts = (0.05, 0.5, 0.72, 0.85)  # last night's highest: new, rising, continuing, falling
    history = pd.concat(
        [
            make_history(pid, "all", nights=3, start=starts[i % 4])
            for i, pid in enumerate(alerting[:charted])
        ]
        or [EMPTY_HISTORY]
    )
    run = make_run(len(ids))
    summaries = summarise(make_patients(ids, grades), make_scores(spec), history, THRESHOLD)
    morning = datetime.combine(AS_OF, time(6, 10))
    labs = [
        ("il6", 1240.0, 85.0, 0.14),
        ("crp", 96.0, 41.0, 0.08),
        ("ferritin", 2890.0, 3100.0, 0.05),
        ("ldh", 512.0, None, 0.03),
        ("platelet", 41.0, 63.0, 0.004),
    ]
    reasons = {
        pid: tuple(
            LabLine(
                analyte=code,
                name=BY_CODE[code].display_name,
                value=value,
                unit=BY_CODE[code].unit,
                collected_at=morning,
                previous_value=before,
                previous_at=None if before is None else morning - timedelta(days=1),
                contribution=points,
                horizon_days=3,
            )
            for code, value, before, points in labs
        )
        for pid in alerting
    }
    return {
        "run": run,
        "summaries": summaries,
        "history": recent_history(history, AS_OF),
        "data_issues": make_data_issues(),
        "threshold": THRESHOLD,
        "reasons": reasons,
        "template_dir": TEMPLATE_DIR,
    }
