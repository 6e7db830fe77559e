"""The preference centre over real HTTP: a uvicorn server on 127.0.0.1, a real store, real subscriber files."""

from __future__ import annotations

import email
import email.policy
import html
import logging
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from builders import write_page
from web_server import bind, running

from helpers import REPO, SAMPLE_PAGES, at
from newsletter import pipeline
from newsletter.config import Config, config_from_mapping
from newsletter.links import Signer
from newsletter.store import open_store
from newsletter.subscribers import FileSubscribers
from newsletter.web import WebOptions, create_app

SECRET = "web-test-key"
NOW = at("2026-11-20", 8)


@dataclass
class Site:
    url: str
    config: Config
    signer: Signer
    client: httpx.Client
    clock: list[float]

    def path(self, link: str) -> str:
        return link.removeprefix(self.config.settings.base_url)

    def manage(self, sid: str) -> str:
        return self.path(self.signer.links_for(sid).manage)

    def file(self, sid: str) -> Path:
        return self.config.subscribers_dir / f"{sid}.yaml"


def make_project(tmp_path: Path, base_url: str, **extra: Any) -> Config:
    shutil.copytree(REPO / "subscribers", tmp_path / "subscribers", ignore=shutil.ignore_patterns("*.md"))
    inbox = tmp_path / "var" / "inbox"
    inbox.mkdir(parents=True)
    for page in SAMPLE_PAGES.glob("*.txt"):
        shutil.copy(page, inbox)
    # This checkout's templates (the installed package may point at another checkout's).
    config = config_from_mapping({"base_url": base_url, "templates": str(REPO / "templates"), **extra}, tmp_path)
    pipeline.ingest_pages(config, at("2026-11-20", 6))
    return config


@pytest.fixture
def site(tmp_path, monkeypatch) -> Iterator[Site]:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    sock, url = bind()
    config = make_project(tmp_path, url)
    clock = [0.0]
    with pipeline.open_context(config) as ctx:
        app = create_app(ctx, WebOptions(rate_limit=3, monotonic=lambda: clock[0]), now=lambda: NOW)
        with running(app, sock), httpx.Client(base_url=url, follow_redirects=False, timeout=30) as client:
            yield Site(url, config, ctx.signer, client, clock)


def csrf_and_version(page: str) -> dict[str, str]:
    return {"csrf": re.search(r'name="csrf" value="([^"]+)"', page).group(1),  # type: ignore[union-attr]
            "version": re.search(r'name="version" value="([^"]*)"', page).group(1)}  # type: ignore[union-attr]


def save_form(site: Site, sid: str, **fields: str) -> httpx.Response:
    page = site.client.get(site.manage(sid)).text
    current = FileSubscribers(site.config.subscribers_dir).get(sid)
    form = {"action": "save", "topics": "\n".join(current.topics), "exclude": "\n".join(current.exclude),
            "max_papers": str(current.max_papers or ""), **csrf_and_version(page), **fields}
    return site.client.post(site.manage(sid), data=form)


def test_the_page_shows_only_its_own_subscriber_with_strict_headers(site):
    response = site.client.get(site.manage("alice"))
    assert response.status_code == 200
    page = response.text
    assert "alice@example.org" in page and "molecule generation" in page
    assert "bob@example.org" not in page
    assert '<label for="topics">Topics</label>' in page and 'name="csrf"' in page
    headers = response.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "script-src" not in headers["content-security-policy"]  # default-src 'none': no script at all
    assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    css = site.client.get("/static/site.css")
    assert css.status_code == 200 and "prefers-color-scheme: dark" in css.text


def tampered(path: str) -> str:
    head, token = path.rsplit("/", 1)
    i = len(token) // 2
    return f"{head}/{token[:i]}{'A' if token[i] != 'A' else 'B'}{token[i + 1:]}"


