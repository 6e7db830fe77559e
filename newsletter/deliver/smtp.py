"""SmtpMailer: delivers messages over one SMTP session per batch (plain, STARTTLS or implicit TLS, optional AUTH).

Reads the SMTP settings and the password it is given; talks to the network, writes nothing.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Self

from ..config import SmtpSettings
from ..errors import DeliveryError, ServerUnavailable
from .base import DeliveryResult
from .message import addresses, serialise

MAX_BACKOFF = 30.0
RECONNECT_PAUSE = 1.0  # before the one retry on a fresh session: a server that just dropped us may be restarting
# A batch gives up after this many connection failures in a row (the failure and its one retry) or
# this many timeouts in all: a stalled server then costs about 2 x smtp.timeout per run, not per subscriber.
MAX_LOST_IN_A_ROW = 2
MAX_TIMEOUTS = 2
NEXT_RUN = "delivery stopped; the remaining subscribers will be served by the next run"


class _Lost(Exception):
    """The connection failed: refused, reset, closed or silent until smtp.timeout ran out."""

    def __init__(self, what: str, cause: OSError) -> None:
        super().__init__(what)
        self.what = what
        self.timed_out = _timed_out(cause)
        self.refused = isinstance(cause, ConnectionRefusedError)


class SmtpMailer:
    """Sends over one SMTP session per batch, opened on the first send and closed on exit.

    Keeps the Mailer contract (see base.py). The retry rules, exactly:
    - a 4xx reply is retried `settings.retries` times, each on a fresh session after a backoff
      of 1, 2, 4 ... seconds (at most 30); then the message is `failed` and the batch goes on;
    - a 5xx reply makes the message `failed` at once; the session is kept for the next one;
    - a connection failure (refused, reset, closed, timed out, or a session that cannot be
      opened) is retried once on a fresh session; a second failure in a row, or a second
      timeout anywhere in the batch, raises ServerUnavailable, and so does every later send
      of the batch, without touching the network;
    - a 4xx reply while opening the session (EHLO, STARTTLS) is retried like any 4xx reply,
      then raised as DeliveryError, since no message can go out without a session;
    - a failed TLS handshake or certificate check, a server without STARTTLS, a 5xx reply while
      opening the session and a refused login raise DeliveryError at once: retrying cannot help.
    """

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        password: str | None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._password = password
        self._sleep = sleep
        self._smtp: smtplib.SMTP | None = None
        self._sender_key: tuple[tuple[str, str], ...] | None = None  # the headers _sender was read from
        self._sender = ""
        self._start_batch()

    @property
    def where(self) -> str:
        return f"SMTP server {self.settings.host}:{self.settings.port}"

    def __enter__(self) -> Self:
        self._start_batch()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Say QUIT politely; a session that is already gone is simply dropped."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()

    def send(self, message: EmailMessage) -> DeliveryResult:
        """Deliver one message: `sent` or `failed` for this recipient; DeliveryError when the batch must stop."""
        if self._unavailable is not None:
            raise ServerUnavailable(self._unavailable)
        raw = serialise(message)
        sender = self._envelope_sender(message)
        recipients = addresses(message, "To", "Cc")  # no Bcc: serialise() would leak the header
        attempt = deferrals = 0
        while True:
            attempt += 1
            try:
                code, reply = self._attempt(sender, recipients, raw)
            except DeliveryError as exc:  # the session could not be set up
                if not exc.transient or deferrals >= self.settings.retries:
                    raise
                deferrals += 1
                self._sleep(_backoff(deferrals))
                continue
            except _Lost as lost:
                self._drop()
                self._count_lost(lost)  # raises ServerUnavailable when the server looks down or stalled
                self._sleep(RECONNECT_PAUSE)
                continue
            self._lost_in_a_row = 0  # the server answered: it is alive
            if code < 400:
                return DeliveryResult("sent", reply, attempt)
            if code >= 500 or deferrals >= self.settings.retries:
                self._reset()
                return DeliveryResult("failed", reply, attempt, transient=code < 500)
            deferrals += 1
            self._drop()  # 4xx: try again later on a fresh session
            self._sleep(_backoff(deferrals))

    def _envelope_sender(self, message: EmailMessage) -> str:
        # A run's messages all come from the same address: parse it when the headers change, not per
        # message (the stdlib's strict address parsing reads each header twice, ~20 µs a message).
        key = tuple((name.lower(), value) for name, value in message.raw_items() if name.lower() in ("sender", "from"))
        if key != self._sender_key:
            self._sender_key, self._sender = key, (addresses(message, "Sender", "From") or [""])[0]
        return self._sender

    def _start_batch(self) -> None:
        # Each batch judges the server afresh: the next run may find it back up.
        self._unavailable: str | None = None
        self._lost_in_a_row = 0
        self._timeouts = 0

    def _attempt(self, sender: str, recipients: list[str], raw: bytes) -> tuple[int, str]:
        smtp = self._session()
        try:
            return _transaction(smtp, sender, recipients, raw)
        except OSError as exc:  # SMTPServerDisconnected, timeouts, resets: the session is gone
            raise _Lost(f"{self.where} lost the connection ({_reason(exc)})", exc) from exc

    def _count_lost(self, lost: _Lost) -> None:
        self._lost_in_a_row += 1
        self._timeouts += lost.timed_out
        if self._lost_in_a_row < MAX_LOST_IN_A_ROW and self._timeouts < MAX_TIMEOUTS:
            return
        if lost.timed_out:
            hint = f"no reply within smtp.timeout ({self.settings.timeout:g} s): the server looks down or stalled"
        elif lost.refused:
            hint = "check smtp.host and smtp.port, and that the server is running"
        else:
            hint = "the server keeps dropping the connection"
        self._unavailable = f"{lost.what}; {hint}; {NEXT_RUN}"
        raise ServerUnavailable(self._unavailable) from lost

    def _session(self) -> smtplib.SMTP:
        if self._smtp is None:
            self._smtp = self._open()
        return self._smtp

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    def _reset(self) -> None:
        # After a refusal the session must be clean for the next message of the batch.
        if self._smtp is None:
            return
        try:
            self._smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _open(self) -> smtplib.SMTP:
        smtp = self._connect()
        try:
            smtp.ehlo_or_helo_if_needed()
            if self.settings.security == "starttls":
                self._starttls(smtp)
            if self.settings.username is not None:
                self._login(smtp)
        except DeliveryError:
            smtp.close()
            raise
        except ssl.SSLError as exc:
            smtp.close()
            raise self._tls_error(exc) from exc
        except smtplib.SMTPServerDisconnected as exc:
            smtp.close()
            raise self._lost_while_opening(exc) from exc
        except smtplib.SMTPResponseException as exc:  # a live server refused EHLO or the like
            smtp.close()
            reply = _reply(exc.smtp_code, exc.smtp_error)
            raise DeliveryError(f"{self.where} refused the session ({reply})", transient=exc.smtp_code < 500) from exc
        except smtplib.SMTPException as exc:  # e.g. no AUTH mechanism in common: the server is up, the setup is wrong
            smtp.close()
            raise DeliveryError(f"{self.where}: the session could not be set up ({exc})") from exc
        except OSError as exc:  # reset, timed out
            smtp.close()
            raise self._lost_while_opening(exc) from exc
        return smtp

    def _lost_while_opening(self, exc: OSError) -> _Lost:
        return _Lost(f"{self.where} failed while opening the session ({_reason(exc)})", exc)

    def _connect(self) -> smtplib.SMTP:
        host, port, timeout = self.settings.host, self.settings.port, self.settings.timeout
        try:
            if self.settings.security == "ssl":
                return smtplib.SMTP_SSL(host, port, timeout=timeout, context=self._tls_context())
            return smtplib.SMTP(host, port, timeout=timeout)
        except ssl.SSLError as exc:
            raise self._tls_error(exc) from exc
        except OSError as exc:  # refused, unreachable, timed out, or a greeting other than 220
            raise _Lost(f"cannot connect to {self.where} ({_reason(exc)})", exc) from exc

    def _tls_context(self) -> ssl.SSLContext:
        ca_file = self.settings.ca_file
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)

    def _tls_error(self, exc: ssl.SSLError) -> DeliveryError:
        if isinstance(exc, ssl.SSLCertVerificationError):
            hint = "if the server uses a private CA, point smtp.ca_file at its certificate"
        else:
            hint = "check smtp.security: ssl for implicit TLS (usually port 465), starttls for port 587"
        return DeliveryError(f"TLS with {self.where} failed ({exc.reason or exc}); {hint}")

    def _starttls(self, smtp: smtplib.SMTP) -> None:
        if not smtp.has_extn("starttls"):
            # Never fall back to plain text: the password and the mail would travel in the clear.
            raise DeliveryError(
                f"{self.where} does not offer STARTTLS, but smtp.security is starttls; "
                "use security: ssl if it expects TLS from the start, or fix the server's TLS setup"
            )
        try:
            smtp.starttls(context=self._tls_context())
        except smtplib.SMTPResponseException as exc:
            reply = _reply(exc.smtp_code, exc.smtp_error)
            raise DeliveryError(f"{self.where} refused STARTTLS ({reply})", transient=exc.smtp_code < 500) from exc
        smtp.ehlo()

    def _login(self, smtp: smtplib.SMTP) -> None:
        username = self.settings.username
        if self._password is None:
            raise DeliveryError(f"smtp.username is set but no password was given; export {self.settings.password_env}")
        try:
            smtp.login(username or "", self._password)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"{self.where} rejected the login for {username!r} ({_reply(exc.smtp_code, exc.smtp_error)}); "
                f"check smtp.username and the password in {self.settings.password_env}"
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(
                f"{self.where} does not offer AUTH on this connection; "
                "most servers only allow it over TLS: set smtp.security to starttls or ssl"
            ) from exc


def _transaction(smtp: smtplib.SMTP, sender: str, recipients: list[str], raw: bytes) -> tuple[int, str]:
    """MAIL, RCPT and DATA; returns the reply that decided the outcome (the first refusal, or DATA's)."""
    if not recipients:
        return 554, "554 the message has no recipient (To or Cc)"
    text: bytes | str
    try:
        code, text = _command(smtp, "mail", f"FROM:<{sender}>")
        if code == 250:
            for recipient in recipients:
                code, text = _command(smtp, "rcpt", f"TO:<{recipient}>")
                if code not in (250, 251):
                    break
            else:
                code, text = _data(smtp, raw)
    except smtplib.SMTPResponseException as exc:  # DATA refused before the content was sent
        code, text = exc.smtp_code, exc.smtp_error
    return code, _reply(code, text)


def _command(smtp: smtplib.SMTP, name: str, argument: str) -> tuple[int, bytes]:
    """MAIL or RCPT as smtplib's `mail` and `rcpt` send them for a bare address (always ours: checked,
    plain ASCII, read from headers we wrote), without their re-parsing of it through email.utils
    (about 60 us a message, a tenth of the sender's work)."""
    smtp.putcmd(name, argument)
    return smtp.getreply()


def _data(smtp: smtplib.SMTP, raw: bytes) -> tuple[int, bytes]:
    """DATA as smtplib's `data` sends it, the same bytes on the wire, with the dot-stuffing done by
    split and join: smtplib's multi-line regex took about 0.2 ms of CPU per 60 KB digest, more than
    the rest of the SMTP exchange. Like smtplib's, it leaves a bytes message's line ends as they are."""
    code, reply = smtp.docmd("data")
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    # A line that starts with "." gets a second one (RFC 5321 4.5.2), as smtplib does after every LF.
    stuffed = b"\n..".join(raw.split(b"\n."))
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    smtp.send(stuffed + b".\r\n")
    return smtp.getreply()


def _backoff(deferrals: int) -> float:
    return min(2.0 ** (deferrals - 1), MAX_BACKOFF)


def _timed_out(exc: BaseException) -> bool:
    # smtplib reports a read that timed out as SMTPServerDisconnected, with the TimeoutError as its context.
    return isinstance(exc, TimeoutError) or isinstance(exc.__context__ or exc.__cause__, TimeoutError)


def _reason(exc: BaseException) -> str:
    if _timed_out(exc):
        return "timed out"
    return str(exc) or type(exc).__name__


def _reply(code: int, text: bytes | str) -> str:
    words = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {words}".strip()
