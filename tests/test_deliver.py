"""Tests for newsletter.deliver: message structure, the outbox folder and SMTP against a real aiosmtpd server."""

from __future__ import annotations

import email
import email.policy
import html
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from newsletter.config import SmtpSettings, config_from_mapping
from newsletter.deliver import (
    DeliveryResult,
    Mailer,
    OutboxMailer,
    SmtpMailer,
    build_message,
    mailer_from_config,
    new_message_id,
    serialise,
)
from newsletter.errors import ConfigError, DeliveryError, ServerUnavailable
from newsletter.models import RenderedEmail, Subscriber, SubscriberLinks
from smtp_sink import SmtpSink, StallingServer, StallPoint

NOW = datetime(2024, 3, 5, 7, 30, 15, tzinfo=UTC)
SENDER_NAME = "Zoë’s Paper Digest, weekly"
SENDER = "digest@example.org"
LIST_ID = "digest.example.org"
TOKEN = "ImFsaWNlIg." + "x" * 90  # long enough that a URL does not fit on a 78-character line
LINKS = SubscriberLinks(
    manage=f"https://digest.example.org/preferences/{TOKEN}",
    unsubscribe=f"https://digest.example.org/unsubscribe/{TOKEN}",
    one_click=f"https://digest.example.org/unsubscribe/{TOKEN}",
    unsubscribe_mailto=f"mailto:{SENDER}?subject=unsubscribe%20{TOKEN}",
)
TEXT = "Your papers for this week — “Attention” and more.\n\n" + "word " * 400 + "\n"
HTML = "<html><body><p>Your papers — “Attention”.</p>" + "<td>cell</td>" * 300 + "</body></html>\n"
EVIL = "\r\nBcc: evil@x"


def subscriber(sub_id: str = "alice", name: str = "Alice Ünïcode") -> Subscriber:
    return Subscriber(id=sub_id, email=f"{sub_id}@example.org", name=name)


def message_for(sub: Subscriber | None = None, *, subject: str = "5 papers for you — Tuesday") -> EmailMessage:
    sub = sub or subscriber()
    rendered = RenderedEmail(subject=subject, preheader="Top pick: attention", html=HTML, text=TEXT)
    return build_message(
        rendered,
        sub,
        sender_name=SENDER_NAME,
        sender_address=SENDER,
        list_id=LIST_ID,
        links=LINKS,
        now=NOW,
        message_id=new_message_id(SENDER),
    )


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def assert_wire_format(raw: bytes) -> None:
    without_crlf = raw.replace(b"\r\n", b"")
    assert b"\n" not in without_crlf, "bare LF on the wire"
    assert b"\r" not in without_crlf, "bare CR on the wire"
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert raw.isascii(), "the message must be 7-bit clean"


