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
from ..errors import DeliveryError
from .base import DeliveryResult
from .message import addresses, serialise

MAX_BACKOFF = 30.0


class SmtpMailer:
    """Sends over one SMTP session per batch, opened on the first send and closed on exit."""

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

    @property
    def where(self) -> str:
        return f"SMTP server {self.settings.host}:{self.settings.port}"

    def __enter__(self) -> Self:
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
        """Deliver one message, retrying transient failures; DeliveryError only when nothing can be sent."""
        raw = serialise(message)
        sender = (addresses(message, "Sender", "From") or [""])[0]
        recipients = addresses(message, "To", "Cc")  # no Bcc: serialise() would leak the header
        reply = ""
        for attempt in range(1, self.settings.retries + 2):
            if attempt > 1:
                self._sleep(min(2.0 ** (attempt - 2), MAX_BACKOFF))
            try:
                code, reply = _transaction(self._session(), sender, recipients, raw)
            except DeliveryError as exc:
                if not exc.transient or attempt > self.settings.retries:
                    raise
                continue
            except OSError as exc:  # includes SMTPServerDisconnected and timeouts
                self._drop()
                reply = f"connection lost: {exc or type(exc).__name__}"
                continue
            if code < 400:
                return DeliveryResult("sent", reply, attempt)
            if code >= 500:
                self._reset()
                return DeliveryResult("failed", reply, attempt)
            self._drop()  # 4xx: try again later on a fresh session
        return DeliveryResult("failed", reply, self.settings.retries + 1)

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
        try:
            self._session().rset()
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
        except (smtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise DeliveryError(f"{self.where}: the session failed while opening ({exc})", transient=True) from exc
        return smtp

    def _connect(self) -> smtplib.SMTP:
        host, port, timeout = self.settings.host, self.settings.port, self.settings.timeout
        try:
            if self.settings.security == "ssl":
                return smtplib.SMTP_SSL(host, port, timeout=timeout, context=self._tls_context())
            return smtplib.SMTP(host, port, timeout=timeout)
        except ssl.SSLError as exc:
            raise self._tls_error(exc) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                f"cannot connect to {self.where} ({exc or type(exc).__name__}); "
                "check smtp.host and smtp.port, and that the server is running",
                transient=True,
            ) from exc

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
        code, text = smtp.mail(sender)
        if code == 250:
            for recipient in recipients:
                code, text = smtp.rcpt(recipient)
                if code not in (250, 251):
                    break
            else:
                code, text = smtp.data(raw)
    except smtplib.SMTPResponseException as exc:  # DATA refused before the content was sent
        code, text = exc.smtp_code, exc.smtp_error
    return code, _reply(code, text)


def _reply(code: int, text: bytes | str) -> str:
    words = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {words}".strip()
