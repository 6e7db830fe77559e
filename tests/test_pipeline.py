"""End to end: pages in, digests out over a real SMTP server (aiosmtpd on 127.0.0.1, STARTTLS + AUTH)."""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timedelta
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from builders import MailerWrapper

from helpers import REPO, SAMPLE_PAGES, at
from newsletter import links, pipeline
from newsletter.config import Config, config_from_mapping
from newsletter.deliver import DeliveryResult, SmtpMailer
from newsletter.errors import NewsletterError, RunLocked
from newsletter.models import DeliveryStatus
from newsletter.store import Store, open_store
from smtp_sink import SmtpSink

T_INGEST = at("2026-11-20", 6)
T_DIGEST = at("2026-11-20", 8)
SECRET = "test-signing-key"

HOSTILE_TITLE = '<script>alert(1)</script> Graph neural networks for "><img src=x onerror=alert(1)> molecules'
MALICIOUS_PAGE = "\n".join([
    "crawled",
    "Nov 21",
    "",
    HOSTILE_TITLE,
    "We predict molecular properties with graph neural networks. The model passes messages over atoms and "
    "bonds. It beats strong baselines on molecule benchmarks. Code: https://github.com/example/gnn-mol.",
    "",
    "Retrieval-augmented generation with a quantized reader",
    "We quantize the reader of a retrieval-augmented generation system to four bits. Speculative decoding "
    "recovers the speed lost to retrieval. Long-context benchmarks show no loss in accuracy at half the memory.",
])


@pytest.fixture(autouse=True)
def signing_key(monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)


def make_project(tmp_path: Path, sink: SmtpSink | None = None, **digest: Any) -> Config:
    """A project folder with the shipped subscribers, the sample pages in the inbox and SMTP to `sink`."""
    shutil.copytree(REPO / "subscribers", tmp_path / "subscribers", ignore=shutil.ignore_patterns("*.md"))
    inbox = tmp_path / "var" / "inbox"
    inbox.mkdir(parents=True)
    for page in SAMPLE_PAGES.glob("*.txt"):
        shutil.copy(page, inbox)
    data: dict[str, Any] = {"base_url": "https://digest.example.org", "digest": {"lookback_days": 7, **digest}}
    if sink is not None:
        data["delivery"] = {"method": "smtp"}
        data["smtp"] = sink.settings().model_dump(mode="json", exclude_none=True)
    return config_from_mapping(data, tmp_path)


def by_recipient(sink: SmtpSink) -> dict[str, list[EmailMessage]]:
    found: dict[str, list[EmailMessage]] = {}
    for received in sink.messages:
        for rcpt in received.rcpt_tos:
            found.setdefault(rcpt, []).append(received.message)
    return found


def parts(message: EmailMessage) -> tuple[str, str]:
    text, html = (part.get_content() for part in message.iter_parts())
    return text, html


