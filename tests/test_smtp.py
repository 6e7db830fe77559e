"""SmtpMailer's DATA on a real aiosmtpd server: the stored bytes arrive as they are, whatever their lines hold."""

from __future__ import annotations

import smtplib
from collections.abc import Callable

import pytest

from newsletter.deliver import SmtpMailer, stored_message
from smtp_sink import SmtpSink

HEAD = b"From: Digest <digest@example.org>\r\nTo: Alice <alice@example.org>\r\nSubject: dots\r\n\r\n"


@pytest.mark.parametrize("body", [
    # A line of one "." would end DATA early if it were not doubled; ".." must arrive as "..".
    b"first\r\n.\r\n..two\r\n.three\r\nlast\r\n",
    # Quoted-printable soft breaks put "." at a line start; a message may lack its final line end.
    b"a=\r\n.b\r\n.c\r\nno line end at the end.",
    b".\r\n",
])
def test_lines_starting_with_a_dot_arrive_as_stored(smtp_sink: Callable[..., SmtpSink], body: bytes) -> None:
    sink = smtp_sink()
    raw = HEAD + body
    with SmtpMailer(sink.settings(), password=None) as mailer:
        result = mailer.send(stored_message(raw))
        assert mailer.send(stored_message(HEAD + b"next\r\n")).status == "sent"  # the session is still in step
    assert result.status == "sent"
    received, following = sink.messages
    # The sink un-stuffs the dots and keeps every byte else; a message without a final line end gets one.
    assert received.raw == (raw if raw.endswith(b"\r\n") else raw + b"\r\n")
    assert received.rcpt_tos == ("alice@example.org",) and following.raw == HEAD + b"next\r\n"


def test_the_wire_bytes_are_smtplib_s_even_for_a_bare_line_feed(smtp_sink: Callable[..., SmtpSink]) -> None:
    # smtplib doubles a dot after a bare LF too (its regex is multi-line), which a server then keeps doubled:
    # never in a message we build (CRLF only), but a stored one must go out exactly as smtplib would send it.
    sink = smtp_sink()
    raw = HEAD + b"one\n.two\r\n.three\rx\r\n"
    with SmtpMailer(sink.settings(), password=None) as mailer:
        assert mailer.send(stored_message(raw)).status == "sent"
    with smtplib.SMTP(sink.settings().host, sink.settings().port) as plain:
        plain.sendmail("digest@example.org", ["alice@example.org"], raw)
    ours, smtplibs = sink.messages
    assert ours.raw == smtplibs.raw and b"\n..two" in ours.raw


def test_each_message_s_envelope_sender_is_its_own_sender_or_from(smtp_sink: Callable[..., SmtpSink]) -> None:
    # The mailer parses the sender once while the headers stay the same: a change must still be seen.
    sink = smtp_sink()
    heads = [b"From: Digest <digest@example.org>\r\n", b"From: Digest <digest@example.org>\r\n",
             b"From: Other <other@example.org>\r\n",
             b"Sender: <bulk@example.org>\r\nFrom: Digest <digest@example.org>\r\n",
             b"From: <bulk@example.org>\r\nSender: Digest <digest@example.org>\r\n"]  # the same values, swapped
    with SmtpMailer(sink.settings(), password=None) as mailer:
        for head in heads:
            assert mailer.send(stored_message(head + b"To: <alice@example.org>\r\n\r\nx\r\n")).status == "sent"
    assert [m.mail_from for m in sink.messages] == ["digest@example.org", "digest@example.org", "other@example.org",
                                                    "bulk@example.org", "digest@example.org"]
