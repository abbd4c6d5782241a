"""Sending the report to a real SMTP server (aiosmtpd, started by the test). No mocks."""
# The SMTP fixtures are imported from tests/smtp_server.py, so test arguments share their names.
# ruff: noqa: F811

from __future__ import annotations

import logging
import re
import time
from typing import Any

import pandas as pd
import pytest

from prcrs_batch.report.mailer import MailError, build_message, send_report
from prcrs_batch.report.render import Report, build_failure_notice
from tests.support.report_data import (
    make_data_issues,
    make_history,
    make_patients,
    make_run,
    make_scores,
    render_report,
)
from tests.support.smtp import (
    SMTP_PASSWORD,
    SMTP_USER,
    free_port,
)

SENDER = "prcrs-batch@hospital.example"
RECIPIENTS = ["haem-oncall@hospital.example", "cart-team@hospital.example"]
FAST = {"backoff_seconds": 0.01, "timeout": 5}


@pytest.fixture(scope="module")
def alert_report() -> Report:
    ids = ["SYN-0001", "SYN-0002", "SYN-0003"]
    spec: dict[str, dict[str, Any]] = {
        "SYN-0001": {"all": (0.45, 0.55, 0.62)},
        "SYN-0002": {"all": "insufficient", "no_cytokines": (0.31, 0.2, 0.2)},
        "SYN-0003": {"all": (0.05, 0.06, 0.07)},
    }
    history = pd.concat([make_history("SYN-0001", "all"), make_history("SYN-0002", "no_cytokines")])
    return render_report(
        run=make_run(len(ids)),
        patients=make_patients(ids),
        scores=make_scores(spec),
        history=history,
        data_issues=make_data_issues(),
    )


def send(report: Report, sink, **kwargs) -> None:
    options = {"starttls": False, **FAST, **kwargs}
    send_report(
        report, host=sink.host, port=sink.port, sender=SENDER, recipients=RECIPIENTS, **options
    )


def test_email_arrives_with_text_html_and_inline_images(alert_report, smtp_sink):
    assert len(alert_report.images) == 2
    send(alert_report, smtp_sink)

    [(mail_from, rcpt_tos, _)] = smtp_sink.handler.received
    assert mail_from == SENDER and rcpt_tos == RECIPIENTS
    [message] = smtp_sink.messages
    assert message["Subject"] == "PrCRS 2026-11-26 - 2 alerts, 2 new"
    assert message.get_content_type() == "multipart/mixed"
    alternative, attached = message.get_payload()
    assert alternative.get_content_type() == "multipart/alternative"
    assert attached.get_content_disposition() == "attachment"
    assert attached.get_filename() == "prcrs-2026-11-26.html" == alert_report.attachment_name
    complete = attached.get_content()
    assert "cid:" not in complete and complete.count("data:image/png;base64,") == 2
    assert "prcrs-2026-11-26.html" in alternative.get_body(("html",)).get_content()
    text_part, related = alternative.get_payload()
    assert text_part.get_content_type() == "text/plain"
    assert "NEW: SYN-0001" in text_part.get_content()
    assert related.get_content_type() == "multipart/related"
    html_part, *images = related.get_payload()
    assert html_part.get_content_type() == "text/html"
    html = html_part.get_content()
    assert "SYN-0001" in html and "SYN-0002" in html

    referenced = set(re.findall(r'src="cid:([^"]+)"', html))
    assert referenced == set(alert_report.images)
    for image in images:
        assert image.get_content_type() == "image/png"
        assert image.get_content_disposition() == "inline"
        cid = image["Content-ID"].strip("<>")
        assert cid in referenced
        assert image.get_content() == alert_report.images[cid]


def test_message_structure_without_images():
    report = Report("PrCRS 2026-11-26 - all clear", "<p>all clear</p>", "all clear", {})
    message = build_message(report, sender=SENDER, recipients=RECIPIENTS)
    assert [p.get_content_type() for p in message.walk()] == [
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]
    assert message["To"] == ", ".join(RECIPIENTS)
    assert message["Message-ID"].endswith("@hospital.example>")


def test_failure_notice_is_sent(smtp_sink):
    notice = build_failure_notice(run=make_run(), error="db down")
    send(notice, smtp_sink)
    [message] = smtp_sink.messages
    assert message["Subject"] == "PrCRS 2026-11-26 - RUN FAILED, no risk scores"


