"""Stage 8: the only module that talks SMTP. Sends a rendered `render.Report`.

The message is the usual HTML mail with a text fallback and inline images, and the
complete report attached when the mail's HTML is a shortened one:

    multipart/mixed
      multipart/alternative
        text/plain              the report's text
        multipart/related
          text/html             the mail's HTML, images referenced as cid:<id>
          image/png (inline)    one per content-id the HTML references
      text/html (attachment)    the complete report, images inlined (report.attachment_name)

(A report without an attachment, such as a failure notice, is the multipart/alternative
alone.)

Each attempt has an overall deadline (connection and conversation together, not only per
socket operation: a server trickling one byte every few seconds never trips a socket
timeout). Transient failures (connection refused or dropped, timeouts, a missed deadline,
4xx replies) are retried with exponential backoff; permanent ones (bad credentials, every
recipient refused, STARTTLS not offered) fail at once. Either way the caller gets one
`MailError`, whose message never contains the password. Logs carry counts, never patient data.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl as ssl_lib
import threading
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any

from prcrs_batch.errors import SafeMessage, describe
from prcrs_batch.report.render import Report, self_contained
from prcrs_batch.settings import Settings

logger = logging.getLogger(__name__)

# Retrying these cannot help, and retrying a bad login can lock the account. Any other
# reply in the 5xx range is permanent too; everything else (4xx, network) is retried.
PERMANENT_ERRORS: tuple[type[Exception], ...] = (
    smtplib.SMTPAuthenticationError,
    smtplib.SMTPNotSupportedError,
    smtplib.SMTPRecipientsRefused,
    smtplib.SMTPSenderRefused,
    ssl_lib.SSLCertVerificationError,  # an untrusted certificate stays untrusted on retry
)


# One delivery: up to ATTEMPTS attempts, BACKOFF_SECONDS * 2 ** (n - 1) apart, each ending
# within DEADLINE_SECONDS from connecting to the server's last reply: at most about 6 min.
ATTEMPTS = 3
BACKOFF_SECONDS = 2.0
DEADLINE_SECONDS = 120.0


class MailError(SafeMessage, RuntimeError):
    """The report could not be sent; the message names the server, never the password.
    (SMTP replies are quoted whole: they carry no patient data.)"""


class DeadlineExceeded(TimeoutError):
    """A delivery attempt outlived its deadline (a stalled or trickling server)."""


def build_message(report: Report, *, sender: str, recipients: list[str]) -> EmailMessage:
    """The MIME message for a report: text and HTML alternatives, the PNGs the HTML shows
    inline by CID, and the complete report attached when there is one.

    >>> r = Report("PrCRS 2026-11-26 - all clear", "<p>ok</p>", "ok", {})
    >>> m = build_message(r, sender="a@example.org", recipients=["b@example.org"])
    >>> m.get_content_type(), m["Subject"]
    ('multipart/alternative', 'PrCRS 2026-11-26 - all clear')
    """
    message = EmailMessage()
    message["Subject"] = report.subject
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=True)
    domain = parseaddr(sender)[1].rpartition("@")[2] or None  # "Name <a@x.org>" too
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(report.text)
    message.add_alternative(report.html, subtype="html")
    html_part = message.get_body(preferencelist=("html",))
    if html_part is None:  # cannot happen: added just above
        raise MailError("the HTML part is missing from the message")
    shown = {cid: png for cid, png in report.images.items() if f"cid:{cid}" in report.html}
    for number, (cid, png) in enumerate(shown.items(), start=1):
        html_part.add_related(
            png,
            maintype="image",
            subtype="png",
            cid=f"<{cid}>",
            disposition="inline",
            filename=f"trend-{number}.png",
        )
    if report.full_html is not None:
        message.add_attachment(
            self_contained(report.full_html, report.images),
            subtype="html",
            filename=report.attachment_name or "prcrs-report.html",
        )
    return message


def send_report(report: Report, *, sender: str, recipients: list[str], **options: Any) -> None:
    """Build the report's message and send it; `options` are send_message's.

    Example (nothing listens on port 9, so this fails fast):

    >>> r = Report("s", "<p>h</p>", "t", {})
    >>> send_report(r, host="127.0.0.1", port=9, sender="a@example.org",
    ...             recipients=["b@example.org"], starttls=False,
    ...             attempts=1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    prcrs_batch.report.mailer.MailError: could not send the report via 127.0.0.1:9 ...
    """
    message = build_message(report, sender=sender, recipients=recipients)
    send_message(message, sender=sender, recipients=recipients, **options)


def send_message(
    message: EmailMessage,
    *,
    host: str,
    port: int,
    sender: str,
    recipients: list[str],
    user: str | None = None,
    password: str | None = None,
    starttls: bool = True,
    ssl: bool = False,
    ca_file: str | None = None,
    attempts: int | None = None,
    backoff_seconds: float | None = None,
    timeout: float = 30,
    deadline: float | None = None,
) -> None:
    """Send a built message (a report, or one saved by an earlier night) by SMTP, retrying
    transient failures with exponential backoff.

    Args:
        message: what `build_message` returned, or a saved .eml read back.
        host, port: the SMTP server.
        sender, recipients: envelope addresses.
        user, password: log in when `user` is set.
        starttls: upgrade a plain connection with STARTTLS (required when True: a
            server that does not offer it is a permanent failure). Ignored with `ssl`.
        ssl: connect with implicit TLS (SMTP_SSL, usually port 465).
        ca_file: PEM bundle of the CA(s) that signed the server's certificate (a hospital's
            internal CA); None trusts the system's CAs. The certificate is always verified.
        attempts: tries in all (None: ATTEMPTS); waits `backoff_seconds * 2 ** (try - 1)`
            between them (None: BACKOFF_SECONDS).
        timeout: seconds for the connection and each SMTP command.
        deadline: seconds for a whole attempt (None: DEADLINE_SECONDS); a missed
            deadline is retried like a timeout.

    Raises:
        MailError: after the last attempt, or at once on a permanent failure.
    """
    if not recipients:
        raise MailError("no recipients: set PRCRS_ALERT_TO")
    attempts = ATTEMPTS if attempts is None else attempts
    backoff_seconds = BACKOFF_SECONDS if backoff_seconds is None else backoff_seconds
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    last: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            _deliver(
                message,
                host=host,
                port=port,
                sender=sender,
                recipients=recipients,
                user=user,
                password=password,
                starttls=starttls,
                use_ssl=ssl,
                ca_file=ca_file,
                timeout=timeout,
                deadline=DEADLINE_SECONDS if deadline is None else deadline,
            )
        except (smtplib.SMTPException, OSError) as exc:
            if not _is_permanent(exc):
                last = exc
                logger.warning(
                    "sending failed on attempt %d/%d: %s",
                    attempt,
                    attempts,
                    describe(exc, secrets=[password], values=True),
                )
                if attempt < attempts:
                    time.sleep(backoff_seconds * 2 ** (attempt - 1))
                continue
            logger.error(
                "sending failed permanently on attempt %d/%d: %s",
                attempt,
                attempts,
                describe(exc, secrets=[password], values=True),
            )
            raise _mail_error(exc, host, port, attempt, password) from _cause(exc, password)
        else:
            logger.info("report sent to %d recipient(s) on attempt %d", len(recipients), attempt)
            return
    assert last is not None
    raise _mail_error(last, host, port, attempts, password) from _cause(last, password)


def server_options(settings: Settings) -> dict[str, Any]:
    """The SMTP server's PRCRS_SMTP_* settings as `send_message` and `probe` take them."""
    return {
        "host": settings.smtp_host or "",
        "port": settings.smtp_port,
        "user": settings.smtp_user,
        "password": settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        "starttls": settings.smtp_starttls,
        "ssl": settings.smtp_ssl,
        "ca_file": str(settings.smtp_ca_file) if settings.smtp_ca_file else None,
    }


