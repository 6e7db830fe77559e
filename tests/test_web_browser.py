"""The preference centre end to end in real headless Chromium, with emails from a real SMTP server.

A digest goes out over SMTP (aiosmtpd), the test takes the links out of the
received email, and a person's clicks happen in Chromium against the real app
(uvicorn on 127.0.0.1). Screenshots go to a `screenshots` folder under pytest's
temporary directory, and also to $NEWSLETTER_SCREENSHOTS when that is set.
"""

from __future__ import annotations

import html
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from builders import write_page
from test_render_browser import CHROMIUM, CHROMIUM_ARGS, png_facts
from web_server import bind, running

from helpers import REPO, SAMPLE_PAGES, at
from newsletter import pipeline
from newsletter.config import Config, config_from_mapping
from newsletter.store import open_store
from newsletter.subscribers import FileSubscribers
from newsletter.web import WebOptions, create_app
from smtp_sink import SmtpSink

FIRST_RUN = at("2026-11-20", 8)
SECOND_RUN = at("2026-11-21", 8)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Live:
    url: str
    config: Config
    sink: SmtpSink

    def emails_to(self, address: str) -> list[EmailMessage]:
        return [r.message for r in self.sink.messages if address in r.rcpt_tos]

    def subscribers(self) -> FileSubscribers:
        return FileSubscribers(self.config.subscribers_dir)


@pytest.fixture
def live(tmp_path, smtp_sink, monkeypatch) -> Iterator[Live]:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "browser-test-key")
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "hunter2")
    sink = smtp_sink(security="starttls", username="digest", password="hunter2")
    shutil.copytree(REPO / "subscribers", tmp_path / "subscribers", ignore=shutil.ignore_patterns("*.md"))
    # bob2 is bob without votes: the control for "less like this".
    (tmp_path / "subscribers" / "bob2.yaml").write_text(
        (tmp_path / "subscribers" / "bob.yaml").read_text().replace("bob@", "bob2@"))
    inbox = tmp_path / "var" / "inbox"
    inbox.mkdir(parents=True)
    for page in SAMPLE_PAGES.glob("*.txt"):
        shutil.copy(page, inbox)
    sock, url = bind()
    config = config_from_mapping({
        "base_url": url, "templates": str(REPO / "templates"), "delivery": {"method": "smtp"},
        "smtp": sink.settings().model_dump(mode="json", exclude_none=True),
    }, tmp_path)
    pipeline.ingest_pages(config, at("2026-11-20", 6))
    with pipeline.open_context(config) as ctx:
        app = create_app(ctx, WebOptions(), now=lambda: SECOND_RUN)
        with running(app, sock):
            yield Live(url, config, sink)


def html_of(message: EmailMessage) -> str:
    return message.get_body(("html",)).get_content()  # type: ignore[union-attr]


def link(message: EmailMessage, label: str, nth: int = 0) -> str:
    found = re.findall(rf'<a\s+href="([^"]+)"[^>]*>{re.escape(label)}</a>', html_of(message))
    return found[nth]


def titles(message: EmailMessage) -> list[str]:
    """The titles as a reader sees them (the HTML part writes other characters than ASCII as references)."""
    return [html.unescape(t) for t in re.findall(r'class="digest-title"[^>]*><a\s[^>]*>([^<]+)</a>', html_of(message))]


def shots(tmp_path_factory: Any) -> list[Path]:
    folders = [tmp_path_factory.getbasetemp() / "screenshots"]
    if os.environ.get("NEWSLETTER_SCREENSHOTS"):
        folders.append(Path(os.environ["NEWSLETTER_SCREENSHOTS"]))
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return folders


def screenshot(page: Any, name: str, width: int, tmp_path_factory: Any) -> None:
    folders = shots(tmp_path_factory)
    target = folders[0] / f"{name}-{width}.png"
    page.screenshot(path=str(target), full_page=True)
    shot_width, _, distinct = png_facts(target.read_bytes())
    assert shot_width == width and distinct > 50, f"{target} is blank or the wrong width"
    for folder in folders[1:]:
        shutil.copy(target, folder / target.name)


