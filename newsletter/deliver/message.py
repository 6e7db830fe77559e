"""Builds the digest's MIME message from a RenderedEmail and serialises it for the wire (reads and writes nothing)."""

from __future__ import annotations

import binascii
import re
import secrets
from datetime import datetime
from email import policy as email_policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import EmailPolicy, Policy
from email.utils import format_datetime, getaddresses, make_msgid
from functools import lru_cache
from typing import Any

from ..errors import DeliveryError
from ..models import RenderedEmail, Subscriber, SubscriberLinks
from ..text import one_line, quoted
from ..validation import check_email

MAX_LINE = 998  # RFC 5322 2.1.1, without the CRLF
FOLD_AT = 78  # where header lines SHOULD end (RFC 5322 2.1.1), and the wire policy folds


class UrlListHeader(UnstructuredHeader, BaseHeader):
    """A header of <URL> items (List-Unsubscribe) folded only between the items.

    The stock folder turns any word longer than a line into RFC 2047 encoded
    words, and mail clients then no longer see the unsubscribe URLs.
    """

    def fold(self, *, policy: Policy[Any]) -> str:
        return _fold_url_list(self.name, str(self), policy.linesep) or super().fold(policy=policy)


def _fold_url_list(name: str, value: str, linesep: str) -> str | None:
    """`name: <a>,<linesep> <b>`: one <URL> item per line; None when that cannot be written as it is."""
    items = re.findall(r"<[^<>]*>", value)
    folded = f"{name}: " + f",{linesep} ".join(items) + linesep
    if not items or not folded.isascii() or any(len(line) > MAX_LINE for line in folded.splitlines()):
        return None
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
    """The digest as an EmailMessage whose wire form is `build_wire`'s bytes (see there)."""
    return stored_message(build_wire(rendered, subscriber, sender_name=sender_name, sender_address=sender_address,
                                     list_id=list_id, links=links, now=now, message_id=message_id))


def build_wire(
    rendered: RenderedEmail,
    subscriber: Subscriber,
    *,
    sender_name: str,
    sender_address: str,
    list_id: str,
    links: SubscriberLinks,
    now: datetime,
    message_id: str,
) -> bytes:
    """The digest's bytes: multipart/alternative (text, then HTML) with RFC 2369/2919/8058 list headers.

    Written directly rather than through EmailMessage and its generator, which cost more than
    everything else per message (pure-Python quoted-printable and re-folding). Headers that are not
    plain ASCII are still folded and RFC 2047-encoded by the stdlib's header classes; the text body
    is quoted-printable from binascii (C) and the HTML 7bit where it can be (see _html_part), so
    every line is short and 7-bit and no server needs 8BITMIME. Raises DeliveryError naming the
    sender or the subscriber when an address cannot be sent to.
    """
    head = b"".join((
        _from_header(sender_name, sender_address),
        _address_header("To", subscriber.name, subscriber.email, f"subscriber {subscriber.id}"),
        _fold("Subject", one_line(rendered.subject)),
        _plain_header("Date", format_datetime(now)),
        _plain_header("Message-ID", one_line(message_id)),
        _list_headers(sender_name, list_id),
        _list_unsubscribe(f"<{one_line(links.one_click)}>, <{one_line(links.unsubscribe_mailto)}>"),
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
    ))
    boundary = _boundary()
    return b"".join((
        head,
        b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"", boundary, b"\"\r\n\r\n",
        b"--", boundary, b"\r\n", _text_part("text/plain", rendered.text),
        b"\r\n--", boundary, b"\r\n", _html_part(rendered.html, boundary),
        b"\r\n--", boundary, b"--\r\n",
    ))


def _list_unsubscribe(value: str) -> bytes:
    # As the policy's UrlListHeader writes it, without parsing the header first.
    folded = _fold_url_list("List-Unsubscribe", value, "\r\n")
    return folded.encode("ascii") if folded is not None else _fold("List-Unsubscribe", value)


def _plain_header(name: str, value: str) -> bytes:
    """A header we made ourselves (a date, a Message-ID): written as it is when it is short ASCII, which
    is what the folder would write too, without parsing it back first."""
    line = f"{name}: {value}"
    if len(line) <= 78 and line.isascii() and "=?" not in value:
        return line.encode("ascii") + b"\r\n"
    return _fold(name, value)


