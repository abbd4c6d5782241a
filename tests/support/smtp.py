"""A real SMTP server for tests: aiosmtpd on a free local port, collecting what arrives.

Its fixtures (smtp_sink, smtp_auth_sink, smtp_tls_sink) are registered for every test
module by tests/conftest.py.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

SMTP_USER = "prcrs-batch"
SMTP_PASSWORD = "s3cret-Pa55word"


def free_port() -> int:
    """A local TCP port nothing listens on (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Collector:
    """aiosmtpd handler: keeps each delivered message; can refuse the next N DATA."""

    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    data_calls: int = 0
    refuse_next: int = 0
    refuse_reply: str = "451 4.3.0 Temporary failure, try again later"
    authenticated: list[bool] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_calls += 1
        if self.refuse_next > 0:
            self.refuse_next -= 1
            return self.refuse_reply
        self.authenticated.append(bool(getattr(session, "authenticated", False)))
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


@dataclass
class SMTPSink:
    host: str
    port: int
    handler: Collector
    auth_attempts: list[str] = field(default_factory=list)  # login names tried
    ca_file: str | None = None  # PEM of the CA that signed the server's certificate (TLS sinks)

    @property
    def messages(self) -> list[EmailMessage]:
        return [
            message_from_bytes(raw, policy=policy.default)  # type: ignore[misc]
            for _, _, raw in self.handler.received
        ]


def _serve(sink: SMTPSink, **smtp_parameters: Any) -> Iterator[SMTPSink]:
    controller = Controller(sink.handler, hostname=sink.host, port=sink.port, **smtp_parameters)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture
def smtp_sink() -> Iterator[SMTPSink]:
    """A plain SMTP server (no TLS, no AUTH) on 127.0.0.1:<free port>."""
    yield from _serve(SMTPSink("127.0.0.1", free_port(), Collector()))


def _authenticator(sink: SMTPSink) -> Any:
    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        sink.auth_attempts.append(auth_data.login.decode())
        ok = auth_data.login == SMTP_USER.encode() and auth_data.password == SMTP_PASSWORD.encode()
        return AuthResult(success=ok, handled=False)

    return authenticator


@pytest.fixture
def smtp_auth_sink() -> Iterator[SMTPSink]:
    """An SMTP server that accepts AUTH PLAIN/LOGIN for SMTP_USER / SMTP_PASSWORD.

    AUTH over a plain connection is allowed here only because it is a local test.
    """
    sink = SMTPSink("127.0.0.1", free_port(), Collector())
    yield from _serve(sink, authenticator=_authenticator(sink), auth_require_tls=False)


@pytest.fixture
def smtp_tls_sink(tmp_path: Any) -> Iterator[SMTPSink]:
    """An SMTP server that requires STARTTLS before anything else and AUTH only over TLS.

    Its certificate (for 127.0.0.1) is signed by a throw-away CA whose PEM is `ca_file`.
    """
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    ca_file = tmp_path / "smtp-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    sink = SMTPSink("127.0.0.1", free_port(), Collector(), ca_file=str(ca_file))
    yield from _serve(
        sink,
        tls_context=server_context,
        require_starttls=True,
        authenticator=_authenticator(sink),
        auth_require_tls=True,
    )
