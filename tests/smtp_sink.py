"""Real SMTP servers on 127.0.0.1 for tests, each on a port it bound itself (port 0, read back: no race).

SmtpSink: aiosmtpd; records what it receives; can refuse, defer, drop, stall, need TLS/AUTH.
StallingServer: a raw socket server that stops answering at a chosen point, and counts connections.
refusing_port(): a port held bound but not listening, so connecting to it is refused.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
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


TOO_MANY_SESSIONS = "421 4.7.0 Too many connections from your host, try again later"
STALL_SECONDS = 60.0  # longer than any client timeout in the tests; a stopped server cancels the wait


def bound_socket() -> socket.socket:
    """A TCP socket bound to a port of the kernel's choosing on 127.0.0.1, not yet listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    return sock


@contextmanager
def refusing_port() -> Iterator[int]:
    """A port where connecting is refused, for as long as the `with` block lasts.

    The socket stays bound without listening: the kernel answers a connect with RST, and
    no other server can take the port meanwhile (picking a free port and closing it could).
    """
    with bound_socket() as sock:
        yield int(sock.getsockname()[1])


class _BoundController(Controller):
    """An aiosmtpd Controller that serves on a socket bound before it starts, so its port is known."""

    def __init__(self, handler: Any, sock: socket.socket, **options: Any) -> None:
        self._sock = sock
        super().__init__(handler, hostname=HOST, port=int(sock.getsockname()[1]), **options)

    def _create_server(self) -> Any:
        # The documented hook for subclasses; asyncio listens on the socket we already hold.
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


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
        drop_data: int | tuple[int, ...] = 0,
        stall_data: tuple[int, ...] = (),
        hold_data: tuple[int, ...] = (),
        hold_rcpt: tuple[int, ...] = (),
        max_sessions: int = 0,
    ) -> None:
        """`reject`: recipients answered 550; `defer_data`: the first N DATA commands are answered 451.
        DATA commands are numbered from 1 over all sessions: `drop_data` closes the connection on those
        numbers (an int N means 1..N); `stall_data` never answers those, as a stalled server would.
        `hold_data`: those DATA commands are recorded in `messages` but their 250 never comes, so a
        client killed meanwhile cannot know the message arrived; `hold_rcpt`: those RCPT commands
        (numbered from 1 over all sessions) are never answered. `max_sessions`: a session that says EHLO or
        HELO while that many others are open (not yet QUIT) is refused with 421, as servers that limit
        connections per client do (0: no limit; `refused_sessions` counts them). `data_commands` and
        `rcpt_commands` count what arrived, so a test can act at the moment a command is in flight.
        TLS needs `ca` (and `ca_file` for clients)."""
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
        self._drop_at = set(range(1, drop_data + 1)) if isinstance(drop_data, int) else set(drop_data)
        self._stall_at = set(stall_data)
        self.hold_data = set(hold_data)  # may be changed between runs of a test
        self.hold_rcpt = set(hold_rcpt)
        self._data_commands = 0
        self._rcpt_commands = 0
        self._max_sessions = max_sessions
        self._open_sessions: set[Any] = set()
        self.refused_sessions = 0
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def data_commands(self) -> int:
        return self._data_commands

    @property
    def rcpt_commands(self) -> int:
        return self._rcpt_commands

    @property
    def connections(self) -> int:
        """How many client connections greeted the server (the controller's own probe is not counted)."""
        return len(self.peers)

    def mailbox(self) -> tuple[dict[str, set[str]], Counter[str]]:
        """(each recipient's distinct Message-IDs, how many times each Message-ID arrived)."""
        by_recipient: dict[str, set[str]] = {}
        copies: Counter[str] = Counter()
        for received in self.messages:
            (rcpt,) = received.rcpt_tos
            by_recipient.setdefault(rcpt, set()).add(str(received.message["Message-ID"]))
            copies[str(received.message["Message-ID"])] += 1
        return by_recipient, copies

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
        sock = bound_socket()
        self.port = int(sock.getsockname()[1])
        self._controller = _BoundController(self, sock, **self._server_options())
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
        if self._too_many(session.peer):
            return [TOO_MANY_SESSIONS]
        session.host_name = hostname
        self._greeted(session.peer)
        return responses

    async def handle_HELO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str) -> str:
        if self._too_many(session.peer):
            return TOO_MANY_SESSIONS
        session.host_name = hostname
        self._greeted(session.peer)
        return f"250 {server.hostname}"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            self._open_sessions.discard(session.peer)
        return "221 Bye"

    def _too_many(self, peer: Any) -> bool:
        with self._lock:
            if peer in self._open_sessions or not self._max_sessions:
                self._open_sessions.add(peer)
                return False
            if len(self._open_sessions) >= self._max_sessions:
                self.refused_sessions += 1
                return True
            self._open_sessions.add(peer)
            return False

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
        with self._lock:
            self._rcpt_commands += 1
            held = self._rcpt_commands in self.hold_rcpt
        if held:
            await asyncio.sleep(STALL_SECONDS)
        if address.lower() in self._reject:
            return f"550 5.1.1 <{address}>: recipient address rejected: user unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            self._data_commands += 1
            number = self._data_commands
        if number in self._stall_at:  # the message arrived; the reply never comes (stop() cancels this wait)
            await asyncio.sleep(STALL_SECONDS)
        with self._lock:
            if number in self._drop_at:
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
            held = number in self.hold_data
        if held:  # recorded, never confirmed
            await asyncio.sleep(STALL_SECONDS)
        return f"250 2.0.0 OK: queued as {len(self.messages)}"

    def _greeted(self, peer: Any) -> None:
        with self._lock:
            if peer not in self.peers:
                self.peers.append(peer)


