"""A night's computation, from the warehouse rows to the decisions: clean labs -> features ->
score -> alerts -> explain. The nightly job (pipeline.py) and `prcrs-batch score`
(score_command.py) both run it, so the same rows give the same numbers; neither reads nor writes
the results database here (earlier nights come in through `read_history`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from prcrs_batch.features.cleaning import clean_labs, previous_results, set_aside_by_patient
from prcrs_batch.features.matrix import lab_matrix
from prcrs_batch.modeling.store import ModelBundle
from prcrs_batch.nightly import alert_states, alerts, explanations, scoring
from prcrs_batch.settings import Settings
from prcrs_batch.task.target import already_severe
from prcrs_batch.task.thresholds import Tiers
from prcrs_batch.warehouse.queries import NightInputs, Window

Stage = Callable[[str], AbstractContextManager[object]]


@dataclass
class ScoredNight:
    """What a night decided, and the rows it decided on."""

    patients: pd.DataFrame  # the active cohort with labs_from/labs_to/set_aside
    clean: pd.DataFrame  # the values used (cleaning.clean_labs, latest_only)
    previous: pd.DataFrame  # results before them, explained patients (cleaning.previous_results)
    issues: pd.DataFrame  # every recorded decision
    features: pd.DataFrame  # the 42 analyte columns per patient
    scores: pd.DataFrame  # scoring.COLUMNS
    summaries: list[alerts.PatientSummary]
    recent: pd.DataFrame  # earlier nights (alert_states.recent_history)
    explained: pd.DataFrame  # explanations.COLUMNS
    tiers: Tiers  # the alert and watch thresholds applied, per model

    def reasons(self) -> dict[str, tuple[explanations.LabLine, ...]]:
        """patient_id -> the lab lines the report shows."""
        return explanations.lab_lines(self.explained, self.clean, self.previous)


def _untimed(name: str) -> AbstractContextManager[object]:
    return nullcontext()


def score_night(
    settings: Settings,
    bundle: ModelBundle,
    night: NightInputs,
    window: Window,
    read_history: Callable[[list[str]], pd.DataFrame],
    stage: Stage = _untimed,
) -> ScoredNight:
    """Decide a night from what was read from the warehouse.

    `read_history(alert_ids)` returns the stored scores of earlier nights that the report
    compares with (nights.score_history); `stage(name)` times each stage.
    """
    with stage("clean labs"):
        now = pd.Timestamp(window.now or datetime.now())
        clean, issues = clean_labs(night.labs, now=now, latest_only=True)
        issues = pd.concat([night.issues, issues], ignore_index=True)
    with stage("features"):
        features = lab_matrix(clean, night.patients["patient_id"].tolist())
        collected = clean.groupby("patient_id")["collected_at"].agg(["min", "max"])
        ids = night.patients["patient_id"]
        set_aside = set_aside_by_patient(issues)
        patients = night.patients.assign(
            labs_from=ids.map(collected["min"]),
            labs_to=ids.map(collected["max"]),
            set_aside=ids.map(lambda pid: set_aside.get(str(pid), [])),
        )
    with stage("score"):
        severe = [
            pid
            for pid, grade in zip(patients["patient_id"], patients["crs_grade"], strict=True)
            if already_severe(grade)
        ]
        scores = scoring.score(bundle, features, device=settings.device, already_severe=severe)
    with stage("alerts"):
        tiers = night_tiers(settings, bundle)
        summaries = alerts.summarise_patients(patients=patients, scores=scores, threshold=tiers)
        recent = alert_states.recent_history(
            read_history(alerts.alert_ids(summaries)), window.as_of
        )
        summaries = alert_states.with_previous(summaries, recent, tiers)
    with stage("explain"):
        chosen = {
            s.patient_id: s.model
            for s in summaries
            if s.model and (s.alert or settings.explain_all)
        }
        explained = explanations.explain(bundle, features, chosen, device=settings.device)
        # the results before the values used, for the explained patients' lab lines only
        shown = set(explained["patient_id"].astype(str))
        mine = night.labs[night.labs["patient_id"].astype(str).isin(shown)]
        used = clean[clean["patient_id"].astype(str).isin(shown)]
        previous = previous_results(mine, used, now=now)
    return ScoredNight(
        patients, clean, previous, issues, features, scores, summaries, recent, explained, tiers
    )


def night_tiers(settings: Settings, bundle: ModelBundle) -> Tiers:
    """The thresholds a night applies: each model's from its manifest, or the settings'."""
    return Tiers.of(bundle.manifest, settings.alert_threshold, settings.watch_threshold)