def test_edit_topics_in_the_browser_and_the_next_digest_follows(live, chromium, tmp_path_factory):
    pipeline.run_digests(live.config, FIRST_RUN)
    (first,) = live.emails_to("alice@example.org")
    manage = link(first, "Manage preferences")
    assert manage.startswith(live.url + "/preferences/")

    # No JavaScript at all: every action is a plain form.
    context = chromium.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(manage)
    assert page.get_by_role("heading", name="Your preferences").is_visible()
    topics = page.get_by_label("Topics")
    assert "retrosynthesis" in topics.input_value()
    kept = [t for t in topics.input_value().splitlines() if t != "retrosynthesis"]
    topics.fill("\n".join([*kept, "quantum error correction"]))
    page.get_by_role("button", name="Save preferences").click()
    assert page.get_by_role("status").inner_text() == "Your preferences are saved."
    assert "quantum error correction" in page.get_by_label("Topics").input_value()
    saved = live.subscribers().get("alice")
    assert "quantum error correction" in saved.topics and "retrosynthesis" not in saved.topics
    assert "# Deliberate small typo" in saved.source.read_text()  # type: ignore[union-attr]
    # "Your next digest" frames the real rendered email for the profile as it is now.
    frame = page.frame_locator('iframe[title="Your next digest"]')
    frame.locator(".digest-header").first.wait_for()
    assert "Paper Digest".upper() in frame.locator(".digest-header").first.inner_text().upper()
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 900})
        screenshot(page, "preferences", width, tmp_path_factory)
        assert page.evaluate("document.documentElement.scrollWidth") <= width + 1
    context.close()

    qec = "Surface code decoding for quantum error correction with neural decoders"
    retro = "Retrosynthesis route planning by Monte Carlo tree search over reaction templates"
    page_file = write_page(live.config.inbox, "2026-11-21.txt", "Nov 21", [
        (qec, "We decode the surface code for quantum error correction with a neural decoder on qubits."),
        (retro, "We plan retrosynthesis routes by tree search over reaction templates and precursors."),
    ])
    pipeline.ingest_pages(live.config, at("2026-11-21", 6), [page_file])
    pipeline.run_digests(live.config, SECOND_RUN)
    second = live.emails_to("alice@example.org")[-1]
    assert qec in titles(second) and retro not in titles(second)


def test_less_like_this_is_confirmed_in_the_browser_and_pushes_neighbours_down(live, chromium):
    pipeline.run_digests(live.config, FIRST_RUN)
    (email,) = live.emails_to("bob@example.org")
    voted_title = titles(email)[0]
    less = link(email, "Less like this", 0)
    page = chromium.new_page()
    page.goto(less)
    assert page.get_by_role("heading", name="Fewer papers like this?").is_visible()
    with open_store(live.config.store_url) as store:
        assert store.votes.for_subscriber("bob") == []  # opening the link (as a scanner would) changed nothing
    page.get_by_role("button", name="Yes, fewer like this").click()
    page.get_by_role("heading", name="Thank you").wait_for()  # the POST's answer, however slow the machine
    assert page.get_by_role("heading", name="Thank you").is_visible()
    page.close()
    with open_store(live.config.store_url) as store:
        (vote,) = store.votes.for_subscriber("bob")
    assert (vote.title, vote.direction) == (voted_title, "less")

    # A near neighbour of the disliked paper, and two papers that only share bob's topics.
    neighbour = f"{voted_title}: an extended study"
    with open_store(live.config.store_url) as store:
        abstract = next(p.abstract for p in store.papers.get() if p.title == voted_title)
    page_file = write_page(live.config.inbox, "2026-11-21.txt", "Nov 21", [
        (neighbour, abstract),
        ("Offline reinforcement learning for robot manipulation from play data",
         "We learn robot manipulation policies with offline reinforcement learning from play data."),
        ("Legged locomotion with reinforcement learning on rough terrain",
         "A quadruped learns legged locomotion with reinforcement learning on rough terrain."),
    ])
    pipeline.ingest_pages(live.config, at("2026-11-21", 6), [page_file])
    pipeline.run_digests(live.config, SECOND_RUN)
    control, voted = titles(live.emails_to("bob2@example.org")[-1]), titles(live.emails_to("bob@example.org")[-1])
    assert neighbour in control  # without the vote, the neighbour is sent
    assert neighbour not in voted or voted.index(neighbour) > control.index(neighbour)