class Elements(HTMLParser):
    """Collects tags, attributes and text of an HTML document."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def hrefs(self) -> list[str]:
        return [attrs["href"] or "" for tag, attrs in self.tags if tag == "a" and "href" in attrs]


def flat(text: str) -> str:
    """The text part wraps long lines; compare titles with whitespace collapsed."""
    return " ".join(text.split())


# In the text part each paper opens with "N. Title" (wrapped) and then its link.
PICKED = re.compile(r"^\d+\. (.+?)\n +https?://", re.MULTILINE | re.DOTALL)


def picked_titles(message: EmailMessage) -> list[str]:
    return [flat(title) for title in PICKED.findall(parts(message)[0])]


def titles_in(message: EmailMessage, store: Store) -> set[str]:
    titles = set(picked_titles(message))
    assert titles <= {p.title for p in store.papers.get()}, "every picked title is a stored paper"
    return titles


def test_three_subscribers_get_three_different_digests_then_only_new_papers(tmp_path, sink):
    config = make_project(tmp_path, sink)
    ingested = pipeline.ingest_pages(config, T_INGEST)
    assert (ingested.count("ingested"), ingested.new_papers, ingested.duplicates) == (3, 21, 3)

    report = pipeline.run_digests(config, T_DIGEST)
    assert report.ok and report.count("sent") == 3
    received = by_recipient(sink)
    assert sorted(received) == ["alice@example.org", "bob@example.org", "carol@example.org"]
    assert all(r.tls and r.login == "digest" for r in sink.messages)

    with open_store(config.store_path) as store:
        picked = {who: titles_in(msgs[0], store) for who, msgs in received.items()}
    assert all(picked.values())
    assert len({frozenset(titles) for titles in picked.values()}) == 3, "three different digests"
    assert any("Retrosynthesis" in t for t in picked["alice@example.org"])
    assert any("Reinforcement Learning" in t for t in picked["bob@example.org"])
    assert not any("Autonomous Driving" in t for t in picked["bob@example.org"])  # bob excludes it

    # Run again with nothing new: nobody gets an email.
    again = pipeline.run_digests(config, T_DIGEST + timedelta(days=1))
    assert again.count("nothing new") == 3 and again.count("sent") == 0
    assert {r.detail for r in again.results} == {"no new papers since the last digest"}
    assert len(sink.messages) == 3

    # A new page: only its new papers go out, and never one already sent.
    (config.inbox / "2026-11-21.txt").write_text(MALICIOUS_PAGE, encoding="utf-8")
    assert pipeline.ingest_pages(config, T_DIGEST + timedelta(days=1, hours=1)).new_papers == 2
    third = pipeline.run_digests(config, T_DIGEST + timedelta(days=2))
    # The GNN paper is alice's, the retrieval-augmented one carol's; nothing in it is bob's.
    assert {r.subscriber_id: (r.outcome, r.papers) for r in third.results} == \
        {"alice": ("sent", 1), "bob": ("nothing new", 0), "carol": ("sent", 1)}
    with open_store(config.store_path) as store:
        new_ids = {p.id for p in store.papers.get() if p.first_seen > T_DIGEST + timedelta(days=1)}
        for who, messages in by_recipient(sink).items():
            seen = [titles_in(m, store) for m in messages]
            assert sum(len(s) for s in seen) == len(set().union(*seen)), f"{who} got a paper twice"
            if len(messages) > 1:
                newest = {p.title for p in store.papers.get(new_ids)}
                assert seen[-1] <= newest


def test_message_structure_headers_links_and_escaping(tmp_path, sink):
    config = make_project(tmp_path, sink)
    (config.inbox / "2026-11-21.txt").write_text(MALICIOUS_PAGE, encoding="utf-8")
    pipeline.ingest_pages(config, T_INGEST)
    pipeline.run_digests(config, T_DIGEST)
    message = by_recipient(sink)["alice@example.org"][0]
    raw = next(r.raw for r in sink.messages if "alice@example.org" in r.rcpt_tos)

    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["From"].addresses[0].display_name == "Paper Digest"
    assert message["To"].addresses[0].addr_spec == "alice@example.org"
    assert message["Message-ID"] and message["Date"] and message["List-Id"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert "\n" not in message["Subject"] and "20 Nov 2026" in message["Subject"]

    # Signed, per-subscriber links: List-Unsubscribe and the footer point at the same signed URLs.
    one_click, mailto = (u.strip(" <>") for u in message["List-Unsubscribe"].split(","))
    assert one_click.startswith("https://digest.example.org/unsubscribe/") and mailto.startswith("mailto:")
    assert links.verify(SECRET, "unsubscribe", one_click.rsplit("/", 1)[1]) == "alice"
    text, html = parts(message)
    page = Elements(html)
    manage = [h for h in page.hrefs() if h.startswith("https://digest.example.org/preferences/")]
    assert manage and links.verify(SECRET, "manage", manage[0].rsplit("/", 1)[1]) == "alice"
    assert one_click in page.hrefs() and one_click in text
    text = flat(text)
    with pytest.raises(links.BadToken):
        links.verify(SECRET, "unsubscribe", manage[0].rsplit("/", 1)[1])  # a manage token cannot unsubscribe

    # The page's hostile title arrives as text, never as markup.
    assert not [t for t, a in page.tags if t == "script" or any(k.startswith("on") for k in a)]
    assert "<script>alert(1)</script> Graph neural networks" in "".join(page.text)
    assert "https://github.com/example/gnn-mol" in page.hrefs()
    assert "Why this paper" in html and "graph neural networks" in text


def test_a_page_stamped_before_the_last_digest_is_still_delivered(tmp_path):
    """An ingest whose clock reads earlier than the last digest (or that committed while it ran)."""
    config = make_project(tmp_path)
    pipeline.ingest_pages(config, T_INGEST)
    assert pipeline.run_digests(config, T_DIGEST).count("sent") == 3
    (config.inbox / "late.txt").write_text(MALICIOUS_PAGE, encoding="utf-8")
    assert pipeline.ingest_pages(config, T_DIGEST - timedelta(hours=1)).new_papers == 2
    report = pipeline.run_digests(config, T_DIGEST + timedelta(days=1))
    assert {r.subscriber_id: r.outcome for r in report.results} == {"alice": "sent", "bob": "nothing new",
                                                                    "carol": "sent"}
    assert {r.subscriber_id: r.candidates for r in report.results}["bob"] == 2


def test_a_rejected_recipient_is_recorded_and_retried_next_slot(tmp_path, smtp_sink):
    sink = smtp_sink(reject=("bob@example.org",))
    config = make_project(tmp_path, sink)
    pipeline.ingest_pages(config, T_INGEST)
    report = pipeline.run_digests(config, T_DIGEST)
    outcomes = {r.subscriber_id: r for r in report.results}
    assert outcomes["bob"].outcome == "failed" and outcomes["bob"].detail.startswith("550")
    assert outcomes["alice"].outcome == outcomes["carol"].outcome == "sent"
    assert not report.ok
    with open_store(config.store_path) as store:
        assert store.ledger.deliveries_for("bob")[0].status == "failed"
        assert store.ledger.delivered_paper_ids("bob") == set()

    # The address is fixed: a second run in the same slot doubles nothing, not even bob's failed one...
    fixed = smtp_sink()
    config = config_from_mapping({**config.settings.model_dump(mode="json", exclude_none=True),
                                  "smtp": fixed.settings().model_dump(mode="json", exclude_none=True)}, tmp_path)
    again = pipeline.run_digests(config, T_DIGEST + timedelta(hours=1))
    assert {r.outcome for r in again.results} == {"already done"} and fixed.messages == []
    # ...and the next slot sends bob the papers he missed, and only bob.
    retry = pipeline.run_digests(config, T_DIGEST + timedelta(days=1))
    assert {r.subscriber_id: r.outcome for r in retry.results} == {"alice": "nothing new", "bob": "sent",
                                                                   "carol": "nothing new"}
    assert outcomes["bob"].papers == retry.results[1].papers


class CrashAfterSend(MailerWrapper):
    """A real SMTP mailer whose process 'dies' right after the server accepted the Nth message."""

    def __init__(self, inner: SmtpMailer, crash_after: int) -> None:
        super().__init__(inner)
        self.left = crash_after

    def send(self, message: EmailMessage) -> DeliveryResult:
        result = self.inner.send(message)
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt("power cut between send and record")
        return result


def test_a_crash_mid_run_resends_the_one_in_flight_with_its_message_id_and_skips_nobody(tmp_path, smtp_sink):
    sink = smtp_sink()
    config = make_project(tmp_path, sink)
    pipeline.ingest_pages(config, T_INGEST)
    crashing = CrashAfterSend(SmtpMailer(config.settings.smtp, password=None), crash_after=2)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_digests(config, T_DIGEST, mailer=crashing)
    assert len(sink.messages) == 2  # alice and bob received theirs; carol was never tried
    with open_store(config.store_path) as store:
        assert [r.status for r in store.ledger.deliveries_in(list(DeliveryStatus))] == ["sent", "sending", "queued"]

    report = pipeline.run_digests(config, T_DIGEST + timedelta(minutes=5))
    assert [r.subscriber_id for r in report.interrupted] == ["bob"]
    outcomes = {r.subscriber_id: r.outcome for r in report.results}
    assert outcomes == {"alice": "already done", "bob": "sent", "carol": "sent"}
    received = by_recipient(sink)
    assert sorted(received) == ["alice@example.org", "bob@example.org", "carol@example.org"]
    assert len(received["alice@example.org"]) == len(received["carol@example.org"]) == 1
    # bob's may have arrived before the crash: the repeat is the same message, which clients collapse.
    first, second = received["bob@example.org"]
    assert first["Message-ID"] == second["Message-ID"]
    raw = [m.raw for m in sink.messages if m.rcpt_tos == ("bob@example.org",)]
    assert raw[0] == raw[1]


def test_an_unreachable_server_records_nothing_and_the_next_run_sends_all(tmp_path, smtp_sink, refused_port):
    data = {"delivery": {"method": "smtp"}, "smtp": {"host": "127.0.0.1", "port": refused_port, "security": "none",
                                                      "retries": 0, "timeout": 2}}
    config = make_project(tmp_path)
    config = config_from_mapping(data, tmp_path)
    pipeline.ingest_pages(config, T_INGEST)
    down = pipeline.run_digests(config, T_DIGEST)
    assert {r.outcome for r in down.results} == {"not sent"} and not down.ok
    assert "127.0.0.1" in down.results[0].detail

    sink = smtp_sink()
    config = config_from_mapping({**data, "smtp": sink.settings().model_dump(mode="json", exclude_none=True)},
                                 tmp_path)
    up = pipeline.run_digests(config, T_DIGEST + timedelta(hours=1))
    assert up.count("sent") == 3 and len(sink.messages) == 3


def test_dry_run_and_preview_record_nothing_and_match_the_real_digest(tmp_path, sink):
    config = make_project(tmp_path, sink)
    pipeline.ingest_pages(config, T_INGEST)
    dry = pipeline.run_digests(config, T_DIGEST, dry_run=True)
    assert dry.count("would send") == 3 and sink.messages == []

    files = pipeline.preview(config, "carol", tmp_path / "preview", T_DIGEST)
    assert files.html.read_text().startswith("<!doctype html>")
    assert files.eml.read_bytes().count(b"\r\n") > 10
    preview_titles = PICKED.findall(files.text.read_text())

    pipeline.run_digests(config, T_DIGEST)
    sent = picked_titles(by_recipient(sink)["carol@example.org"][0])
    assert sent and [flat(t) for t in preview_titles] == sent


def test_nothing_relevant_means_no_email_unless_configured(tmp_path):
    config = make_project(tmp_path)
    (config.subscribers_dir / "dan.yaml").write_text("email: dan@example.org\ntopics: [medieval poetry]\n")
    pipeline.ingest_pages(config, T_INGEST)
    report = pipeline.run_digests(config, T_DIGEST)
    dan = next(r for r in report.results if r.subscriber_id == "dan")
    assert dan.outcome == "nothing new" and dan.candidates > 0
    assert dan.detail == "no paper passed the minimum relevance"
    assert not any("dan@" in p.name for p in config.outbox.iterdir())

    config = make_project(tmp_path / "again", send_empty=True)
    (config.subscribers_dir / "dan.yaml").write_text("email: dan@example.org\ntopics: [medieval poetry]\n")
    pipeline.ingest_pages(config, T_INGEST)
    report = pipeline.run_digests(config, T_DIGEST)
    assert next(r for r in report.results if r.subscriber_id == "dan").outcome == "sent"
    assert any("dan@" in p.name for p in config.outbox.iterdir())


def test_bad_and_paused_subscribers_do_not_stop_the_others(tmp_path):
    config = make_project(tmp_path)
    (config.subscribers_dir / "eve.yaml").write_text("email: eve@example.org\ntopics: [x]\nshedule: daily\n")
    (config.subscribers_dir / "fay.yaml").write_text("email: fay@example.org\ntopics: [graphs]\nstatus: paused\n")
    pipeline.ingest_pages(config, T_INGEST)
    report = pipeline.run_digests(config, T_DIGEST)
    assert report.count("sent") == 3 and not report.ok
    assert len(report.profile_errors) == 1
    assert report.profile_errors[0].endswith("eve.yaml: shedule: unknown key (did you mean 'schedule'?); allowed "
                                             "keys here: email, exclude, liked, max_papers, name, schedule, status, "
                                             "topics. Remove it or fix its spelling")
    assert {r.subscriber_id: r.outcome for r in report.results}["fay"] == "paused"
    assert len(list(config.outbox.glob("*.eml"))) == 3


def test_a_new_subscriber_only_gets_papers_within_the_lookback(tmp_path):
    config = make_project(tmp_path, lookback_days=1)
    pipeline.ingest_pages(config, T_INGEST - timedelta(days=3))
    report = pipeline.run_digests(config, T_DIGEST)
    assert {r.outcome for r in report.results} == {"nothing new"}
    assert all(r.candidates == 0 for r in report.results)


def test_two_runs_at_once_are_refused_even_through_a_symlink(tmp_path):
    config = make_project(tmp_path)
    pipeline.ingest_pages(config, T_INGEST)
    (tmp_path / "elsewhere").symlink_to(config.store_path.parent)
    via_link = tmp_path / "elsewhere" / config.store_path.name
    with open_store(via_link) as store, store.locks.hold("digest"):
        with pytest.raises(RunLocked, match="another newsletter digest is running"):
            pipeline.run_digests(config, T_DIGEST)
    assert not config.outbox.exists(), "the refused run sent nothing"
    assert pipeline.run_digests(config, T_DIGEST).count("sent") == 3  # and runs once the lock is free


def test_an_unknown_subscriber_is_a_clear_error(tmp_path):
    config = make_project(tmp_path)
    with pytest.raises(NewsletterError, match="no subscriber 'zed'.*known: alice, bob, carol"):
        pipeline.preview(config, "zed", tmp_path / "out", T_DIGEST)


def test_now_must_be_timezone_aware(tmp_path):
    config = make_project(tmp_path)
    with pytest.raises(ValueError):
        pipeline.ingest_pages(config, datetime(2026, 11, 20))


BILLION_LAUGHS = """email: eve@example.org
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
topics: [*g, *g, *g, *g, *g, *g, *g, *g, *g]
"""


def test_a_hostile_subscriber_file_is_one_short_error_and_everyone_else_is_served(tmp_path):
    config = make_project(tmp_path)
    (config.subscribers_dir / "eve.yaml").write_text(BILLION_LAUGHS)  # 9**8 = 43 million strings if expanded
    pipeline.ingest_pages(config, T_INGEST)
    report = pipeline.run_digests(config, T_DIGEST)
    assert report.count("sent") == 3
    assert len(report.profile_errors) == 1
    error = report.profile_errors[0]
    assert "eve.yaml" in error and "alias" in error and "\n" not in error and len(error) < 300


def test_a_run_ranked_in_blocks_picks_for_each_subscriber_what_planning_them_alone_picks(tmp_path):
    from builders import readers_project

    from newsletter.config import load_config
    from newsletter.planning import FIRST_BLOCK, plan_digests

    readers = FIRST_BLOCK + 40  # a first block and part of the next
    config = load_config(readers_project(tmp_path, readers, topic_pool=30, seed=5, pages=SAMPLE_PAGES,
                                         config={"digest": {"lookback_days": 7}}))
    pipeline.ingest_pages(config, T_INGEST)
    with pipeline.open_context(config) as ctx:
        subscribers = list(ctx.subscribers.load_all().subscribers)
        together = plan_digests(ctx.store, ctx.make_ranker, ctx.policy, subscribers, T_DIGEST)
        alone = [plan_digests(ctx.store, ctx.make_ranker, ctx.policy, [s], T_DIGEST)[0]
                 for s in subscribers[FIRST_BLOCK - 3 : FIRST_BLOCK + 3]]  # either side of the seam

    def picks(digest: Any) -> list[tuple[int, Any]]:
        return [(s.paper.id, s.reason) for s in digest.papers]

    assert len(together) == readers and sum(bool(d.papers) for d in together) > readers // 2
    seam = together[FIRST_BLOCK - 3 : FIRST_BLOCK + 3]
    assert [picks(d) for d in seam] == [picks(d) for d in alone]
    # Scores agree to float rounding: the matrix products of a block of one sum in another order.
    assert all(s.score == pytest.approx(t.score, abs=1e-5)
               for d, e in zip(seam, alone, strict=True) for s, t in zip(d.papers, e.papers, strict=True))


def test_blocks_grow_from_the_first_to_the_full_size_and_cover_everyone_once() -> None:
    from newsletter.planning import BLOCK, FIRST_BLOCK, _blocks

    people = list(range(3 * BLOCK + 5))
    blocks = list(_blocks(people))  # type: ignore[arg-type]
    sizes = [len(b) for b in blocks]
    assert sizes[0] == FIRST_BLOCK and sizes[-1] <= BLOCK and max(sizes) == BLOCK
    assert all(b == min(2 * a, BLOCK) for a, b in zip(sizes, sizes[1:-1], strict=False))
    assert [p for b in blocks for p in b] == people


def test_a_ranker_fitted_ahead_is_used_only_for_the_papers_it_was_fitted_on(tmp_path):
    from newsletter.planning import reference_papers, reusing

    config = make_project(tmp_path)
    pipeline.ingest_pages(config, T_INGEST)
    with pipeline.open_context(config) as ctx:
        reference = reference_papers(ctx.store, T_DIGEST)
        fitted = ctx.make_ranker(reference)
        make = reusing(ctx.make_ranker, fitted, reference)
        assert make(reference_papers(ctx.store, T_DIGEST)) is fitted  # the same papers, read again
        assert len(reference) > 1 and make(reference[1:]) is not fitted  # a paper more or less: a new fit
