"""A real aiosmtpd server on 127.0.0.1 for tests: records what it receives; can refuse, defer, drop, need TLS/AUTH."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal, Self

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from newsletter.config import SmtpSettings

Security = Literal["none", "starttls", "ssl"]
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Received:
    """One accepted message: the envelope and the exact bytes of DATA (dot-unstuffed)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage
    login: str | None  # the AUTH username of the session, None when it did not log in
    tls: bool  # whether the message travelled over TLS (STARTTLS or implicit)


def free_port() -> int:
    """A port nothing listens on (bound then released), also handy as a "connection refused" target."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def server_tls_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 and localhost, signed by `ca`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST, "localhost").configure_cert(context)
    return context


class SmtpSink:
    """Start with `start()` (or `with`); read `messages`, `connections`; point a mailer at `settings()`."""

    def __init__(
        self,
        *,
        security: Security = "none",
        ca: trustme.CA | None = None,
        ca_file: Path | None = None,
        username: str | None = None,
        password: str | None = None,
        reject: tuple[str, ...] = (),
        defer_data: int = 0,
        drop_data: int = 0,
    ) -> None:
        """`reject`: recipients answered 550; `defer_data` / `drop_data`: the first N DATA commands
        are answered 451 / have the connection closed on them. TLS needs `ca` (and `ca_file` for clients)."""
        if security != "none" and ca is None:
            raise ValueError("a TLS sink needs a trustme.CA")
        self.security = security
        self.host = HOST
        self.port = 0
        self.username = username
        self.password = password
        self.ca_file = ca_file
        self.messages: list[Received] = []
        self.peers: list[tuple[str, int]] = []  # one entry per connection that said EHLO/HELO
        self._ca = ca
        self._reject = {address.lower() for address in reject}
        self._defer_left = defer_data
        self._drop_left = drop_data
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def connections(self) -> int:
        """How many client connections greeted the server (the controller's own probe is not counted)."""
        return len(self.peers)

    def settings(self, **overrides: Any) -> SmtpSettings:
        """SmtpSettings that reach this sink; any field can be overridden (e.g. retries=0).

        For a config.yaml mapping: `settings().model_dump(mode="json", exclude_none=True)`."""
        if self._controller is None:
            raise RuntimeError("start the sink before asking for its settings")
        values: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "security": self.security,
            "username": self.username,
            "ca_file": self.ca_file,
            "timeout": 5.0,
        }
        values.update(overrides)
        return SmtpSettings(**values)

    def start(self) -> Self:
        if self._ca is not None and self.ca_file is not None:
            self._ca.cert_pem.write_to_path(str(self.ca_file))
        self.port = free_port()
        self._controller = Controller(self, hostname=self.host, port=self.port, **self._server_options())
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _server_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"server_hostname": "sink.test", "ready_timeout": 5.0}
        if self.security != "none":
            assert self._ca is not None
            context = server_tls_context(self._ca)
            if self.security == "ssl":
                options["ssl_context"] = context
                # aiosmtpd only counts TLS it negotiated itself (STARTTLS) as TLS.
                options["auth_require_tls"] = False
            else:
                options["tls_context"] = context
                options["require_starttls"] = True
        if self.username is not None:
            # Required in handle_MAIL: aiosmtpd's auth_required warns when combined with implicit TLS.
            options["authenticator"] = self._authenticate
        return options

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        expected = LoginPassword((self.username or "").encode(), (self.password or "").encode())
        return AuthResult(success=data == expected, handled=False, auth_data=data)

    # aiosmtpd handler hooks, called in the server's thread

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self._greeted(session.peer)
        return responses

    async def handle_HELO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str) -> str:
        session.host_name = hostname
        self._greeted(session.peer)
        return f"250 {server.hostname}"

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.username is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.lower() in self._reject:
            return f"550 5.1.1 <{address}>: recipient address rejected: user unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            if self._drop_left > 0:
                self._drop_left -= 1
                assert server.transport is not None
                server.transport.close()
                return "421 4.4.2 connection dropped by the test sink"
            if self._defer_left > 0:
                self._defer_left -= 1
                return "451 4.3.0 temporary failure, try again later"
            raw = bytes(envelope.original_content or b"")
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
            tls = self.security == "ssl" or session.ssl is not None
            self.messages.append(Received(str(envelope.mail_from), tuple(envelope.rcpt_tos), raw, parsed, login, tls))
            return f"250 2.0.0 OK: queued as {len(self.messages)}"

    def _greeted(self, peer: Any) -> None:
        with self._lock:
            if peer not in self.peers:
                self.peers.append(peer)
