"""The nightly job: the only module that knows the order of the stages.

warehouse -> labs -> features -> models (scoring, calibration) -> results -> report -> email
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import TypeVar

import pandas as pd
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from prcrs_batch import artifacts, mailer, report, results, scoring
from prcrs_batch.features import lab_matrix
from prcrs_batch.labs import clean_labs
from prcrs_batch.resources import template_dir
from prcrs_batch.settings import Settings
from prcrs_batch.warehouse import Window, active_cohort, latest_crs_grades, latest_labs

log = logging.getLogger(__name__)
T = TypeVar("T")

TEMPLATE_DIR = template_dir()
TREND_NIGHTS = 7
DB_ATTEMPTS = 3
DB_BACKOFF_SECONDS = 2.0


@dataclass
class RunSummary:
    """What one night did: printed by the CLI, one screen."""

    run_id: str
    as_of: date
    status: str = "running"
    n_patients: int = 0
    n_scores: int = 0
    n_alerts: int = 0
    n_data_issues: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    data_issue_counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    model_version: str | None = None
    report_path: Path | None = None
    email: str = "not sent"
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded" and not self.email.startswith("failed")


@contextmanager
def _stage(summary: RunSummary, name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        summary.seconds[name] = summary.seconds.get(name, 0.0) + time.perf_counter() - start


def with_db_retries(action: Callable[[], T], what: str, attempts: int = DB_ATTEMPTS) -> T:
    """Run a database action, retrying lost or refused connections with exponential backoff."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except (OperationalError, DBAPIError) as exc:
            transient = isinstance(exc, OperationalError) or exc.connection_invalidated
            if not transient or attempt == attempts:
                raise
            wait = DB_BACKOFF_SECONDS * 2 ** (attempt - 1)
            log.warning(
                "%s: database error (%s), retry %d/%d in %.0fs",
                what,
                type(exc.orig).__name__,
                attempt,
                attempts - 1,
                wait,
            )
            time.sleep(wait)
    raise AssertionError("unreachable")


@dataclass
class NightInputs:
    patients: pd.DataFrame
    labs: pd.DataFrame


def read_night(warehouse: Engine, window: Window) -> NightInputs:
    """Active cohort, latest labs and latest CRS grades, read in one warehouse connection."""
    with warehouse.connect() as connection:
        patients = active_cohort(connection=connection, window=window)
        labs = latest_labs(connection=connection, window=window)
        grades = latest_crs_grades(connection=connection, window=window)
    patients = patients.merge(grades[["patient_id", "grade"]], on="patient_id", how="left")
    patients = patients.rename(columns={"grade": "crs_grade"})
    patients["crs_grade"] = patients["crs_grade"].astype("Int64")
    return NightInputs(patients=patients, labs=labs)