class Sleeps(list[float]):
    """An injected `sleep` that records the backoff instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# --- contract: the same checks for every mailer ------------------------------------------


@dataclass
class Delivery:
    mailer: Mailer
    received: Callable[[], list[bytes]]


@pytest.fixture(params=["outbox", "smtp"])
def delivery(request: pytest.FixtureRequest, tmp_path: Path, smtp_sink: Callable[..., SmtpSink]) -> Delivery:
    if request.param == "outbox":
        folder = tmp_path / "outbox"
        return Delivery(OutboxMailer(folder), lambda: [p.read_bytes() for p in sorted(folder.glob("*.eml"))])
    sink = smtp_sink()
    return Delivery(SmtpMailer(sink.settings(), password=None), lambda: [m.raw for m in sink.messages])


def test_contract_message_structure(delivery: Delivery) -> None:
    message = message_for()
    with delivery.mailer as mailer:
        result = mailer.send(message)
    assert (result.status, result.attempts) == ("sent", 1)
    [raw] = delivery.received()
    got = parse(raw)

    assert got.get_content_type() == "multipart/alternative"
    text, html = got.iter_parts()
    assert (text.get_content_type(), text.get_content_charset()) == ("text/plain", "utf-8")
    assert (html.get_content_type(), html.get_content_charset()) == ("text/html", "utf-8")
    # Line breaks inside a MIME text part are CRLF on the wire (RFC 2045 canonical form).
    assert text.get_content().replace("\r\n", "\n") == TEXT
    assert html.get_content().replace("\r\n", "\n") == HTML

    [sender] = got["From"].addresses  # a comma in a non-ASCII name must not split it in two
    assert (sender.display_name, sender.addr_spec) == (SENDER_NAME, SENDER)
    [recipient] = got["To"].addresses
    assert (recipient.display_name, recipient.addr_spec) == ("Alice Ünïcode", "alice@example.org")
    assert got["Subject"] == "5 papers for you — Tuesday"
    assert got["Date"].datetime == NOW
    assert got["Message-ID"] == message["Message-ID"]
    assert got["List-Id"] == f"Zoë’s Paper Digest weekly <{LIST_ID}>"  # specials dropped from the label
    assert got["List-Unsubscribe"] == f"<{LINKS.one_click}>, <{LINKS.unsubscribe_mailto}>"
    assert got["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_contract_wire_format_is_crlf_short_lines_and_literal_urls(delivery: Delivery) -> None:
    with delivery.mailer as mailer:
        mailer.send(message_for())
    [raw] = delivery.received()
    assert_wire_format(raw)
    # Mail clients read List-Unsubscribe raw: the URLs must not be hidden in RFC 2047 encoded words.
    assert f"List-Unsubscribe: <{LINKS.one_click}>,\r\n <{LINKS.unsubscribe_mailto}>\r\n".encode() in raw


def test_contract_untrusted_text_cannot_add_headers(delivery: Delivery) -> None:
    sub = subscriber(name="Mallory" + EVIL)
    with delivery.mailer as mailer:
        mailer.send(message_for(sub, subject="Hello" + EVIL))
    [raw] = delivery.received()
    got = parse(raw)
    assert "Bcc" not in got
    assert not re.search(rb"(?im)^bcc:", raw)
    assert got["Subject"] == "Hello Bcc: evil@x"
    assert [a.addr_spec for a in got["To"].addresses] == ["alice@example.org"]


def test_contract_a_batch_delivers_every_message(delivery: Delivery) -> None:
    with delivery.mailer as mailer:
        results = [mailer.send(message_for(subscriber(name))) for name in ("ann", "bob", "cyd")]
    assert [r.status for r in results] == ["sent"] * 3
    recipients = [[a.addr_spec for a in parse(raw)["To"].addresses] for raw in delivery.received()]
    assert sorted(recipients) == [["ann@example.org"], ["bob@example.org"], ["cyd@example.org"]]


# --- build_message ----------------------------------------------------------------------


def test_message_ids_are_unique_and_in_the_sender_domain() -> None:
    first, second = new_message_id(SENDER), new_message_id(SENDER)
    assert first != second
    assert re.fullmatch(r"<[^<>@\s]+@example\.org>", first)


def test_every_kind_of_line_break_in_a_subject_becomes_a_space() -> None:
    message = message_for(subject="a\r\nb\nc\rd\u2028e\x85f\x00g\t h")
    assert parse(serialise(message))["Subject"] == "a b c d e f g h"


def test_an_address_with_a_line_break_is_refused() -> None:
    bad = Subscriber(id="mallory", email="mallory@example.org" + EVIL, name="Mallory")
    with pytest.raises(DeliveryError, match=r"^subscriber mallory: 'mallory@example\.org Bcc: evil@x' is not a valid"):
        message_for(bad)


def test_a_bad_sender_address_names_the_config_key() -> None:
    rendered = RenderedEmail(subject="s", preheader="p", html=HTML, text=TEXT)
    with pytest.raises(DeliveryError, match=r"^sender\.address: 'digest\(x\)@example\.org' is not a valid"):
        build_message(rendered, subscriber(), sender_name=SENDER_NAME, sender_address="digest(x)@example.org",
                      list_id=LIST_ID, links=LINKS, now=NOW, message_id=new_message_id(SENDER))


# --- outbox -----------------------------------------------------------------------------


def test_outbox_names_files_by_date_recipient_and_id(tmp_path: Path) -> None:
    with OutboxMailer(tmp_path / "out") as mailer:
        first = mailer.send(message_for())
        second = mailer.send(message_for())
    files = sorted((tmp_path / "out").iterdir())
    assert [str(f) for f in files] == sorted([first.reply, second.reply])
    for path in files:
        assert re.fullmatch(r"20240305T073015-alice@example\.org-[0-9a-f]{8}\.eml", path.name)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """umask 022, as on most systems, so a file or folder made with default modes would be readable by all."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_outbox_files_and_the_folder_it_creates_are_private(tmp_path: Path, usual_umask: None) -> None:
    folder = tmp_path / "var" / "outbox"
    with OutboxMailer(folder) as mailer:
        written = Path(mailer.send(message_for()).reply)
    assert (mode(folder), mode(written)) == (0o700, 0o600)
    assert [p.name for p in folder.iterdir()] == [written.name]  # no temporary file left behind


