"""Stage 7: the report on disk, and the mail that must not be lost.

The HTML is written atomically to the report folder first. A message to be sent is kept
beside it (`.eml`) until the SMTP server accepted it; a later night resends what an
earlier one could not, and the run row records when a report went out. A report folder
that cannot be written costs the HTML copy, never the mail; each failure is said as
what it was.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from prcrs_batch.errors import describe
from prcrs_batch.report import mailer
from prcrs_batch.report.render import Report, build_failure_notice, safe_token, self_contained
from prcrs_batch.results import nights
from prcrs_batch.results.nights import RunInfo
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
) -> Published:
    """Write the HTML copy, keep the message beside it, send it, then resend earlier
    nights' undelivered reports (only once tonight's went out: a dead server is not
    asked again for each of them)."""
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
        if not settings.email_enabled:
            return Published(
                path, report_error, "disabled (no PRCRS_SMTP_HOST): report written only"
            )
        return Published(path, report_error, "not sent (--no-email or backfill)")
    failure = send(settings, message)
    if failure is not None:
        unkept = "" if kept else " (not kept: no later night can resend it)"
        return Published(path, report_error, f"failed: {failure}{unkept}")
    _mark(results_db, run_id, sent_at=datetime.now(timezone.utc))
    if path is not None:
        path.with_suffix(".eml").unlink(missing_ok=True)
    resend_undelivered(settings, results_db, before=as_of)
    return Published(path, report_error, f"sent to {len(settings.recipients)} recipient(s)")


def send_failure_notice(settings: Settings, run: RunInfo) -> str:
    """Tell the on-call team that a night failed (silence must not read as all clear)."""
    notice = build_failure_notice(
        run=run, error=run.error or "unknown error", language=settings.report_language
    )
    message = mailer.build_message(
        notice, sender=settings.alert_from, recipients=settings.recipients
    )
    failure = send(settings, message)
    return f"failed: {failure}" if failure else f"sent to {len(settings.recipients)} recipient(s)"


def _mark(
    results_db: Engine, run_id: str, path: str | None = None, sent_at: datetime | None = None
) -> None:
    """Record the report's path or sending time on the run row; a failure is logged only
    (the report itself is out; at worst a later night resends it)."""
    try:
        with results_db.begin() as connection:
            nights.mark_report(connection=connection, run_id=run_id, path=path, sent_at=sent_at)
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


def send(settings: Settings, message: EmailMessage) -> str | None:
    """Send by SMTP with the mailer's retries; None when sent, else why not (logged)."""
    try:
        mailer.send_message(
            message,
            sender=settings.alert_from,
            recipients=settings.recipients,
            **mailer.server_options(settings),
        )
    except mailer.MailError as exc:
        logger.error("%s not sent: %s", message["Subject"], exc)
        return str(exc)
    return None


def send_kept(settings: Settings, results_db: Engine, run_id: str, report_path: Path) -> str | None:
    """Send a night's kept message; on success record it and drop the `.eml`."""
    saved = report_path.with_suffix(".eml")
    message = message_from_bytes(saved.read_bytes(), policy=policy.default)
    failure = send(settings, message)
    if failure is None:
        _mark(results_db, run_id, sent_at=datetime.now(timezone.utc))
        saved.unlink(missing_ok=True)
    return failure


def resend_undelivered(settings: Settings, results_db: Engine, before: date) -> None:
    """Send the kept messages of earlier nights whose report never went out, oldest first,
    until the server fails again; a problem here is logged, never tonight's failure."""
    try:
        with results_db.connect() as connection:
            pending = nights.undelivered_reports(connection=connection, before=before)
        for run in pending:
            report_path = Path(run["report_path"])
            if not report_path.with_suffix(".eml").exists():  # a backfilled night: not sent
                continue
            if send_kept(settings, results_db, run["run_id"], report_path) is not None:
                return  # the server failed again: the rest wait for the next night
            logger.info("resent the undelivered report of %s", run["as_of"])
    except (SQLAlchemyError, OSError) as exc:
        logger.error("earlier undelivered reports not resent: %s", describe(exc))