def run_nightly(
    settings: Settings,
    *,
    as_of: date,
    warehouse: Engine,
    results_db: Engine,
    bundle: artifacts.ModelBundle | None = None,
    send_email: bool = True,
) -> RunSummary:
    """Score every active patient for one as-of date, store the night, write and send the report.

    Never raises for a failed night: the summary says what failed, the failure is stored
    on a scoring_runs row, and nothing partial is left in crs_risk_scores.
    """
    summary = RunSummary(run_id=str(uuid.uuid4()), as_of=as_of)
    started = datetime.now(timezone.utc)
    window = Window(
        as_of=as_of, active_days=settings.active_days, lookback_hours=settings.lookback_hours
    )
    log.info("run %s: scoring as of %s", summary.run_id, as_of.isoformat())
    try:
        if bundle is None:  # the CLI loads them once for all the nights it runs
            with _stage(summary, "load models"):
                bundle = artifacts.load_models(settings.model_dir, device=settings.device)
        summary.model_version = bundle.model_version
        with _stage(summary, "read warehouse"):
            night = with_db_retries(lambda: read_night(warehouse, window), "read warehouse")
        with _stage(summary, "clean labs"):
            clean, issues = clean_labs(night.labs, now=pd.Timestamp(datetime.now()))
        with _stage(summary, "features"):
            features = lab_matrix(clean, night.patients["patient_id"].tolist())
            collected = clean.groupby("patient_id")["collected_at"].agg(["min", "max"])
            patients = night.patients.assign(
                labs_from=night.patients["patient_id"].map(collected["min"]),
                labs_to=night.patients["patient_id"].map(collected["max"]),
            )
        with _stage(summary, "score"):
            scores = scoring.score(bundle, features, device=settings.device)
        summary.n_patients = len(night.patients)
        summary.n_scores = len(scores)
        summary.n_data_issues = len(issues)
        summary.status_counts = dict(Counter(scores["status"]))
        summary.data_issue_counts = dict(Counter(issues["reason"]))

        with _stage(summary, "build report"):
            history = with_db_retries(
                lambda: _read_history(results_db, as_of, scores, settings.alert_threshold),
                "read score history",
            )
            run_info = {
                "run_id": summary.run_id,
                "as_of": as_of,
                "model_version": summary.model_version,
                "data_cutoff": window.end - timedelta(seconds=1),
                "n_patients": summary.n_patients,
                "n_scores": summary.n_scores,
                "n_data_issues": summary.n_data_issues,
            }
            issue_counts = pd.DataFrame(
                sorted(summary.data_issue_counts.items(), key=lambda kv: -kv[1]),
                columns=["reason", "n"],
            )
            alert_report = report.build_report(
                run=run_info,
                patients=patients,
                scores=scores,
                history=history,
                data_issues=issue_counts,
                threshold=settings.alert_threshold,
                template_dir=TEMPLATE_DIR,
            )
            summary.n_alerts = alert_report.n_alerts

        with _stage(summary, "write results"):
            run_row = {
                "run_id": summary.run_id,
                "as_of": as_of,
                "started_at": started,
                "finished_at": datetime.now(timezone.utc),
                "status": "succeeded",
                "n_patients": summary.n_patients,
                "n_scores": summary.n_scores,
                "n_alerts": summary.n_alerts,
                "n_data_issues": summary.n_data_issues,
                "model_version": summary.model_version,
                "error": None,
            }

            def write() -> None:
                with results_db.begin() as connection:
                    results.replace_night(
                        connection=connection, run=run_row, scores=scores, issues=issues
                    )

            with_db_retries(write, "write results")
        summary.status = "succeeded"
    except Exception as exc:  # a failed night is recorded and reported, never half-written
        summary.status = "failed"
        summary.error = _describe(exc)
        log.error("run %s failed: %s", summary.run_id, summary.error)
        _record_failure(results_db, summary, started)
        if send_email and settings.email_enabled:
            notice = report.build_failure_notice(
                run=_run_dict(summary), error=summary.error, template_dir=TEMPLATE_DIR
            )
            _send(
                settings,
                mailer.build_message(
                    notice, sender=settings.alert_from, recipients=settings.alert_to
                ),
                summary,
            )
        return summary

    try:
        _deliver_report(settings, results_db, summary, alert_report, send_email)
    except Exception as exc:  # the scores are stored; only the report is missing
        summary.email = f"failed: report not written: {_describe(exc)}"
        log.error("run %s: %s", summary.run_id, summary.email)
    log.info(
        "run %s %s: %d patients, %d scores, %d alerts, %d data-quality decisions",
        summary.run_id,
        summary.status,
        summary.n_patients,
        summary.n_scores,
        summary.n_alerts,
        summary.n_data_issues,
    )
    return summary


def _deliver_report(
    settings: Settings,
    results_db: Engine,
    summary: RunSummary,
    alert_report: report.Report,
    send_email: bool,
) -> None:
    """Write the HTML report, then send it (and any earlier undelivered one)."""
    as_of = summary.as_of
    with _stage(summary, "write report"):
        summary.report_path = report.write_report(
            alert_report, settings.report_dir, as_of, summary.run_id
        )
        if send_email and settings.email_enabled:
            # Kept beside the HTML until it is sent, so that a later night can resend it.
            message = mailer.build_message(
                alert_report, sender=settings.alert_from, recipients=settings.alert_to
            )
            summary.report_path.with_suffix(".eml").write_bytes(bytes(message))
        with results_db.begin() as connection:
            results.mark_report(
                connection=connection, run_id=summary.run_id, path=str(summary.report_path)
            )
    if send_email and settings.email_enabled:
        with _stage(summary, "send email"):
            _resend_undelivered(settings, results_db, as_of)
            if _send(settings, message, summary):
                _mark_sent(results_db, summary.run_id, summary.report_path)
    elif not settings.email_enabled:
        summary.email = "disabled (no PRCRS_SMTP_HOST): report written only"
    else:
        summary.email = "not sent (--no-email or backfill)"


