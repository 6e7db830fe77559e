"""Turns a RenderedEmail into a MIME message and delivers it over SMTP or as .eml files in an outbox folder."""

from __future__ import annotations

import hashlib
import os
import re
import smtplib
import ssl
import tempfile
import time
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy as email_policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import EmailPolicy, Policy
from email.utils import format_datetime, getaddresses, make_msgid
from pathlib import Path
from typing import Any, Literal, Protocol, Self

from .config import Config, SmtpSettings
from .errors import DeliveryError
from .models import RenderedEmail, Subscriber, SubscriberLinks

MAX_LINE = 998  # RFC 5322 2.1.1, without the CRLF
MAX_BACKOFF = 30.0


class _UrlListHeader(UnstructuredHeader, BaseHeader):
    """A header of <URL> items (List-Unsubscribe) folded only between the items.

    The stock folder turns any word longer than a line into RFC 2047 encoded
    words, and mail clients then no longer see the unsubscribe URLs.
    """

    def fold(self, *, policy: Policy[Any]) -> str:
        items = re.findall(r"<[^<>]*>", str(self))
        folded = f"{self.name}: " + f",{policy.linesep} ".join(items) + policy.linesep
        if not items or not folded.isascii() or any(len(line) > MAX_LINE for line in folded.splitlines()):
            return super().fold(policy=policy)
        return folded


def _wire_policy() -> EmailPolicy[EmailMessage]:
    registry = HeaderRegistry()
    registry.map_to_type("list-unsubscribe", _UrlListHeader)
    return email_policy.SMTP.clone(header_factory=registry)


# CRLF line ends: a bare-LF message makes real servers answer "500 Line too long".
WIRE_POLICY = _wire_policy()


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What happened to one message; `reply` is the server's last reply or the outbox file."""

    status: Literal["sent", "failed"]
    reply: str
    attempts: int


class Mailer(Protocol):
    """Sends a batch of messages; entering it opens what the batch shares (one SMTP session)."""

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def send(self, message: EmailMessage) -> DeliveryResult: ...


# --- building the message ------------------------------------------------------------


def header_text(value: str) -> str:
    """One line of text safe for a header: control and line-break characters become spaces."""
    spaced = "".join(" " if unicodedata.category(char) in ("Cc", "Zl", "Zp") else char for char in value)
    return " ".join(spaced.split())


def _address(display_name: str, addr_spec: str, who: str) -> Address:
    """An Address object, so the policy quotes and encodes the display name (formataddr output gets
    re-parsed, and a comma in a non-ASCII name then splits it into two addresses)."""
    try:
        if addr_spec != header_text(addr_spec) or " " in addr_spec or not addr_spec.isascii():
            raise ValueError(addr_spec)
        address = Address(display_name=header_text(display_name), addr_spec=addr_spec)
        if address.addr_spec != addr_spec or not address.domain:
            raise ValueError(addr_spec)
    except (ValueError, IndexError):
        raise DeliveryError(
            f"{who}: {addr_spec!r} is not a plain ASCII email address such as alice@example.org"
        ) from None
    return address


def _list_label(name: str) -> str:
    # List-Id is an unstructured header to the email package, which would fold a quoted
    # non-ASCII phrase into a broken quoted string; a label without specials needs no quotes.
    return " ".join(re.sub(r'[()<>@,;:\\".\[\]]', " ", header_text(name)).split())


def new_message_id(sender_address: str) -> str:
    """A fresh "<unique@domain>" Message-ID in the sender's domain."""
    return make_msgid(domain=sender_address.rpartition("@")[2] or "localhost")


def build_message(
    rendered: RenderedEmail,
    subscriber: Subscriber,
    *,
    sender_name: str,
    sender_address: str,
    list_id: str,
    links: SubscriberLinks,
    now: datetime,
    message_id: str,
) -> EmailMessage:
    """The digest as multipart/alternative (text, then HTML) with RFC 2369/2919/8058 list headers."""
    message = EmailMessage(policy=WIRE_POLICY)
    message["From"] = _address(sender_name, sender_address, "sender.address")
    message["To"] = _address(subscriber.name, subscriber.email, f"subscriber {subscriber.id}")
    message["Subject"] = header_text(rendered.subject)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = header_text(message_id)
    message["List-Id"] = f"{_list_label(sender_name)} <{header_text(list_id)}>".strip()
    message["List-Unsubscribe"] = f"<{header_text(links.one_click)}>, <{header_text(links.unsubscribe_mailto)}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # Quoted-printable keeps every line short and 7-bit, so no server needs 8BITMIME.
    message.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return message


def serialise(message: EmailMessage) -> bytes:
    """The message as it goes on the wire: CRLF line ends, no line over 998 characters."""
    return message.as_bytes(policy=WIRE_POLICY)


def _addresses(message: EmailMessage, *names: str) -> list[str]:
    values = [str(value) for name in names for value in message.get_all(name, [])]
    return [address for _, address in getaddresses(values) if address]


# --- outbox folder -------------------------------------------------------------------


class OutboxMailer:
    """Writes each message to <folder>/<YYYYmmddTHHMMSS>-<recipient>-<id>.eml; a preview and a dry run."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def send(self, message: EmailMessage) -> DeliveryResult:
        path = self.folder / _outbox_name(message)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, serialise(message))
        except OSError as exc:
            raise DeliveryError(f"cannot write {path} ({exc}); check delivery.outbox and its permissions") from exc
        return DeliveryResult("sent", str(path), 1)


def _outbox_name(message: EmailMessage) -> str:
    date = message["Date"]
    when = getattr(date, "datetime", None) or datetime.now(UTC)
    recipients = _addresses(message, "To") or ["unknown"]
    who = re.sub(r"[^A-Za-z0-9@._+-]", "_", recipients[0])[:64]
    message_id = str(message["Message-ID"] or uuid.uuid4())
    short = hashlib.sha256(message_id.encode()).hexdigest()[:8]
    return f"{when:%Y%m%dT%H%M%S}-{who}-{short}.eml"


def _write_atomically(path: Path, data: bytes) -> None:
    # A reader of the outbox never sees half a file: write aside, then rename over.
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


# --- SMTP -----------------------------------------------------------------------------


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
        sender = (_addresses(message, "Sender", "From") or [""])[0]
        recipients = _addresses(message, "To", "Cc")  # no Bcc: serialise() would leak the header
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


def mailer_from_config(config: Config) -> Mailer:
    """The mailer config.yaml asks for; the SMTP password comes from the environment."""
    settings = config.settings
    if settings.delivery.method == "outbox":
        return OutboxMailer(config.outbox)
    smtp = settings.smtp
    if smtp.ca_file is not None:
        smtp = smtp.model_copy(update={"ca_file": config.resolve(smtp.ca_file)})
    return SmtpMailer(smtp, password=smtp.password())