def _fold(name: str, value: str | Address) -> bytes:
    """One header as the wire policy writes it: folded at 78, non-ASCII as encoded words, CRLF."""
    if isinstance(value, str) and (folded := _fold_plain(name, value)) is not None:
        return folded
    return WIRE_POLICY.header_factory(name, value).fold(policy=WIRE_POLICY).encode("ascii")


def _fold_plain(name: str, value: str) -> bytes | None:
    """`name: value` folded at its spaces as the policy folds an unstructured header, for plain printable
    ASCII words; None for anything else (non-ASCII, "=?", runs of spaces, a word too long for a line, which
    the policy turns into encoded words), and the policy writes those.

    Every message's subject is such text, and the policy's parser and folder cost a tenth of a
    millisecond per header.
    """
    if not (value.isascii() and value.isprintable()) or "=?" in value or "  " in value or value != value.strip():
        return None
    if len(name) + 2 + len(value) <= FOLD_AT:
        return f"{name}: {value}\r\n".encode("ascii")
    if len(value) + 1 <= FOLD_AT:  # what fits on a line of its own goes there whole
        return f"{name}:\r\n {value}\r\n".encode("ascii")
    lines: list[str] = []
    current = start = f"{name}:"
    for word in value.split(" "):
        if len(current) + 1 + len(word) > FOLD_AT and current not in (start, ""):
            lines.append(current)
            current = ""
        current += " " + word
    lines.append(current)
    if any(len(line) > FOLD_AT for line in lines):
        return None
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


@lru_cache(maxsize=16)
def _from_header(sender_name: str, sender_address: str) -> bytes:
    # The same for every message of a run: checked and folded once.
    return _address_header("From", sender_name, sender_address, "sender.address")


# A display name made only of these needs no quoting or encoding ("=" and "?" are left out: "=?" starts an
# encoded word), so the header is written as the stdlib would write it, without its parser and folder.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+/^_`{|}~ -]*")


def _address_header(name: str, display_name: str, addr_spec: str, who: str) -> bytes:
    shown_name = one_line(display_name)
    if _PLAIN_NAME.fullmatch(shown_name):
        checked = _checked_address(addr_spec, who)
        line = f"{name}: {shown_name} <{checked}>" if shown_name else f"{name}: {checked}"
        if len(line) <= FOLD_AT and line.isascii():
            return line.encode("ascii") + b"\r\n"
    return _fold(name, _address(display_name, addr_spec, who))


@lru_cache(maxsize=16)
def _list_headers(sender_name: str, list_id: str) -> bytes:
    # The same for every message of a run: folded once.
    return _fold("List-Id", f"{_list_label(sender_name)} <{one_line(list_id)}>".strip())


def _boundary() -> bytes:
    """A fresh MIME boundary. It holds "==", which quoted-printable text can never contain (a literal
    "=" is always "=3D" and a soft break ends its line), so it cannot clash with a body line; a 7bit
    HTML part is checked for it (see _html_part)."""
    return b"===============%019d==" % secrets.randbelow(10**19)


# Raw-text elements: character references in them are not decoded, so their text must stay as it is
# (to its end tag, or to the end of the document for one left open, as a browser reads it).
_RAW_TEXT = re.compile(r"<(style|script)\b[^>]*>(.*?)(?:</\1|\Z)", re.IGNORECASE | re.DOTALL)


def _html_part(html: str, boundary: bytes) -> bytes:
    """The HTML part as 7bit text when it can be, else quoted-printable (`_text_part`).

    It can be when it is ASCII once every other character is written as a character reference (which
    an HTML reader decodes back, except in <style> and <script>), and every line is within SMTP's 998
    characters (the compiled template starts every tag's attributes on a new line: see render).
    Quoted-printable would cost a tenth of everything it takes to make a digest, and 6% more bytes.
    """
    if not html.isascii() and any(not match.group(2).isascii() for match in _RAW_TEXT.finditer(html)):
        return _text_part("text/html", html)
    data = _canonical_lines(html.encode("ascii", "xmlcharrefreplace"))
    if max(map(len, data.split(b"\n"))) > MAX_LINE or b"\0" in data or b"--" + boundary in data:
        return _text_part("text/html", html)
    return (b'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n'
            + data.replace(b"\n", b"\r\n"))