def test_an_existing_outbox_folder_keeps_its_mode(tmp_path: Path, usual_umask: None) -> None:
    folder = tmp_path / "shared-outbox"
    folder.mkdir(mode=0o750)
    with OutboxMailer(folder) as mailer:
        written = Path(mailer.send(message_for()).reply)
    assert (mode(folder), mode(written)) == (0o750, 0o600)


def test_outbox_that_cannot_be_written_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the outbox should be")
    with pytest.raises(DeliveryError, match="cannot write .*delivery.outbox"):
        OutboxMailer(blocker).send(message_for())


# --- SMTP -------------------------------------------------------------------------------


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def smtp_mailer(sink: SmtpSink, sleeps: Sleeps, password: str | None = None, **overrides: object) -> SmtpMailer:
    return SmtpMailer(sink.settings(**overrides), password=password, sleep=sleeps)


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_with_auth_delivers(smtp_sink: Callable[..., SmtpSink], sleeps: Sleeps, security: str) -> None:
    sink = smtp_sink(security=security, username="digest", password="s3cret")
    with smtp_mailer(sink, sleeps, password="s3cret") as mailer:
        result = mailer.send(message_for())
    assert result == DeliveryResult("sent", "250 2.0.0 OK: queued as 1", 1)
    [received] = sink.messages
    assert received.mail_from == SENDER
    assert received.rcpt_tos == ("alice@example.org",)
    assert (received.login, received.tls) == ("digest", True)
    assert_wire_format(received.raw)


def test_starttls_not_offered_never_falls_back_to_plain_text(
    smtp_sink: Callable[..., SmtpSink], sleeps: Sleeps
) -> None:
    sink = smtp_sink()  # plain server, no STARTTLS
    expected = rf"127\.0\.0\.1:{sink.port} does not offer STARTTLS"
    with smtp_mailer(sink, sleeps, security="starttls") as mailer, pytest.raises(DeliveryError, match=expected):
        mailer.send(message_for())
    assert sink.messages == []
    assert sleeps == []  # not a transient failure: no retries


def test_untrusted_certificate_is_refused(smtp_sink: Callable[..., SmtpSink], sleeps: Sleeps) -> None:
    sink = smtp_sink(security="ssl")
    expected = "TLS with .* failed .*smtp.ca_file"
    with smtp_mailer(sink, sleeps, ca_file=None) as mailer, pytest.raises(DeliveryError, match=expected) as raised:
        mailer.send(message_for())
    assert not isinstance(raised.value, ServerUnavailable)  # a setup problem, not a server that is down
    assert (sink.messages, sleeps) == ([], [])