def probe(
    *,
    host: str,
    port: int,
    user: str | None = None,
    password: str | None = None,
    starttls: bool = True,
    ssl: bool = False,
    ca_file: str | None = None,
    timeout: float = 10,
    deadline: float | None = None,
) -> list[str]:
    """Go through a delivery's conversation up to the login, and send nothing: what
    `prcrs-batch check` asks of the SMTP server. Returns the steps that succeeded.

    Raises:
        ProbeError: the step that failed, after the ones that did (password never shown).
    """
    steps: list[str] = []
    try:
        _deliver(
            None,
            steps=steps,
            host=host,
            port=port,
            sender="",
            recipients=[],
            user=user,
            password=password,
            starttls=starttls,
            use_ssl=ssl,
            ca_file=ca_file,
            timeout=timeout,
            deadline=DEADLINE_SECONDS if deadline is None else deadline,
        )
    except (smtplib.SMTPException, OSError) as exc:
        after = f" after {', '.join(steps)}" if steps else ""
        raise ProbeError(
            f"{host}:{port}{after}: {describe(exc, secrets=[password], values=True)}"
        ) from None
    return steps


class ProbeError(SafeMessage, RuntimeError):
    """The SMTP server did not get through the conversation; the message says where."""


def _deliver(
    message: EmailMessage | None,
    *,
    deadline: float,
    steps: list[str] | None = None,
    **conversation: Any,
) -> None:
    """One attempt, in a worker thread: past the deadline its socket is shut down (which
    ends the thread) and DeadlineExceeded raised here, whatever the server does. `steps`
    collects the conversation's steps as they succeed; no message: stop after the login."""
    state: dict[str, Any] = {"steps": [] if steps is None else steps}
    finished = threading.Event()

    def attempt() -> None:
        try:
            _converse(message, state=state, **conversation)
        except BaseException as exc:  # handed to the caller's thread below
            state["error"] = exc
        finally:
            finished.set()

    threading.Thread(target=attempt, name="prcrs-smtp", daemon=True).start()
    if not finished.wait(deadline):
        for sock in (getattr(state.get("smtp"), "sock", None), state.get("sock")):
            try:
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        raise DeadlineExceeded(f"no complete answer within the {deadline:g} s deadline")
    if "error" in state:
        raise state["error"]