def test_a_bad_token_gets_a_clear_4xx_page_and_never_data(site):
    other_key = Signer("another-installation", site.config.settings.base_url, "x@example.org")
    attempts = {
        "altered": tampered(site.manage("alice")),
        "other key": site.path(other_key.links_for("alice").manage),
        "other purpose": "/preferences/" + site.signer.links_for("alice").unsubscribe.rsplit("/", 1)[1],
        "vote as manage": "/preferences/" + site.signer.vote_url("alice", 1, "more").rsplit("/", 1)[1],
        "truncated": site.manage("alice")[:-4],
    }
    for why, path in attempts.items():
        response = site.client.get(path)
        assert response.status_code == 400, why
        assert "This link does not work" in response.text and "@example.org" not in response.text, why
    FileSubscribers(site.config.subscribers_dir).remove("carol")
    for path in (site.manage("carol"), site.path(site.signer.links_for("carol").unsubscribe),
                 site.path(site.signer.vote_url("carol", 1, "more"))):
        gone = site.client.get(path)
        assert gone.status_code == 404 and "no longer exists" in gone.text, path
    one_click = site.client.post(site.path(site.signer.links_for("carol").one_click),
                                 data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 404 and not site.file("carol").exists()


def test_saving_adds_and_removes_topics_keeping_the_file_comments(site):
    topics = "graph neural networks\nmolecule generation\nretrosynthesis\ndrug discovery"
    response = save_form(site, "alice", topics=topics, max_papers="4")
    assert response.status_code == 303 and response.headers["location"].endswith("?saved=preferences#status")
    saved = FileSubscribers(site.config.subscribers_dir).get("alice")
    assert saved.topics == ("graph neural networks", "molecule generation", "retrosynthesis", "drug discovery")
    assert saved.max_papers == 4
    text = site.file("alice").read_text()
    assert text.startswith("# Subscriber profile.") and "# Deliberate small typo" in text
    assert "Your preferences are saved." in site.client.get(response.headers["location"]).text


@pytest.mark.parametrize(
    ("fields", "field", "problem"),
    [
        ({"topics": "x" * 201}, "topics", "each entry must be at most 200 characters"),
        ({"topics": "\n".join(f"t{i}" for i in range(101))}, "topics", "must hold at most 100 entries"),
        ({"max_papers": "lots"}, "max_papers", "must be a whole number from 1 to 100"),
        ({"max_papers": "500"}, "max_papers", "less than or equal to 100"),
        ({"exclude": "y" * 20_300}, "exclude", "too long"),
        ({"topics": "<script>alert(1)</script>" + "z" * 200}, "topics", "at most 200"),
    ],
)
def test_an_invalid_field_is_shown_next_to_it_and_nothing_is_saved(site, fields, field, problem):
    before = site.file("alice").read_text()
    response = save_form(site, "alice", **fields)
    assert response.status_code == 422
    error = re.search(rf'<p class="error" id="{field.split("_")[0]}[^"]*">([^<]+)</p>', response.text)
    assert error and problem in error.group(1)
    assert "<script>alert(1)</script>" not in response.text  # shown back as text, escaped
    assert site.file("alice").read_text() == before


def test_a_form_without_or_with_another_pages_csrf_token_changes_nothing(site):
    before = site.file("bob").read_text()
    bob_page = site.client.get(site.manage("bob")).text
    missing = site.client.post(site.manage("bob"), data={"action": "pause"})
    alice_token = csrf_and_version(site.client.get(site.manage("alice")).text)["csrf"]
    crossed = site.client.post(site.manage("bob"), data={"action": "pause", "csrf": alice_token})
    assert missing.status_code == crossed.status_code == 400
    assert "security token" in missing.text and "another page" in crossed.text
    assert site.file("bob").read_text() == before
    good = site.client.post(site.manage("bob"), data={"action": "pause", **csrf_and_version(bob_page)})
    assert good.status_code == 303 and "status: paused" in site.file("bob").read_text()


def test_resuming_a_profile_without_topics_says_why_on_the_page(site):
    site.file("dora").write_text("email: dora@example.org\nstatus: paused\n")
    page = site.client.get(site.manage("dora")).text
    response = site.client.post(site.manage("dora"), data={"action": "resume", **csrf_and_version(page)})
    assert response.status_code == 422
    assert "Nothing changed: an active subscriber needs at least one entry under `topics`" in response.text
    assert "status: paused" in site.file("dora").read_text()


def test_a_megabyte_form_is_refused_before_it_is_read(site):
    before = site.file("alice").read_text()
    token = csrf_and_version(site.client.get(site.manage("alice")).text)
    response = site.client.post(site.manage("alice"), data={"action": "save", "topics": "t" * 1_000_000, **token})
    assert response.status_code == 413
    assert site.file("alice").read_text() == before


def test_a_hand_edit_made_while_the_page_was_open_is_never_overwritten(site):
    page = site.client.get(site.manage("alice")).text
    hand = site.file("alice").read_text().replace("  - retrosynthesis\n", "  - retrosynthesis\n  - by hand\n")
    site.file("alice").write_text(hand)
    form = {"action": "save", "topics": "graph neural networks", "exclude": "", "max_papers": "",
            **csrf_and_version(page)}
    response = site.client.post(site.manage("alice"), data=form)
    assert response.status_code == 409 and "changed elsewhere" in response.text
    assert site.file("alice").read_text() == hand
    # The page now carries the new version: the same edit, sent again, is saved.
    again = site.client.post(site.manage("alice"), data={**form, **csrf_and_version(response.text)})
    assert again.status_code == 303
    assert FileSubscribers(site.config.subscribers_dir).get("alice").topics == ("graph neural networks",)


def test_one_click_unsubscribe_is_a_post_and_a_get_changes_nothing(site):
    links = site.signer.links_for("carol")
    path = site.path(links.one_click)
    shown = site.client.get(path)
    assert shown.status_code == 200 and 'name="List-Unsubscribe" value="One-Click"' in shown.text
    assert FileSubscribers(site.config.subscribers_dir).get("carol").status == "active"
    refused = site.client.post(path, data={"something": "else"})
    assert refused.status_code == 400
    # RFC 8058: no cookie, no login, no CSRF token, no redirect.
    done = httpx.post(site.url + path, content=b"List-Unsubscribe=One-Click",
                      headers={"Content-Type": "application/x-www-form-urlencoded"}, follow_redirects=False)
    assert done.status_code == 200 and "location" not in done.headers
    assert "You are unsubscribed" in done.text
    assert FileSubscribers(site.config.subscribers_dir).get("carol").status == "unsubscribed"
    report = pipeline.run_digests(site.config, NOW)
    assert {r.subscriber_id: r.outcome for r in report.results}["carol"] == "unsubscribed"
    # Per link, at most rate_limit (3) a minute: a flood of POSTs is refused, not written.
    statuses = [site.client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code for _ in range(4)]
    assert statuses[-1] == 429


def test_a_vote_link_asks_first_records_on_post_and_is_rate_limited(site):
    with open_store(site.config.store_url) as store:
        paper = store.papers.get()[0]
    path = site.path(site.signer.vote_url("bob", paper.id, "less"))
    asked = site.client.get(path)
    assert asked.status_code == 200 and "Yes, fewer like this" in asked.text and paper.title in asked.text
    with open_store(site.config.store_url) as store:
        assert store.votes.for_subscriber("bob") == []
    csrf = re.search(r'name="csrf" value="([^"]+)"', asked.text).group(1)  # type: ignore[union-attr]
    assert site.client.post(path, data={}).status_code == 400  # no CSRF token
    recorded = site.client.post(path, data={"csrf": csrf})
    assert recorded.status_code == 200 and "fewer papers like" in recorded.text
    with open_store(site.config.store_url) as store:
        (vote,) = store.votes.for_subscriber("bob")
    assert (vote.paper_id, vote.direction, vote.voted_at) == (paper.id, "less", NOW)
    statuses = [site.client.post(path, data={"csrf": csrf}).status_code for _ in range(3)]
    assert statuses == [200, 429, 429]  # 3 a minute per link (rate_limit=3): one above, two more, then refused
    site.clock[0] += 61
    assert site.client.post(path, data={"csrf": csrf}).status_code == 200
    undo = {"action": "undo-vote", "paper_id": str(paper.id),
            **csrf_and_version(site.client.get(site.manage("bob")).text)}
    assert site.client.post(site.manage("bob"), data=undo).status_code == 303
    with open_store(site.config.store_url) as store:
        assert store.votes.for_subscriber("bob") == []


def test_the_next_digest_frame_and_the_view_in_browser_link(site):
    frame = site.client.get(site.manage("alice") + "/next")
    assert frame.status_code == 200 and frame.headers["x-frame-options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in frame.headers["content-security-policy"]
    assert "sandbox" in frame.headers["content-security-policy"]
    assert '<base target="_top">' in frame.text  # its links leave the frame
    assert "/view/" not in frame.text and "/vote/" in frame.text  # never sent: nothing to view, but votes work
    pipeline.run_digests(site.config, NOW)
    outbox = site.config.resolve(site.config.settings.delivery.outbox)
    (eml,) = [p for p in outbox.iterdir() if p.suffix == ".eml" and "alice" in p.read_text(errors="replace")]
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    html_part = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    view = re.search(r'href="(http://127\.0\.0\.1:\d+/view/[^"]+)"', html_part).group(1)  # type: ignore[union-attr]
    shown = httpx.get(view)
    assert shown.status_code == 200
    titles = re.findall(r'class="digest-title"[^>]*><a\s[^>]*>([^<]+)</a>', html_part)
    assert titles and all(t in shown.text for t in titles)


def test_the_preview_is_for_the_operator_only(site, tmp_path, monkeypatch):
    listing = site.client.get("/preview")
    assert listing.status_code == 200 and "alice" in listing.text
    one = site.client.get("/preview/alice")
    assert one.status_code == 200 and "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in one.text
    assert site.client.get("/preview/alice/html").headers["x-frame-options"] == "SAMEORIGIN"
    # A reverse proxy on this machine connects from loopback too, on behalf of anyone.
    proxied = site.client.get("/preview", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status_code == 403 and "alice" not in proxied.text
    sock, url = bind()
    with pipeline.open_context(site.config) as ctx:
        app = create_app(ctx, WebOptions(admin_token="s3cret"), now=lambda: NOW)
        with running(app, sock):
            assert httpx.get(url + "/preview").status_code == 401
            assert httpx.get(url + "/preview", headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert httpx.get(url + "/preview", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_newsletter_serve_logs_each_request_without_its_token(tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    sock, url = bind()
    port = sock.getsockname()[1]
    sock.close()  # the server binds it again at once; nothing else here takes ports from this range
    config = make_project(tmp_path, url)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(f"base_url: {url}\nweb:\n  port: {port}\n")
    server = subprocess.Popen([sys.executable, "-c", "from newsletter.cli import main; main()", "--config",
                               str(config_file), "serve"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        manage = Signer(SECRET, url, "digest@localhost").links_for("alice").manage
        for _ in range(300):
            try:
                response = httpx.get(manage)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert response.status_code == 200 and "alice@example.org" in response.text
        assert config.subscribers_dir.exists()
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "GET /preferences/<token> 200" in output
    assert manage.rsplit("/", 1)[1] not in output


def test_the_log_names_the_route_but_never_a_token(site, caplog):
    caplog.set_level(logging.INFO, logger="newsletter.web")
    token = site.manage("alice").rsplit("/", 1)[1]
    site.client.get(site.manage("alice"))
    site.client.get(tampered(site.manage("alice")))
    lines = [r.getMessage() for r in caplog.records if r.name == "newsletter.web"]
    assert "GET /preferences/<token> 200" in " ".join(lines)
    assert all(token[:20] not in line for line in lines)


def test_the_schedule_is_shown_with_a_select_of_every_zone_and_the_next_send(site):
    page = site.client.get(site.manage("alice")).text
    assert '<label for="timezone">Time zone</label>' in page and '<label for="frequency">How often</label>' in page
    zones = re.findall(r"<option(?: selected)?>([^<]+)</option>", page)
    assert zones == sorted(zones) and {"Europe/Berlin", "America/New_York", "UTC"} <= set(zones)
    assert "<option selected>UTC</option>" in page  # alice follows config's default: daily, 07:00 UTC
    assert 'value="07:00"' in page
    # NOW is 2026-11-20 08:00 UTC (a Friday): today's 07:00 has passed.
    assert "Your next digest: <strong>Sat 21 Nov 2026, 07:00 UTC</strong>" in page


def test_saving_a_schedule_writes_it_round_trip_and_the_default_drops_out_again(site):
    response = save_form(site, "alice", frequency="weekly", day="wed", time="18:45", timezone="Asia/Kolkata")
    assert response.status_code == 303
    saved = FileSubscribers(site.config.subscribers_dir).get("alice")
    assert saved.schedule.describe() == "every wed at 18:45 Asia/Kolkata"
    text = site.file("alice").read_text()
    assert "schedule:\n  frequency: weekly\n  day: wed\n  time: \"18:45\"\n  timezone: Asia/Kolkata\n" in text
    assert yaml.safe_load(text)["schedule"]["time"] == "18:45"  # quoted: a YAML 1.1 reader gets no 1125
    assert text.startswith("# Subscriber profile.")
    page = site.client.get(response.headers["location"]).text
    assert "<option selected>Asia/Kolkata</option>" in page and '<option value="wed" selected>' in page
    # Wednesday 25 Nov, 18:45 in Kolkata is 13:15 UTC.
    assert "Your next digest: <strong>Wed 25 Nov 2026, 18:45 Asia/Kolkata (13:15 UTC)</strong>" in page
    # Weekdays ignore the day select, which always sends a value.
    assert save_form(site, "alice", frequency="weekdays", day="sun", time="06:00",
                     timezone="Asia/Kolkata").status_code == 303
    assert FileSubscribers(site.config.subscribers_dir).get("alice").schedule.describe() == \
        "on weekdays at 06:00 Asia/Kolkata"
    assert "day:" not in site.file("alice").read_text()
    # Back to config's default (daily, 07:00, UTC): the schedule leaves the file.
    assert save_form(site, "alice", frequency="daily", day="mon", time="07:00", timezone="UTC").status_code == 303
    assert "schedule" not in site.file("alice").read_text()


@pytest.mark.parametrize(
    ("fields", "field", "problem"),
    [
        ({"time": "7.30"}, "time", 'must look like "07:30"'),
        ({"time": "25:00"}, "time", 'must look like "07:30"'),
        ({"timezone": "Europe/Berln"}, "timezone", "'Europe/Berln' is not a time zone; did you mean 'Europe/Berlin'?"),
        ({"frequency": "hourly"}, "frequency", "must be one of 'daily', 'weekdays' or 'weekly'"),
        ({"frequency": "weekly", "day": "someday"}, "day", "must be one of 'mon'"),
    ],
)
def test_an_invalid_schedule_is_shown_next_to_its_field_and_nothing_is_saved(site, fields, field, problem):
    before = site.file("alice").read_text()
    response = save_form(site, "alice", **fields)
    assert response.status_code == 422
    error = re.search(rf'<p class="error" id="{field}-error">([^<]+)</p>', response.text)
    assert error and problem in error.group(1).replace("&#39;", "'").replace("&#34;", '"')
    assert site.file("alice").read_text() == before
    typed = next(iter(fields.values())) if field != "day" else fields["day"]
    assert typed in response.text  # what was typed is shown back


def post_action(site: Site, sid: str, **fields: str) -> httpx.Response:
    page = site.client.get(site.manage(sid)).text
    return site.client.post(site.manage(sid), data={**csrf_and_version(page), **fields})


def liked_items(page: str) -> list[str]:
    section = page.split('id="liked"', 1)[1].split("</section>", 1)[0]
    return [html.unescape(t) for t in re.findall(r'<span class="liked-title">([^<]+)</span>', section)]


def test_liked_papers_are_listed_with_the_stored_paper_each_names(site):
    page = site.client.get(site.manage("alice")).text
    typo = "Equivariant Message Passing with Learned Bond Orders for Molecular Propery Prediction"
    assert liked_items(page) == [typo]
    # The typo still names the stored paper: the page says which one.
    assert "(matches “Equivariant Message Passing with Learned Bond Orders for Molecular Property Prediction”)" \
        in page
    assert '<label for="like">Add a paper you liked</label>' in page


def test_a_liked_paper_is_added_by_title_matched_loosely_and_removed_keeping_the_comments(site):
    with open_store(site.config.store_url) as store:
        stored = [p.title for p in store.papers.get()]
    wanted = next(t for t in stored if len(t.split()) > 5 and "Equivariant" not in t)
    words = wanted.split()
    reordered = " ".join(words[1:] + words[:1]).lower()  # typed from memory: another order, no capitals
    response = post_action(site, "alice", action="like", like=f"  {reordered} ")
    assert response.status_code == 303 and response.headers["location"].endswith("?saved=liked#status")
    assert FileSubscribers(site.config.subscribers_dir).get("alice").liked[-1] == reordered
    page = site.client.get(response.headers["location"]).text
    assert "The paper is added to the ones you liked." in page
    assert html.escape(f"(matches “{wanted}”)", quote=False) in page
    post_action(site, "alice", action="like", like="A Paper Nobody Has Stored About Llamas On Mars")
    page = site.client.get(site.manage("alice")).text
    assert "(no stored paper matches this title yet; its words still count)" in page
    typo = "Equivariant Message Passing with Learned Bond Orders for Molecular Propery Prediction"
    removed = post_action(site, "alice", action="unlike", title=typo)
    assert removed.status_code == 303 and removed.headers["location"].endswith("?saved=unliked#status")
    assert liked_items(site.client.get(site.manage("alice")).text) == [
        reordered, "A Paper Nobody Has Stored About Llamas On Mars"]
    text = site.file("alice").read_text()
    assert text.startswith("# Subscriber profile.") and typo not in text
    # Removing it again (from a page opened before) changes nothing and says why.
    again = post_action(site, "alice", action="unlike", title=typo)
    assert again.status_code == 422 and "Nothing changed: alice has no liked paper" in html.unescape(again.text)


def test_a_paper_stored_after_the_app_started_is_matched_too(site):
    site.client.get(site.manage("alice"))  # the app has looked titles up once already
    title = "Sparse Attention Circuits for Quantum Protein Folding Benchmarks"
    write_page(site.config.inbox, "2026-11-20.txt", "Nov 20", [(title, "We fold proteins with circuits.")])
    pipeline.ingest_pages(site.config, NOW)  # another process, as the daemon would be
    assert post_action(site, "alice", action="like", like=title.lower()).status_code == 303
    page = site.client.get(site.manage("alice")).text
    assert title.lower() in liked_items(page) and f"(matches “{title}”)" in page


@pytest.mark.parametrize(
    ("typed", "problem"),
    [("   ", "type the title of a paper you liked"), ("t" * 501, "a title is at most 500 characters")],
)
def test_an_unusable_liked_title_is_refused_next_to_the_field(site, typed, problem):
    before = site.file("alice").read_text()
    response = post_action(site, "alice", action="like", like=typed)
    assert response.status_code == 422
    error = re.search(r'<p class="error" id="like-error">([^<]+)</p>', response.text)
    assert error and problem in error.group(1)
    assert site.file("alice").read_text() == before


def test_liking_and_unliking_need_the_pages_csrf_token(site):
    before = site.file("alice").read_text()
    for fields in ({"action": "like", "like": "Anything"}, {"action": "unlike", "title": "anything"}):
        assert site.client.post(site.manage("alice"), data=fields).status_code == 400
    assert site.file("alice").read_text() == before


def test_a_liked_paper_beyond_the_files_limit_is_refused_by_the_files_rule(site):
    entries = "".join(f"  - Liked paper number {i}\n" for i in range(100))
    site.file("dora").write_text(f"email: dora@example.org\ntopics: [x]\nliked:\n{entries}")
    before = site.file("dora").read_text()
    response = post_action(site, "dora", action="like", like="One more paper")
    assert response.status_code == 422
    error = re.search(r'<p class="error" id="like-error">([^<]+)</p>', response.text)
    assert error and error.group(1).startswith("Add a paper: liked: must hold at most 100 entries")
    assert site.file("dora").read_text() == before


def test_previews_carry_no_view_in_browser_link_that_would_lead_nowhere(site, tmp_path):
    # A preview is never sent, so there is no stored email for "View in browser" to open.
    framed = site.client.get("/preview/alice/html").text
    shown = html.unescape(site.client.get("/preview/alice").text)
    for body in (framed, shown):
        assert "/view/" not in body and "View in browser" not in body
    assert "/vote/" in framed and "/preferences/" in framed  # the other links still work from a preview
    assert "Message-ID: <" in shown  # the headers are still those of a real message
    files = pipeline.preview(site.config, "alice", tmp_path / "preview", NOW)
    for path in (files.html, files.text, files.eml):
        assert b"/view/" not in path.read_bytes() and b"View in browser" not in path.read_bytes()
    # What is sent keeps the link, and it opens.
    pipeline.run_digests(site.config, NOW)
    outbox = site.config.resolve(site.config.settings.delivery.outbox)
    sent = next(p for p in outbox.iterdir() if p.suffix == ".eml" and "alice@" in p.read_text(errors="replace"))
    message = email.message_from_bytes(sent.read_bytes(), policy=email.policy.default)
    text_part = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    view = re.search(r"View in browser: (\S+)", text_part).group(1)  # type: ignore[union-attr]
    assert httpx.get(view).status_code == 200