def test_wrong_password_raises(smtp_sink: Callable[..., SmtpSink], sleeps: Sleeps) -> None:
    sink = smtp_sink(security="starttls", username="digest", password="s3cret")
    expected = "rejected the login for 'digest' \\(535 .*NEWSLETTER_SMTP_PASSWORD"
    with smtp_mailer(sink, sleeps, password="wrong") as mailer, pytest.raises(DeliveryError, match=expected):
        mailer.send(message_for())
    assert (sink.messages, sink.connections, sleeps) == ([], 1, [])  # retrying a refused login cannot help


def test_username_without_password_raises(smtp_sink: Callable[..., SmtpSink], sleeps: Sleeps) -> None:
    sink = smtp_sink(security="starttls", username="digest", password="s3cret")
    with pytest.raises(DeliveryError, match="no password"):
        smtp_mailer(sink, sleeps, password=None).send(message_for())
    assert (sink.messages, sleeps) == ([], [])


def test_connection_refused_stops_the_batch_after_one_retry(refused_port: int, sleeps: Sleeps) -> None:
    settings = SmtpSettings(host="127.0.0.1", port=refused_port, security="none", retries=2, timeout=5)
    expected = rf"^cannot connect to SMTP server 127\.0\.0\.1:{refused_port} .*smtp\.host.*served by the next run$"
    with SmtpMailer(settings, password=None, sleep=sleeps) as mailer, pytest.raises(ServerUnavailable, match=expected):
        mailer.send(message_for())
    assert sleeps == [1.0]  # one pause before the one retry; smtp.retries is for 4xx replies


# --- a server that stops answering (defect 7) --------------------------------------------


def send_all(mailer: SmtpMailer, count: int) -> list[DeliveryResult | DeliveryError]:
    """Send `count` messages in one batch, as the pipeline would if it did not stop: what each send gave."""
    outcomes: list[DeliveryResult | DeliveryError] = []
    with mailer:
        for name in ("ann", "bob", "cyd", "dan", "eve")[:count]:
            try:
                outcomes.append(mailer.send(message_for(subscriber(name))))
            except DeliveryError as exc:
                outcomes.append(exc)
    return outcomes


@pytest.mark.parametrize("stall_at", ["greeting", "EHLO", "MAIL", "DATA"])
def test_a_stalled_server_costs_one_retry_for_the_whole_batch(
    stalling_server: Callable[[StallPoint], StallingServer], sleeps: Sleeps, stall_at: StallPoint
) -> None:
    server = stalling_server(stall_at)
    mailer = SmtpMailer(server.settings(timeout=0.5, retries=2), password=None, sleep=sleeps)
    outcomes = send_all(mailer, 4)
    assert [type(o) for o in outcomes] == [ServerUnavailable] * 4
    assert server.connections == 2  # the first attempt and its one retry; later sends stay off the network
    assert sleeps == [1.0]
    where = rf"(cannot connect to )?SMTP server 127\.0\.0\.1:{server.port}"
    expected = rf"^{where} .*\(timed out\); no reply within smtp\.timeout \(0\.5 s\).*served by the next run$"
    assert re.match(expected, str(outcomes[0]))


def test_a_new_batch_tries_a_stalled_server_again(
    stalling_server: Callable[[StallPoint], StallingServer], sleeps: Sleeps
) -> None:
    server = stalling_server("DATA")
    mailer = SmtpMailer(server.settings(), password=None, sleep=sleeps)
    send_all(mailer, 2)
    assert [type(o) for o in send_all(mailer, 2)] == [ServerUnavailable] * 2
    assert server.connections == 4


def test_one_stall_at_the_end_of_data_is_retried_on_a_fresh_session(
    smtp_sink: Callable[..., SmtpSink], sleeps: Sleeps
) -> None:
    sink = smtp_sink(stall_data=(1,))
    outcomes = send_all(SmtpMailer(sink.settings(timeout=0.5), password=None, sleep=sleeps), 3)
    assert [(o.status, o.attempts) for o in outcomes if isinstance(o, DeliveryResult)] == [("sent", 2), ("sent", 1),
                                                                                           ("sent", 1)]
    assert [m.rcpt_tos for m in sink.messages] == [("ann@example.org",), ("bob@example.org",), ("cyd@example.org",)]
    assert sink.connections == 2


