"""Builds the digest's MIME message from a RenderedEmail and serialises it for the wire (reads and writes nothing)."""

from __future__ import annotations

import re
from datetime import datetime
from email import policy as email_policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import EmailPolicy, Policy
from email.utils import format_datetime, getaddresses, make_msgid
from typing import Any

from ..errors import DeliveryError
from ..models import RenderedEmail, Subscriber, SubscriberLinks
from ..text import one_line, quoted
from ..validation import check_email

MAX_LINE = 998  # RFC 5322 2.1.1, without the CRLF


class UrlListHeader(UnstructuredHeader, BaseHeader):
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
    registry.map_to_type("list-unsubscribe", UrlListHeader)
    return email_policy.SMTP.clone(header_factory=registry)


# CRLF line ends: a bare-LF message makes real servers answer "500 Line too long".
WIRE_POLICY = _wire_policy()


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
    """The digest as multipart/alternative (text, then HTML) with RFC 2369/2919/8058 list headers.

    Raises DeliveryError naming the sender or the subscriber when an address cannot be sent to.
    """
    message = EmailMessage(policy=WIRE_POLICY)
    message["From"] = _address(sender_name, sender_address, "sender.address")
    message["To"] = _address(subscriber.name, subscriber.email, f"subscriber {subscriber.id}")
    message["Subject"] = one_line(rendered.subject)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = one_line(message_id)
    message["List-Id"] = f"{_list_label(sender_name)} <{one_line(list_id)}>".strip()
    message["List-Unsubscribe"] = f"<{one_line(links.one_click)}>, <{one_line(links.unsubscribe_mailto)}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # Quoted-printable keeps every line short and 7-bit, so no server needs 8BITMIME.
    message.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return message


def serialise(message: EmailMessage) -> bytes:
    """The message as it goes on the wire: CRLF line ends, no line over 998 characters.

    A message read back from the ledger goes out exactly as it was stored.
    """
    if isinstance(message, StoredMessage) and message.wire:
        return message.wire
    return message.as_bytes(policy=WIRE_POLICY)


class StoredMessage(EmailMessage):
    """A message rebuilt from the bytes the ledger stored; `wire` is those bytes, sent unchanged.

    Re-serialising a parsed message could fold a header differently, and a resend after a
    crash must be the very message that may already have arrived (same Message-ID, same bytes).
    """

    wire: bytes = b""


def stored_message(raw: bytes) -> EmailMessage:
    """The message whose wire form is `raw`; mailers send `raw` itself (see serialise).

    Only the headers are parsed (mailers read the addresses from them): parsing the MIME
    body of every queued message again cost as much as sending it.
    """
    message = BytesParser(StoredMessage, policy=WIRE_POLICY).parsebytes(raw, headersonly=True)
    assert isinstance(message, StoredMessage)
    message.wire = raw
    return message


def addresses(message: EmailMessage, *names: str) -> list[str]:
    """The bare addresses in the named headers, in order (display names dropped)."""
    values = [str(value) for name in names for value in message.get_all(name, [])]
    return [address for _, address in getaddresses(values) if address]


def _address(display_name: str, addr_spec: str, who: str) -> Address:
    """An Address object, so the policy quotes and encodes the display name (formataddr output gets
    re-parsed, and a comma in a non-ASCII name then splits it into two addresses)."""
    try:
        # The same rule as config and subscriber files; repeated here because a message
        # can be built from a Subscriber that never went through a file.
        checked = check_email(addr_spec)
        return Address(display_name=one_line(display_name), addr_spec=checked)
    except (ValueError, IndexError) as exc:  # Address() raises either on parts it cannot represent
        raise DeliveryError(f"{who}: {quoted(addr_spec)} {exc or 'is not a valid email address'}") from None


def _list_label(name: str) -> str:
    # List-Id is an unstructured header to the email package, which would fold a quoted
    # non-ASCII phrase into a broken quoted string; a label without specials needs no quotes.
    return " ".join(re.sub(r'[()<>@,;:\\".\[\]]', " ", one_line(name)).split())