StallPoint = Literal["greeting", "EHLO", "MAIL", "DATA"]


class StallingServer:
    """A server that stops answering at `stall_at` and reads whatever comes until the client gives up.

    "greeting": accepts and never greets; "EHLO": greets 220, then silence; "MAIL" / "DATA": answers
    EHLO (and MAIL, RCPT) with 250, then silence from that command on. `connections` counts every
    connection accepted, so a test can tell how many attempts a client made.
    """

    def __init__(self, stall_at: StallPoint) -> None:
        self.stall_at = stall_at
        self.host = HOST
        self.port = 0
        self.connections = 0
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()

    def settings(self, **overrides: Any) -> SmtpSettings:
        """SmtpSettings that reach this server (plain SMTP, a short timeout unless overridden)."""
        values: dict[str, Any] = {"host": self.host, "port": self.port, "security": "none", "timeout": 0.5}
        values.update(overrides)
        return SmtpSettings(**values)

    def start(self) -> Self:
        listener = bound_socket()
        listener.listen()
        listener.settimeout(0.05)  # so the accept loop notices stop()
        self._listener, self.port = listener, int(listener.getsockname()[1])
        self._spawn(self._accept_loop)
        return self

    def stop(self) -> None:
        self._stopping.set()
        # The accept loop (the first thread) ends first, so no client thread starts after the copy.
        if self._threads:
            self._threads[0].join()
        for thread in list(self._threads):
            thread.join()
        for sock in [*self._clients, *([self._listener] if self._listener else [])]:
            sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            with self._lock:
                self.connections += 1
                self._clients.append(client)
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(0.05)
        silent = self.stall_at == "greeting"
        if not silent:
            client.sendall(b"220 stall.test ESMTP\r\n")
        pending = b""
        while not self._stopping.is_set():
            try:
                chunk = client.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return  # the client gave up
            pending += chunk
            while b"\r\n" in pending and not silent:
                line, pending = pending.split(b"\r\n", 1)
                command = line.split(b" ", 1)[0].decode("ascii", "replace").upper()
                silent = command == self.stall_at or (command == "HELO" and self.stall_at == "EHLO")
                if not silent:
                    client.sendall(b"250-stall.test\r\n250 OK\r\n" if command == "EHLO" else b"250 OK\r\n")