def test_a_second_timeout_in_the_batch_stops_it_even_after_a_success(
    smtp_sink: Callable[..., SmtpSink], sleeps: Sleeps
) -> None:
    sink = smtp_sink(stall_data=(1, 3))  # ann's first DATA and bob's DATA are never answered
    outcomes = send_all(SmtpMailer(sink.settings(timeout=0.5), password=None, sleep=sleeps), 3)
    assert [type(o) for o in outcomes] == [DeliveryResult, ServerUnavailable, ServerUnavailable]
    assert [m.rcpt_tos for m in sink.messages] == [("ann@example.org",)]
    assert sink.connections == 2  # cyd's send did not connect


def test_drops_far_apart_are_each_retried(smtp_sink: Callable[..., SmtpSink], sleeps: Sleeps) -> None:
    sink = smtp_sink(drop_data=(1, 3))  # ann's first DATA and bob's first DATA: each followed by a success
    outcomes = send_all(smtp_mailer(sink, sleeps), 3)
    assert [(o.status, o.attempts) for o in outcomes if isinstance(o, DeliveryResult)] == [("sent", 2), ("sent", 2),
                                                                                           ("sent", 1)]
    assert (len(sink.messages), sink.connections, sleeps) == (3, 3, [1.0, 1.0])


def test_a_server_that_drops_every_data_stops_the_batch(smtp_sink: Callable[..., SmtpSink], sleeps: Sleeps) -> None:
    sink = smtp_sink(drop_data=2)
    outcomes = send_all(smtp_mailer(sink, sleeps, retries=5), 2)
    assert [type(o) for o in outcomes] == [ServerUnavailable] * 2
    assert re.match(r"^SMTP server .* lost the connection .*keeps dropping the connection; .*next run$",
                    str(outcomes[0]))
    assert (sink.messages, sink.connections, sleeps) == ([], 2, [1.0])


def test_untrusted_name_does_not_reach_the_envelope(smtp_sink: Callable[..., SmtpSink], sleeps: Sleeps) -> None:
    sink = smtp_sink()
    with smtp_mailer(sink, sleeps) as mailer:
        mailer.send(message_for(subscriber(name="Mallory" + EVIL + ", evil2@x")))
    assert [m.rcpt_tos for m in sink.messages] == [("alice@example.org",)]


def test_rejected_recipient_fails_and_the_batch_goes_on(smtp_sink: Callable[..., SmtpSink], sleeps: Sleeps) -> None:
    sink = smtp_sink(reject=("bob@example.org",))
    with smtp_mailer(sink, sleeps) as mailer:
        bob = mailer.send(message_for(subscriber("bob")))
        cyd = mailer.send(message_for(subscriber("cyd")))
    assert (bob.status, bob.attempts) == ("failed", 1)
    assert bob.reply.startswith("550 5.1.1 <bob@example.org>: recipient address rejected")
    assert (cyd.status, cyd.attempts) == ("sent", 1)
    assert [m.rcpt_tos for m in sink.messages] == [("cyd@example.org",)]
    assert sink.connections == 1
    assert sleeps == []


def test_transient_reply_is_retried_then_delivered(smtp_sink: Callable[..., SmtpSink], sleeps: Sleeps) -> None:
    sink = smtp_sink(defer_data=1)
    with smtp_mailer(sink, sleeps, retries=2) as mailer:
        result = mailer.send(message_for())
    assert (result.status, result.attempts) == ("sent", 2)
    assert len(sink.messages) == 1
    assert sleeps == [1.0]
    assert sink.connections == 2  # the retry starts on a fresh session


