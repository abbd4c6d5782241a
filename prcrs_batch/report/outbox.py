"""Stage 7: the report on disk, and the mail that must not be lost, nor arrive stale.

The complete HTML report is written atomically to the report folder first. A message to be
sent is kept beside it (`.eml`) until the SMTP server accepted it; a later night resends
what an earlier one could not, its subject marked "[DELAYED <when it was made>]", but only
while the report is younger than PRCRS_MAX_RESEND_HOURS (counted from when it was made or
from its data cut-off, whichever is earlier): an older one is recorded as `expired` and
never mailed, so an outage or a backfill never delivers an old alert list as tonight's.
The run row's `report_status` says what became of each report (`REPORT_STATUSES`). A report
folder that cannot be written costs the HTML copy, never the mail; each failure is said as
what it was.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from prcrs_batch.errors import describe
from prcrs_batch.report import mailer
from prcrs_batch.report.render import (
    Report,
    build_failure_notice,
    gettext_for,
    safe_token,
    self_contained,
)
from prcrs_batch.results import nights
from prcrs_batch.results.nights import RunInfo
from prcrs_batch.results.tables import (
    REPORT_EXPIRED,
    REPORT_FAILED,
    REPORT_PENDING,
    REPORT_SENT,
    REPORT_SENT_DELAYED,
    REPORT_WRITTEN_ONLY,
)
from prcrs_batch.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Published:
    """What became of a night's report."""

    report_path: Path | None  # the HTML copy; None when it could not be written
    report_error: str | None  # why not
    email: str  # what happened to the mail, in words ("sent to 2 recipient(s)", "failed: ...")

    @property
    def ok(self) -> bool:
        return self.report_error is None and not self.email.startswith("failed")


def publish(
    settings: Settings,
    results_db: Engine,
    report: Report,
    *,
    as_of: date,
    run_id: str,
    send_email: bool,
    now: datetime | None = None,
) -> Published:
    """Write the HTML copy, keep the message beside it, send it, then see to earlier nights'
    undelivered reports: those past PRCRS_MAX_RESEND_HOURS are expired, the others resent
    (only once tonight's went out: a dead server is not asked again for each of them).

    `now` (aware; default: the current time) is the clock the reports' ages are read on.
    """
    now = now or datetime.now(timezone.utc)
    sending = send_email and settings.email_enabled
    message = (
        mailer.build_message(report, sender=settings.alert_from, recipients=settings.recipients)
        if sending
        else None
    )
    path: Path | None = None
    report_error = None
    kept = False
    try:
        path = write_html(report, settings.report_dir, as_of, run_id)
    except OSError as exc:
        report_error = f"report not written to {settings.report_dir}: {describe(exc)}"
        logger.error("run %s: %s", run_id, report_error)
    if path is not None:
        if message is not None:
            try:
                keep(path, message)
                kept = True
            except OSError as exc:
                logger.error("run %s: message not kept for resending: %s", run_id, describe(exc))
        _mark(results_db, run_id, path=str(path))
    if message is None:
        _mark(results_db, run_id, status=REPORT_WRITTEN_ONLY)
        if not settings.email_enabled:
            return Published(
                path, report_error, "disabled (no PRCRS_SMTP_HOST): report written only"
            )
        return Published(path, report_error, "not sent (--no-email, or backfill without --email)")
    failure = send(settings, message)
    if failure is not None:
        _mark(results_db, run_id, status=REPORT_PENDING if kept else REPORT_FAILED)
        resend_undelivered(settings, results_db, before=as_of, now=now, resend=False)
        unkept = "" if kept else " (not kept: no later night can resend it)"
        return Published(path, report_error, f"failed: {failure}{unkept}")
    _mark(results_db, run_id, sent_at=datetime.now(timezone.utc), status=REPORT_SENT)
    if path is not None:
        path.with_suffix(".eml").unlink(missing_ok=True)
    resend_undelivered(settings, results_db, before=as_of, now=now)
    return Published(path, report_error, f"sent to {len(settings.recipients)} recipient(s)")


def send_failure_notice(settings: Settings, run: RunInfo, *, setup: bool = False) -> str:
    """Tell the team that a night failed (silence must not read as all clear).

    A set-up failure (`setup`: the night never read the warehouse - a database, the models,
    the run lock) goes to the operators (PRCRS_OPS_TO, the night's list only when that is
    unset): an IT mistake is not the on-call clinicians' to fix.
    """
    recipients = settings.ops_recipients if setup else settings.recipients
    notice = build_failure_notice(
        run=run, error=run.error or "unknown error", language=settings.report_language
    )
    message = mailer.build_message(notice, sender=settings.alert_from, recipients=recipients)
    failure = send(settings, message, recipients)
    return f"failed: {failure}" if failure else f"sent to {len(recipients)} recipient(s)"


def _mark(
    results_db: Engine,
    run_id: str,
    path: str | None = None,
    sent_at: datetime | None = None,
    status: str | None = None,
) -> None:
    """Record the report's path, sending time or status on the run row; a failure is logged
    only (the report itself is out; at worst a later night resends it)."""
    try:
        with results_db.begin() as connection:
            nights.mark_report(
                connection=connection, run_id=run_id, path=path, sent_at=sent_at, status=status
            )
    except SQLAlchemyError as exc:
        logger.error("run %s: report not recorded on the run row: %s", run_id, describe(exc))


