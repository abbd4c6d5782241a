"""A night's summary for machines: one JSON record (`--json`) and Prometheus metrics.

The metrics are written in the Prometheus text format to PRCRS_METRICS_FILE after every
night, for node_exporter's textfile collector: the file always describes the last night
the job ran (any command), is replaced atomically, and is readable by other users (it
holds counts, never patient data).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from prcrs_batch.errors import describe
from prcrs_batch.results.tables import RUN_STATUSES
from prcrs_batch.settings import Settings
from prcrs_batch.warehouse.freshness import FeedState

log = logging.getLogger(__name__)
PREFIX = "prcrs_last_run_"


class NightSummary(Protocol):
    """What a night reports (pipeline.RunSummary)."""

    run_id: str
    as_of: date
    status: str
    started_at: datetime
    finished_at: datetime | None
    n_patients: int
    n_scores: int
    n_alerts: int
    n_data_issues: int
    n_model_errors: int
    model_version: str | None
    error: str | None
    seconds: dict[str, float]
    status_counts: dict[str, int]
    data_issue_counts: dict[str, int]
    report_path: Path | None
    email: str
    feed: FeedState | None

    @property
    def ok(self) -> bool: ...


def record(summary: NightSummary) -> dict[str, Any]:
    """The night as one JSON-ready record (what `--json` prints, one line per night)."""
    feed = summary.feed
    return {
        "run_id": summary.run_id,
        "as_of": summary.as_of.isoformat(),
        "status": summary.status,
        "ok": summary.ok,
        "started_at": summary.started_at.isoformat(),
        "finished_at": summary.finished_at.isoformat() if summary.finished_at else None,
        "seconds": {stage: round(s, 3) for stage, s in summary.seconds.items()},
        "patients": summary.n_patients,
        "scores": summary.n_scores,
        "score_statuses": as_counts(summary.status_counts),
        "alerts": summary.n_alerts,
        "data_issues": summary.n_data_issues,
        "data_issue_reasons": as_counts(summary.data_issue_counts),
        "models_in_error": summary.n_model_errors,
        "model_version": summary.model_version,
        "newest_infusion": _iso(feed.newest_infusion) if feed else None,
        "infusion_age_days": feed.infusion_age_days if feed else None,
        "newest_lab": _iso(feed.newest_lab) if feed else None,
        "lab_age_hours": _round(feed.lab_age_hours) if feed else None,
        "report_path": str(summary.report_path) if summary.report_path else None,
        "email": summary.email,
        "error": summary.error,
    }


def registry(summary: NightSummary) -> CollectorRegistry:
    """The night's metrics (a fresh registry: the file holds the last night only)."""
    reg = CollectorRegistry()

    def gauge(name: str, doc: str, value: float | None, **labels: str) -> None:
        if value is None:
            return
        metric = Gauge(PREFIX + name, doc, list(labels), registry=reg)
        (metric.labels(**labels) if labels else metric).set(value)

    status = Gauge(PREFIX + "status", "1 for the last night's run status", ["status"], registry=reg)
    for name in RUN_STATUSES:
        status.labels(status=name).set(1 if summary.status == name else 0)
    gauge("ok", "1 when the last night succeeded and its email did not fail", int(summary.ok))
    finished = summary.finished_at or summary.started_at
    gauge("timestamp_seconds", "When the last night finished (Unix time)", finished.timestamp())
    gauge(
        "duration_seconds",
        "Wall time of the last night",
        (finished - summary.started_at).total_seconds(),
    )
    stages = Gauge(
        PREFIX + "stage_seconds", "Seconds per stage of the last night", ["stage"], registry=reg
    )
    for stage, seconds in summary.seconds.items():
        stages.labels(stage=stage).set(seconds)
    gauge("patients", "Active patients scored", summary.n_patients)
    gauge("scores", "Score rows stored", summary.n_scores)
    gauge("alerts", "Patients at or above the alert threshold", summary.n_alerts)
    gauge("data_issues", "Lab values set aside or bounded", summary.n_data_issues)
    gauge("models_in_error", "Models that could not be loaded", summary.n_model_errors)
    gauge("email_failed", "1 when sending the report failed", int(summary.email.startswith("fail")))
    feed = summary.feed
    if feed is not None:
        gauge("lab_age_seconds", "Age of the newest lab result in the warehouse", _hours_to_s(feed))
        if feed.infusion_age_days is not None:
            gauge(
                "infusion_age_seconds",
                "Age of the newest infusion (as-of date minus infusion date)",
                feed.infusion_age_days * 86400.0,
            )
    return reg


def export_metrics(settings: Settings, summary: NightSummary) -> None:
    """Write the night's metrics to PRCRS_METRICS_FILE, when set."""
    if settings.metrics_file is not None:
        write_textfile(settings.metrics_file, summary)


def write_textfile(path: Path, summary: NightSummary) -> None:
    """Write the metrics atomically (mode 0644); a failure is logged, never raised."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(generate_latest(registry(summary)))
            os.chmod(tmp, 0o644)  # node_exporter runs as another user; no patient data here
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        log.warning("metrics not written to %s: %s", path, describe(exc))


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _hours_to_s(feed: FeedState) -> float | None:
    return None if feed.lab_age_hours is None else feed.lab_age_hours * 3600.0


def as_counts(values: Mapping[str, int]) -> dict[str, int]:
    """Counts as plain ints (numpy ints are not JSON)."""
    return {str(k): int(v) for k, v in values.items()}