def test_dropped_connection_is_retried_on_a_new_one(smtp_sink: Callable[..., SmtpSink], sleeps: Sleeps) -> None:
    sink = smtp_sink(drop_data=1)
    with smtp_mailer(sink, sleeps, retries=1) as mailer:
        result = mailer.send(message_for())
    assert (result.status, result.attempts) == ("sent", 2)
    assert len(sink.messages) == 1
    assert sink.connections == 2
    assert sleeps == [1.0]


def test_retries_exhausted_is_failed_with_the_last_reply(smtp_sink: Callable[..., SmtpSink], sleeps: Sleeps) -> None:
    sink = smtp_sink(defer_data=10)
    with smtp_mailer(sink, sleeps, retries=2) as mailer:
        result = mailer.send(message_for())
    assert result == DeliveryResult("failed", "451 4.3.0 temporary failure, try again later", 3, transient=True)
    assert sink.messages == []
    assert sleeps == [1.0, 2.0]


def test_a_batch_uses_one_connection(smtp_sink: Callable[..., SmtpSink], sleeps: Sleeps) -> None:
    sink = smtp_sink(security="starttls", username="digest", password="s3cret")
    mailer = smtp_mailer(sink, sleeps, password="s3cret")
    with mailer:
        for name in ("ann", "bob", "cyd"):
            assert mailer.send(message_for(subscriber(name))).status == "sent"
    assert (len(sink.messages), sink.connections) == (3, 1)
    with mailer:  # the first batch closed its session; the next opens its own
        assert mailer.send(message_for()).status == "sent"
    assert (len(sink.messages), sink.connections) == (4, 2)


# --- mailer_from_config -----------------------------------------------------------------


def test_config_outbox_writes_to_the_resolved_folder(tmp_path: Path) -> None:
    config = config_from_mapping({"delivery": {"method": "outbox", "outbox": "var/out"}}, tmp_path)
    with mailer_from_config(config) as mailer:
        result = mailer.send(message_for())
    [written] = (tmp_path / "var" / "out").iterdir()
    assert Path(result.reply) == written


def test_config_smtp_uses_env_password_and_relative_ca_file(
    smtp_sink: Callable[..., SmtpSink], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = smtp_sink(security="ssl", username="digest", password="s3cret")
    assert sink.ca_file == tmp_path / "smtp-ca.pem"
    smtp = {"host": sink.host, "port": sink.port, "security": "ssl", "username": "digest", "ca_file": "smtp-ca.pem"}
    config = config_from_mapping({"delivery": {"method": "smtp"}, "smtp": smtp}, tmp_path)
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "s3cret")
    with mailer_from_config(config) as mailer:
        assert mailer.send(message_for()).status == "sent"
    assert len(sink.messages) == 1


def test_config_smtp_without_password_env_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEWSLETTER_SMTP_PASSWORD", raising=False)
    config = config_from_mapping({"delivery": {"method": "smtp"}, "smtp": {"username": "digest"}}, tmp_path)
    with pytest.raises(ConfigError, match="NEWSLETTER_SMTP_PASSWORD"):
        mailer_from_config(config)


AWKWARD = ("trailing spaces   \n\ttabs\tinside\t\n=3D is not an escape = sign\n.\n..leading dots\nFrom the start\n"
           + "x" * 300 + "\n" + "é" * 120 + "\nmixed\r\nline\rends\n\nsoft-hyphen\u00ad and emoji 🎉\n" + "a " * 200)