def _converse(
    message: EmailMessage | None,
    *,
    state: dict[str, Any],
    host: str,
    port: int,
    sender: str,
    recipients: list[str],
    user: str | None,
    password: str | None,
    starttls: bool,
    use_ssl: bool,
    ca_file: str | None,
    timeout: float,
) -> None:
    context = ssl_lib.create_default_context(cafile=ca_file)
    base: type[smtplib.SMTP] = smtplib.SMTP_SSL if use_ssl else smtplib.SMTP

    class Tracked(base):  # type: ignore[valid-type,misc]
        """Publishes its socket as soon as it is connected, for the deadline to shut."""

        def _get_socket(self, *args: Any) -> socket.socket:
            state["sock"] = super()._get_socket(*args)
            return state["sock"]

    options: dict[str, Any] = {"context": context} if use_ssl else {}
    steps: list[str] = state["steps"]
    smtp = Tracked(host, port, timeout=timeout, **options)
    state["smtp"] = smtp
    with smtp:
        if use_ssl:
            steps.append("TLS")
        smtp.ehlo()
        steps.append("EHLO")
        if starttls and not use_ssl:
            smtp.starttls(context=context)  # raises SMTPNotSupportedError if not offered
            smtp.ehlo()
            steps.append("STARTTLS")
        if user:
            smtp.login(user, password or "")
            steps.append(f"login as {user}")
        if message is None:  # a probe: nothing is sent
            return
        refused = smtp.send_message(message, from_addr=sender, to_addrs=recipients)
    if refused:
        logger.warning("%d of %d recipient(s) refused the report", len(refused), len(recipients))


def _is_permanent(exc: BaseException) -> bool:
    """Bad credentials, refused addresses, no STARTTLS, or any 5xx reply."""
    if isinstance(exc, PERMANENT_ERRORS):
        return True
    code = getattr(exc, "smtp_code", None)
    return isinstance(exc, smtplib.SMTPResponseException) and isinstance(code, int) and code >= 500


def _mail_error(
    exc: BaseException, host: str, port: int, attempt: int, password: str | None
) -> MailError:
    return MailError(
        f"could not send the report via {host}:{port} after {attempt} attempt(s): "
        f"{describe(exc, secrets=[password], values=True)}"
    )


def _cause(exc: BaseException, password: str | None) -> BaseException | None:
    """Chain the original exception unless its text would reveal the password."""
    if password and password in str(exc):
        return None
    return exc