def test_one_click_unsubscribe_from_the_email_header_stops_the_next_digest(live, chromium):
    pipeline.run_digests(live.config, FIRST_RUN)
    (email,) = live.emails_to("carol@example.org")
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    target = re.match(r"<(http[^>]+)>", email["List-Unsubscribe"]).group(1)  # type: ignore[union-attr]
    # A mail client's one-click: a bare POST, no cookie, no page visit first.
    response = httpx.post(target, content=b"List-Unsubscribe=One-Click", follow_redirects=False,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200 and "location" not in response.headers
    assert live.subscribers().get("carol").status == "unsubscribed"
    # The footer link opens the same URL: a page with a button, and the GET changes nothing.
    footer = link(email, "Unsubscribe")
    page = chromium.new_page()
    page.goto(footer)
    assert page.get_by_role("button", name="Unsubscribe").is_visible()
    page.close()
    before = len(live.sink.messages)
    report = pipeline.run_digests(live.config, SECOND_RUN)
    assert {r.subscriber_id: r.outcome for r in report.results}["carol"] == "unsubscribed"
    assert all("carol@example.org" not in r.rcpt_tos for r in live.sink.messages[before:])


def test_the_page_is_labelled_keyboard_ordered_and_readable(live, chromium):
    with pipeline.open_context(live.config) as ctx:
        manage = ctx.signer.links_for("alice").manage
    for scheme in ("light", "dark"):
        page = chromium.new_page(color_scheme=scheme)
        page.goto(manage)
        unlabelled = page.evaluate("""() => [...document.querySelectorAll('textarea, select, input:not([type=hidden])')]
                                        .filter(el => el.labels.length === 0).map(el => el.name)""")
        assert unlabelled == []
        order = []
        for _ in range(9):
            page.keyboard.press("Tab")
            order.append(page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()"))
        assert order == ["Skip to the content", "topics", "exclude", "max_papers", "frequency", "day", "time",
                         "timezone", "Save preferences"]
        ratio = page.evaluate("""() => {
            const rgb = s => s.match(/\\d+/g).slice(0, 3).map(Number).map(v => v / 255)
                .map(c => c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
            const lum = s => { const [r, g, b] = rgb(s); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
            const card = document.querySelector('.card');
            const fg = lum(getComputedStyle(card).color), bg = lum(getComputedStyle(card).backgroundColor);
            return (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
        }""")
        assert ratio >= 7, f"text contrast {ratio:.1f} in {scheme} mode"
        page.close()


def test_the_email_in_dark_and_light_and_the_preview_pages(live, chromium, tmp_path_factory):
    pipeline.run_digests(live.config, FIRST_RUN)
    (email,) = live.emails_to("alice@example.org")
    html = html_of(email)
    assert re.search(r'<meta\s+name="color-scheme" content="light dark"', html) and "prefers-color-scheme: dark" in html
    backgrounds = {}
    for scheme in ("light", "dark"):
        for width in (600, 375):
            page = chromium.new_page(color_scheme=scheme, viewport={"width": width, "height": 900})
            page.set_content(html, wait_until="load")
            backgrounds[scheme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
            title = page.locator(".digest-title a").first
            backgrounds[f"{scheme} title"] = title.evaluate("el => getComputedStyle(el).color")
            assert page.get_by_role("link", name="More like this").count() == len(titles(email))
            assert page.get_by_role("link", name="View in browser").is_visible()
            screenshot(page, f"email-{scheme}", width, tmp_path_factory)
            page.close()
    assert backgrounds["light"] == "rgb(243, 244, 246)" and backgrounds["dark"] == "rgb(11, 17, 32)"
    assert backgrounds["dark title"] == "rgb(249, 250, 251)"
    for width in (1280, 375):
        page = chromium.new_page(viewport={"width": width, "height": 900})
        page.goto(live.url + "/preview/alice")
        assert page.get_by_role("heading", name="Preview: alice").is_visible()
        # The framed email (nothing new for alice after her digest: the "no new papers" card).
        page.frame_locator("iframe").locator(".digest-empty, .digest-paper").first.wait_for()
        screenshot(page, "preview", width, tmp_path_factory)
        page.close()


def test_a_vote_link_inside_the_next_digest_frame_opens_in_the_whole_window(live, chromium):
    with pipeline.open_context(live.config) as ctx:
        manage = ctx.signer.links_for("bob").manage
    page = chromium.new_page()
    page.goto(manage)
    frame = page.frame_locator('iframe[title="Your next digest"]')
    frame.get_by_role("link", name="More like this").first.click()
    page.wait_for_url(re.compile(r".*/vote/.*"))
    page.get_by_role("heading", name="More papers like this?").wait_for()
    assert page.get_by_role("heading", name="More papers like this?").is_visible()
    page.get_by_role("button", name="Yes, more like this").click()
    page.get_by_role("heading", name="Thank you").wait_for()  # the POST's answer, however slow the machine
    assert page.get_by_role("heading", name="Thank you").is_visible()
    with open_store(live.config.store_url) as store:
        (vote,) = store.votes.for_subscriber("bob")
    assert vote.direction == "more"
    page.close()


def test_the_time_zone_select_is_labelled_and_a_changed_schedule_is_saved(live, chromium):
    with pipeline.open_context(live.config) as ctx:
        manage = ctx.signer.links_for("carol").manage
    page = chromium.new_page(java_script_enabled=False)  # the form needs no script
    page.goto(manage)
    zone = page.get_by_label("Time zone")  # found through its <label>: what a screen reader announces
    assert zone.evaluate("el => el.tagName") == "SELECT"
    assert zone.input_value() == "UTC"
    zone.select_option("America/Sao_Paulo")
    page.get_by_label("How often").select_option("weekly")
    page.get_by_label("Day of the week").select_option("tue")
    page.get_by_label("Send time").fill("21:15")
    page.get_by_role("button", name="Save preferences").click()
    page.wait_for_url(re.compile(r"saved=preferences"))
    assert live.subscribers().get("carol").schedule.describe() == "every tue at 21:15 America/Sao_Paulo"
    assert page.get_by_label("Time zone").input_value() == "America/Sao_Paulo"
    # SECOND_RUN is Sat 21 Nov 2026 08:00 UTC; Tue 24 Nov 21:15 in São Paulo (UTC-3) is Wed 00:15 UTC.
    assert page.locator("#next-send").inner_text() == \
        "Your next digest: Tue 24 Nov 2026, 21:15 America/Sao_Paulo (Wed 25 Nov, 00:15 UTC)."
    page.close()
