"""Stage 7: the report on disk, and the mail that must not be lost.

The HTML is written atomically to the report folder first. A message to be sent is kept
beside it (`.eml`) until the SMTP server accepted it; a later night resends what an
earlier one could not, and the run row records when a report went out.
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
from datetime import date, datetime, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import Engine

from prcrs_batch import mailer, results
from prcrs_batch.report import Report, safe_token
from prcrs_batch.settings import Settings

logger = logging.getLogger(__name__)


def write_html(report: Report, report_dir: Path, as_of: date, run_id: str) -> Path:
    """Write the HTML copy of a report, images inlined as data: URIs; return its path.

    The file is self-contained (opens in a browser without the mail's attachments)
    and is replaced atomically, so a rerun of the same night overwrites it whole.

    >>> r = Report("s", '<img src="cid:a@x">', "t", {"a@x": b"png"})
    >>> p = write_html(r, Path(tempfile.mkdtemp()), date(2026, 11, 26), "r1")
    >>> p.name, "data:image/png;base64,cG5n" in p.read_text()
    ('prcrs-2026-11-26-r1.html', True)
    """
    html = report.html
    for cid, png in report.images.items():
        data_uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        html = html.replace(f"cid:{cid}", data_uri)
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"prcrs-{as_of.isoformat()}-{safe_token(run_id)}.html"
    fd, tmp = tempfile.mkstemp(dir=report_dir, prefix=".prcrs-", suffix=".html.tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(html)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("report written to %s", path)
    return path


def keep(report_path: Path, message: EmailMessage) -> None:
    """Keep the message beside its report until it is sent, so a later night can resend it."""
    report_path.with_suffix(".eml").write_bytes(bytes(message))


def send(settings: Settings, message: EmailMessage) -> str | None:
    """Send by SMTP with the mailer's retries; None when sent, else why not (logged)."""
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    try:
        mailer.send_message(
            message,
            host=settings.smtp_host or "",
            port=settings.smtp_port,
            sender=settings.alert_from,
            recipients=settings.alert_to,
            user=settings.smtp_user,
            password=password,
            starttls=settings.smtp_starttls,
            ssl=settings.smtp_ssl,
            ca_file=str(settings.smtp_ca_file) if settings.smtp_ca_file else None,
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
        with results_db.begin() as connection:
            results.mark_report(
                connection=connection, run_id=run_id, sent_at=datetime.now(timezone.utc)
            )
        saved.unlink(missing_ok=True)
    return failure


def resend_undelivered(settings: Settings, results_db: Engine, before: date) -> None:
    """Send the kept messages of earlier nights whose report never went out."""
    with results_db.connect() as connection:
        pending = results.undelivered_reports(connection=connection, before=before)
    for run in pending:
        report_path = Path(run["report_path"])
        if not report_path.with_suffix(".eml").exists():  # a backfilled night, not to be sent
            continue
        if send_kept(settings, results_db, run["run_id"], report_path) is None:
            logger.info("resent the undelivered report of %s", run["as_of"])