@pytest.mark.parametrize("text", [AWKWARD, "", "no final newline", "\n\n\n"])
def test_built_bytes_decode_to_what_the_stdlib_would_have_sent(text: str) -> None:
    """The bytes are written directly, not by EmailMessage: a mail reader decodes the same parts and headers."""
    rendered = RenderedEmail(subject="Über " + "long subject " * 10, preheader="p", html=f"<p>{text}</p>", text=text)
    ours = parse(serialise(build_message(rendered, subscriber(), sender_name=SENDER_NAME, sender_address=SENDER,
                                         list_id=LIST_ID, links=LINKS, now=NOW, message_id="<id@example.org>")))
    stdlib = EmailMessage(policy=email.policy.SMTP)
    stdlib.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    stdlib.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    theirs = parse(stdlib.as_bytes())
    (our_text, our_html), (their_text, their_html) = ours.iter_parts(), theirs.iter_parts()
    assert our_text.get_content() == their_text.get_content()
    # The HTML goes as 7bit, other characters as references: what an HTML reader sees is the same.
    assert our_html["Content-Transfer-Encoding"] == "7bit"
    assert html.unescape(our_html.get_content()) == html.unescape(their_html.get_content())
    assert [p.get_content_type() for p in ours.iter_parts()] == ["text/plain", "text/html"]
    assert ours["Subject"] == rendered.subject.strip() and ours["MIME-Version"] == "1.0"
    assert_wire_format(serialise(build_message(rendered, subscriber(), sender_name=SENDER_NAME, sender_address=SENDER,
                                               list_id=LIST_ID, links=LINKS, now=NOW, message_id="<id@x.org>")))


@pytest.mark.parametrize("name", ["Ada Lovelace", "O'Brien-Smith", "", "Ada Lovelace " + "x" * 70, "Ada (the) Byron",
                                  "a=?utf-8?q?x?=", "Zoë"])
def test_an_address_header_reads_back_as_the_name_and_address_written(name: str) -> None:
    got = parse(serialise(message_for(subscriber(name=name))))
    [recipient] = got["To"].addresses
    assert (recipient.display_name, recipient.addr_spec) == (name, "alice@example.org")
    assert_wire_format(serialise(message_for(subscriber(name=name))))


def _subjects(count: int) -> Iterator[str]:
    """Subjects of every shape the quick folder meets: short, just over a line, long, with a word too long for a
    line, with punctuation that means something in structured headers."""
    import random
    import string

    rng = random.Random(7)
    letters = string.ascii_letters + string.digits + ".,:;()<>@!?'\"-/_&%#*+[]{}|~^`$\\"
    for _ in range(count):
        words = ["".join(rng.choice(letters) for _ in range(rng.choice([1, 2, 3, 5, 8, 12, 20, 40, 90])))
                 for _ in range(rng.randint(1, 40))]
        yield " ".join(words)


def test_subjects_are_folded_exactly_as_the_email_package_folds_them() -> None:
    from newsletter.deliver.message import WIRE_POLICY, _fold, _fold_plain

    quick = 0
    for subject in _subjects(3000):
        theirs = WIRE_POLICY.header_factory("Subject", subject).fold(policy=WIRE_POLICY).encode("ascii")
        assert _fold("Subject", subject) == theirs, subject
        quick += _fold_plain("Subject", subject) is not None
    assert quick > 300  # the quick way was taken, not only the email package's


def _html_of(html_text: str) -> EmailMessage:
    rendered = RenderedEmail(subject="s", preheader="p", html=html_text, text="t")
    message = parse(serialise(build_message(rendered, subscriber(), sender_name=SENDER_NAME, sender_address=SENDER,
                                            list_id=LIST_ID, links=LINKS, now=NOW, message_id="<id@example.org>")))
    assert_wire_format(serialise(message))
    part = message.get_body(("html",))
    assert isinstance(part, EmailMessage)
    return part


@pytest.mark.parametrize("html_text, why", [
    ("<style>p::before { content: '→' }</style><p>Zoë</p>", "a reference in <style> would be shown as it is"),
    ("<script>let s = 'é'</script><p>x</p>", "nor in <script>"),
    ("<p>é</p><STYLE media=x>p::after { content: '…' }</STYLE><p>x</p>", "any case, after other elements"),
    ("<style>p { color: red }</style><p>é</p><script>let s = 'é'", "an element left open runs to the end"),
    ("<p>" + "x" * 999 + "</p>", "a line over SMTP's 998 characters"),
    ("<p>a\0b</p>", "NUL is not allowed in 7bit text"),
])
def test_html_that_cannot_go_as_7bit_goes_quoted_printable_unchanged(html_text: str, why: str) -> None:
    part = _html_of(html_text)
    assert part["Content-Transfer-Encoding"] == "quoted-printable", why
    assert part.get_content().replace("\r\n", "\n") == html_text + "\n"