def _read_history(
    results_db: Engine, as_of: date, scores: pd.DataFrame, threshold: float
) -> pd.DataFrame:
    """Earlier nights for the report: trends only for patients with a risk over the threshold."""
    over = scores["calibrated_risk"].to_numpy(dtype=float) >= threshold
    trend_patients = sorted(set(scores.loc[over, "patient_id"].astype(str)))
    with results_db.connect() as connection:
        return results.score_history(
            connection=connection,
            since=as_of - timedelta(days=TREND_NIGHTS),
            before=as_of,
            trend_patients=trend_patients,
        )


def _send(settings: Settings, message: EmailMessage, summary: RunSummary | None = None) -> bool:
    """Send by SMTP with the mailer's retries; False (and logged) when it could not."""
    try:
        mailer.send_message(
            message,
            host=settings.smtp_host or "",
            port=settings.smtp_port,
            sender=settings.alert_from,
            recipients=settings.alert_to,
            user=settings.smtp_user,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            starttls=settings.smtp_starttls,
            ssl=settings.smtp_ssl,
            ca_file=str(settings.smtp_ca_file) if settings.smtp_ca_file else None,
        )
    except mailer.MailError as exc:
        log.error("%s not sent: %s", message["Subject"], exc)
        if summary is not None:
            summary.email = f"failed: {exc}"
        return False
    if summary is not None:
        summary.email = f"sent to {len(settings.alert_to)} recipient(s)"
    return True


def _mark_sent(results_db: Engine, run_id: str, report_path: Path) -> None:
    """Record the delivery and drop the saved message: nothing is left to resend."""
    with results_db.begin() as connection:
        results.mark_report(
            connection=connection, run_id=run_id, sent_at=datetime.now(timezone.utc)
        )
    report_path.with_suffix(".eml").unlink(missing_ok=True)


def _resend_undelivered(settings: Settings, results_db: Engine, as_of: date) -> None:
    """Send the saved messages of earlier nights whose report never went out."""
    with results_db.connect() as connection:
        pending = results.undelivered_reports(connection=connection, before=as_of)
    for run in pending:
        saved = Path(run["report_path"]).with_suffix(".eml")
        if not saved.exists():  # a backfilled night, not meant to be sent
            continue
        message = message_from_bytes(saved.read_bytes(), policy=policy.default)
        if _send(settings, message):  # type: ignore[arg-type]
            log.info("resent the undelivered report of %s", run["as_of"])
            _mark_sent(results_db, run["run_id"], Path(run["report_path"]))


def _run_dict(summary: RunSummary) -> dict:
    return {
        "run_id": summary.run_id,
        "as_of": summary.as_of,
        "model_version": summary.model_version,
        "status": summary.status,
    }


def _describe(exc: BaseException) -> str:
    """One line for an operator: the exception type and message, never a traceback."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{type(exc.orig).__name__}: {str(exc.orig).strip().splitlines()[0]}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _record_failure(results_db: Engine, summary: RunSummary, started: datetime) -> None:
    row = {
        "run_id": summary.run_id,
        "as_of": summary.as_of,
        "started_at": started,
        "finished_at": datetime.now(timezone.utc),
        "status": "failed",
        "n_patients": 0,
        "n_scores": 0,
        "n_alerts": 0,
        "n_data_issues": 0,
        "model_version": summary.model_version,
        "error": (summary.error or "")[:2000],
    }
    try:
        with_db_retries(lambda: _insert_failed(results_db, row), "record failed run")
    except Exception as exc:  # the results database itself may be what failed
        log.error("run %s: could not record the failure: %s", summary.run_id, _describe(exc))


def _insert_failed(results_db: Engine, row: dict) -> None:
    with results_db.begin() as connection:
        results.record_failed_run(connection=connection, run=row)