def test_server_down_raises_mail_error_after_the_retries(alert_report, caplog):
    port = free_port()  # nothing listens there
    caplog.set_level(logging.WARNING, logger="prcrs_batch.report.mailer")
    started = time.monotonic()
    with pytest.raises(MailError, match=rf"127\.0\.0\.1:{port} after 3 attempt"):
        send_report(
            alert_report,
            host="127.0.0.1",
            port=port,
            sender=SENDER,
            recipients=RECIPIENTS,
            user="someone",
            password=SMTP_PASSWORD,
            starttls=False,
            attempts=3,
            **FAST,
        )
    assert time.monotonic() - started < 5
    attempts = [r for r in caplog.records if "attempt" in r.getMessage()]
    assert len(attempts) == 3
    assert all(SMTP_PASSWORD not in r.getMessage() for r in caplog.records)


def test_temporary_refusal_is_retried(alert_report, smtp_sink):
    smtp_sink.handler.refuse_next = 2  # 451 twice, then accept
    send(alert_report, smtp_sink, attempts=3)
    assert smtp_sink.handler.data_calls == 3
    assert len(smtp_sink.messages) == 1


def test_permanent_refusal_is_not_retried(alert_report, smtp_sink):
    smtp_sink.handler.refuse_next = 5
    smtp_sink.handler.refuse_reply = "554 5.6.0 Message rejected"
    with pytest.raises(MailError, match="after 1 attempt"):
        send(alert_report, smtp_sink, attempts=3)
    assert smtp_sink.handler.data_calls == 1
    assert smtp_sink.messages == []


def test_starttls_required_but_not_offered_fails_without_sending(alert_report, smtp_sink):
    with pytest.raises(MailError, match="SMTPNotSupportedError"):
        send(alert_report, smtp_sink, starttls=True)
    assert smtp_sink.handler.data_calls == 0


def test_starttls_with_the_internal_ca_delivers_and_logs_in(alert_report, smtp_tls_sink):
    send(
        alert_report,
        smtp_tls_sink,
        starttls=True,
        ca_file=smtp_tls_sink.ca_file,
        user=SMTP_USER,
        password=SMTP_PASSWORD,
    )
    assert smtp_tls_sink.auth_attempts == [SMTP_USER]
    assert len(smtp_tls_sink.messages) == 1


def test_untrusted_certificate_fails_at_once_without_sending(alert_report, smtp_tls_sink):
    with pytest.raises(MailError, match="CERTIFICATE_VERIFY_FAILED") as error:
        send(alert_report, smtp_tls_sink, starttls=True, user=SMTP_USER, password=SMTP_PASSWORD)
    assert "after 1 attempt" in str(error.value)  # permanent: not retried
    assert smtp_tls_sink.auth_attempts == [] and smtp_tls_sink.handler.data_calls == 0


def test_plain_connection_to_a_starttls_server_is_refused(alert_report, smtp_tls_sink):
    with pytest.raises(MailError):
        send(alert_report, smtp_tls_sink, starttls=False)
    assert smtp_tls_sink.handler.data_calls == 0


def test_login(alert_report, smtp_auth_sink):
    send(alert_report, smtp_auth_sink, user=SMTP_USER, password=SMTP_PASSWORD)
    assert smtp_auth_sink.auth_attempts == [SMTP_USER]
    assert smtp_auth_sink.handler.authenticated == [True]
    assert len(smtp_auth_sink.messages) == 1


def test_bad_password_fails_once_and_is_never_shown(alert_report, smtp_auth_sink, caplog):
    wrong = "wr0ng-" + SMTP_PASSWORD
    with pytest.raises(MailError, match="after 1 attempt.*SMTPAuthenticationError") as raised:
        send(alert_report, smtp_auth_sink, user=SMTP_USER, password=wrong, attempts=3)
    # no retry of a bad login: one smtplib login() tries PLAIN, then LOGIN, then gives up
    assert smtp_auth_sink.auth_attempts == [SMTP_USER, SMTP_USER]
    assert smtp_auth_sink.messages == []
    chain = [raised.value, raised.value.__cause__, raised.value.__context__]
    assert all(wrong not in str(e) for e in chain if e is not None)
    assert all(wrong not in r.getMessage() for r in caplog.records)


def test_no_recipients_is_an_error(alert_report):
    with pytest.raises(MailError, match="PRCRS_ALERT_TO"):
        send_report(alert_report, host="127.0.0.1", port=25, sender=SENDER, recipients=[])


def test_logs_carry_no_patient_ids(alert_report, smtp_sink, caplog):
    caplog.set_level(logging.DEBUG, logger="prcrs_batch")
    render_report(
        run=make_run(1),
        patients=make_patients(["SYN-SECRET-ID"]),
        scores=make_scores({"SYN-SECRET-ID": {"all": (0.9, 0.9, 0.9)}, "SYN-ORPHAN": {}}),
        history=make_history("SYN-SECRET-ID", "all"),
        data_issues=make_data_issues(),
    )
    send(alert_report, smtp_sink)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("prcrs_batch")]
    assert messages  # it does log
    assert not [m for m in messages if "SYN-" in m]