def write_html(report: Report, report_dir: Path, as_of: date, run_id: str) -> Path:
    """Write the complete report (every alert in full, as the mail attaches it), images
    inlined as data: URIs; return its path.

    The file is self-contained (opens in a browser without the mail's attachments)
    and is replaced atomically, so a rerun of the same night overwrites it whole.

    >>> r = Report("s", '<img src="cid:a@x">', "t", {"a@x": b"png"})
    >>> p = write_html(r, Path(tempfile.mkdtemp()), date(2026, 11, 26), "r1")
    >>> p.name, "data:image/png;base64,cG5n" in p.read_text()
    ('prcrs-2026-11-26-r1.html', True)
    """
    html = self_contained(report.complete_html, report.images)
    report_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = report_dir / f"prcrs-{as_of.isoformat()}-{safe_token(run_id)}.html"
    _write_private(path, html.encode("utf-8"))
    logger.info("report written to %s", path)
    return path


def keep(report_path: Path, message: EmailMessage) -> None:
    """Keep the message beside its report until it is sent, so a later night can resend it."""
    _write_private(report_path.with_suffix(".eml"), bytes(message))


def _write_private(path: Path, data: bytes) -> None:
    """Replace `path` atomically by a file only the job's user can read (0600: patient data)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".prcrs-", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def send(
    settings: Settings, message: EmailMessage, recipients: list[str] | None = None
) -> str | None:
    """Send by SMTP with the mailer's retries, to `recipients` (None: the night's list);
    None when sent, else why not (logged)."""
    try:
        mailer.send_message(
            message,
            sender=settings.alert_from,
            recipients=settings.recipients if recipients is None else recipients,
            **mailer.server_options(settings),
        )
    except mailer.MailError as exc:
        logger.error("%s not sent: %s", message["Subject"], exc)
        return str(exc)
    return None


def send_kept(
    settings: Settings,
    results_db: Engine,
    run_id: str,
    report_path: Path,
    delayed_since: datetime | None = None,
) -> str | None:
    """Send a night's kept message; on success record it and drop the `.eml`.

    With `delayed_since` (when the report was made) the subject is marked
    "[DELAYED <then>]" in the report's language and the Date is the sending time, so the
    mail sorts as new but never reads as tonight's.
    """
    saved = report_path.with_suffix(".eml")
    message = message_from_bytes(saved.read_bytes(), policy=policy.default)
    if delayed_since is not None:
        _ = gettext_for(None, settings.report_language)
        made = delayed_since.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M")
        subject = _("[DELAYED %(when)s]") % {"when": made} + " " + str(message["Subject"])
        del message["Subject"], message["Date"]
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=True)
    failure = send(settings, message)
    if failure is None:
        status = REPORT_SENT if delayed_since is None else REPORT_SENT_DELAYED
        _mark(results_db, run_id, sent_at=datetime.now(timezone.utc), status=status)
        saved.unlink(missing_ok=True)
    return failure


def report_age(run: Mapping[str, Any], now: datetime, zone: ZoneInfo) -> timedelta:
    """How old an undelivered report is: from when it was made (its run's end) or from its
    data cut-off (the end of its night in PRCRS_TIMEZONE), whichever is earlier, so that
    a night backfilled today is as old as its data.

    >>> run = {"as_of": date(2026, 11, 20), "finished_at": datetime(2026, 11, 26, 2, 0),
    ...        "started_at": None}
    >>> report_age(run, datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc), ZoneInfo("UTC"))
    datetime.timedelta(days=5, seconds=43200)
    """
    return now - min(made_at(run), datetime.combine(run["as_of"] + timedelta(days=1), time(), zone))


def made_at(run: Mapping[str, Any]) -> datetime:
    """When a run's report was made (its end, else its start), aware (SQLite keeps UTC
    without its zone)."""
    made: datetime = run["finished_at"] or run["started_at"]
    return made if made.tzinfo else made.replace(tzinfo=timezone.utc)


def resend_undelivered(
    settings: Settings, results_db: Engine, *, before: date, now: datetime, resend: bool = True
) -> None:
    """See to the kept messages of earlier nights whose report never went out, oldest first.

    One older than PRCRS_MAX_RESEND_HOURS (`report_age`) is never mailed: its `.eml` is
    dropped and its run row says `expired`. A younger one is resent as delayed, until the
    server fails again (then the rest wait for the next night; with `resend` False none is
    tried). A problem here is logged, never tonight's failure.
    """
    limit = timedelta(hours=settings.max_resend_hours)
    try:
        with results_db.connect() as connection:
            pending = nights.undelivered_reports(connection=connection, before=before)
        for run in pending:
            saved = Path(run["report_path"]).with_suffix(".eml")
            age = report_age(run, now, settings.zone)
            if age > limit:
                saved.unlink(missing_ok=True)
                _mark(results_db, run["run_id"], status=REPORT_EXPIRED)
                logger.warning(
                    "run %s: the report of %s was not sent and never will be: undelivered "
                    "for %.0f h, over PRCRS_MAX_RESEND_HOURS (%d h)",
                    run["run_id"],
                    run["as_of"],
                    age.total_seconds() / 3600,
                    settings.max_resend_hours,
                )
                continue
            if not saved.exists():
                _mark(results_db, run["run_id"], status=REPORT_FAILED)
                logger.error("run %s: no kept message to resend", run["run_id"])
                continue
            if not resend:
                continue
            made = made_at(run)
            if send_kept(settings, results_db, run["run_id"], Path(run["report_path"]), made):
                resend = False  # the server failed again: the rest wait for the next night
                continue
            logger.info("resent the undelivered report of %s as delayed", run["as_of"])
    except (SQLAlchemyError, OSError) as exc:
        logger.error("earlier undelivered reports not seen to: %s", describe(exc))