def _canonical_lines(data: bytes) -> bytes:
    """Line ends normalised as the stdlib does (CR, LF and CRLF each end a line) to LF, ending with one."""
    if b"\r" in data:
        return b"\n".join(data.splitlines()) + b"\n"
    return data if data.endswith(b"\n") else data + b"\n"


def _text_part(content_type: str, content: str) -> bytes:
    """A UTF-8 text part, quoted-printable with CRLF line ends (RFC 2045 canonical form).

    Line ends are normalised as the stdlib does (CR, LF and CRLF each end a line, and the
    part ends with one), so the decoded text is what the template rendered.
    """
    data = _canonical_lines(content.encode("utf-8"))
    body = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    return (f'Content-Type: {content_type}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n").encode("ascii") + body.replace(b"\n", b"\r\n")


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

    Only the header block is parsed (mailers and the outbox read addresses, date and
    Message-ID from it): parsing the MIME body of every queued message again cost as much
    as sending it.
    """
    head, _, _ = raw.partition(b"\r\n\r\n")
    message = StoredMessage(policy=WIRE_POLICY)
    # Each header as the parser would keep it (the policy's own source parsing, folds and all), without
    # the parser's other work: it read Content-Type through the header registry for every message sent.
    for lines in _header_lines(head.decode("ascii", "surrogateescape")):
        message.set_raw(*WIRE_POLICY.header_source_parse(lines))
    message.wire = raw
    return message


def _header_lines(head: str) -> list[list[str]]:
    """The header block's fields, each as its lines (a continuation line starts with a space or a tab)."""
    fields: list[list[str]] = []
    for line in head.split("\r\n"):
        if line[:1] in (" ", "\t") and fields:
            fields[-1].append(line + "\r\n")
        elif ":" in line:
            fields.append([line + "\r\n"])
    return fields


def addresses(message: EmailMessage, *names: str) -> list[str]:
    """The bare addresses in the named headers, in order (display names dropped)."""
    # The raw header text, as a mail server reads it: building header objects only to take the
    # addresses back out of them cost more per message than the rest of a send.
    items = [(key.lower(), value) for key, value in message.raw_items()]
    values = [str(value) for name in names for key, value in items if key == name.lower()]
    plain = [_PLAIN_ADDRESS.fullmatch(value) for value in values]
    if all(plain):  # what build_wire writes: `Name <a@b>` or `a@b`, nothing for the parser to resolve
        return [match.group(1) or match.group(2) for match in plain if match is not None]
    return [address for _, address in getaddresses(values) if address]


# One address, bare or after a display name of plain words: no quotes, comments, groups, lists or encoded
# words (anything else goes to getaddresses, which gives the same address for these; a test compares).
_ADDR_SPEC = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+"
_PLAIN_ADDRESS = re.compile(rf"{_PLAIN_NAME.pattern}<({_ADDR_SPEC})>|({_ADDR_SPEC})")


def _address(display_name: str, addr_spec: str, who: str) -> Address:
    """An Address object, so the policy quotes and encodes the display name (formataddr output gets
    re-parsed, and a comma in a non-ASCII name then splits it into two addresses)."""
    checked = _checked_address(addr_spec, who)
    try:
        return Address(display_name=one_line(display_name), addr_spec=checked)
    except (ValueError, IndexError) as exc:  # Address() raises either on parts it cannot represent
        raise DeliveryError(f"{who}: {quoted(addr_spec)} {exc or 'is not a valid email address'}") from None


def _checked_address(addr_spec: str, who: str) -> str:
    # The same rule as config and subscriber files; repeated here because a message
    # can be built from a Subscriber that never went through a file.
    try:
        return check_email(addr_spec)
    except ValueError as exc:
        raise DeliveryError(f"{who}: {quoted(addr_spec)} {exc or 'is not a valid email address'}") from None


def _list_label(name: str) -> str:
    # List-Id is an unstructured header to the email package, which would fold a quoted
    # non-ASCII phrase into a broken quoted string; a label without specials needs no quotes.
    return " ".join(re.sub(r'[()<>@,;:\\".\[\]]', " ", one_line(name)).split())