def test_html_goes_as_7bit_with_other_characters_as_references() -> None:
    part = _html_of("<title>Zoë’s digest</title><style>p { color: red }</style><p title=\"café\">naïve &amp; 🎉</p>")
    assert part["Content-Transfer-Encoding"] == "7bit"
    text = part.get_content()
    assert text.isascii() and "&#235;" in text and "&#127881;" in text
    assert html.unescape(text) == html.unescape("<title>Zoë’s digest</title><style>p { color: red }</style>"
                                                "<p title=\"café\">naïve &amp; 🎉</p>\r\n")


def test_a_7bit_html_line_that_looks_like_the_boundary_sends_the_part_quoted_printable(monkeypatch) -> None:
    from newsletter.deliver import message as wire

    monkeypatch.setattr(wire, "_boundary", lambda: b"===============1234==")
    part = _html_of("<p>\n--===============1234==\n</p>")
    assert part["Content-Transfer-Encoding"] == "quoted-printable"
    assert "--===============1234==" in part.get_content()


@pytest.mark.parametrize("raw", [
    serialise(message_for(subscriber(name="Zoë O'Brien-Smith, PhD " + "x" * 60),
                          subject="Über " + "a long subject that folds " * 8)),
    serialise(message_for(subject="Hello" + EVIL)),
    b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org;\r\n\tb=abc\r\n\tdef\r\nX-Empty:\r\nFrom: a@example.org\r\n"
    b"To: b@example.org\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\nbody\r\n",
])
def test_a_stored_message_has_the_headers_the_parser_reads_from_its_bytes(raw: bytes) -> None:
    from email.parser import BytesParser

    from newsletter.deliver.message import WIRE_POLICY, stored_message

    head, _, _ = raw.partition(b"\r\n\r\n")  # the header block as the stdlib's parser reads it
    theirs = BytesParser(EmailMessage, policy=WIRE_POLICY).parsebytes(head + b"\r\n\r\n", headersonly=True)
    ours = stored_message(raw)
    assert list(ours.raw_items()) == list(theirs.raw_items()) and len(list(ours.raw_items())) >= 4
    for name in ("From", "To", "Subject", "Date", "Message-ID", "DKIM-Signature"):
        assert str(ours[name]) == str(theirs[name])
    assert serialise(ours) == raw


def test_addresses_read_the_same_as_the_email_package_reads_them() -> None:
    import random
    import string
    from email.utils import getaddresses

    from newsletter.deliver.message import _PLAIN_ADDRESS, addresses, stored_message

    rng = random.Random(3)
    name_chars = string.ascii_letters + string.digits + " !#$%&'*+/^_`{|}~-.,;:\"()<>@=?[]\\"
    local_chars = string.ascii_letters + string.digits + ".!#$%&'*+/=?^_`{|}~-\""
    quick = 0
    for _ in range(20000):
        name = "".join(rng.choice(name_chars) for _ in range(rng.randint(0, 12)))
        addr = ("".join(rng.choice(local_chars) for _ in range(rng.randint(1, 10))) + "@"
                + "".join(rng.choice(string.ascii_lowercase + ".-") for _ in range(rng.randint(1, 10))))
        value = rng.choice([f"{name} <{addr}>", addr, f"<{addr}>", f"{name}<{addr}>", f"{name} <{addr}>, {addr}"])
        raw = f"To: {value}\r\n\r\n".encode()
        assert addresses(stored_message(raw), "To") == [a for _, a in getaddresses([value]) if a], value
        quick += _PLAIN_ADDRESS.fullmatch(value) is not None
    assert quick > 5000  # the quick way was taken, not only the email package's
