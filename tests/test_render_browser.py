"""Render stage in real headless Chromium: layout at phone and desktop widths, no script runs."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from builders import digest, paper, subscriber

from newsletter.models import (
    Digest,
    Link,
    LinkKind,
    Paper,
    Reason,
    SubscriberLinks,
)
from newsletter.render import Renderer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
SCRIPT_TITLE = "<script>alert(1)</script>"
IMG_TITLE = '"><img src=x onerror=alert(1)>'
LONG_TITLE = "Supercalifragilisticexpialidocious-Pretraining of Unreasonably Long Hyphenated Names"
LINKS = SubscriberLinks(
    manage="https://digest.example.org/manage?token=abc",
    unsubscribe="https://digest.example.org/unsubscribe?token=xyz",
    one_click="https://digest.example.org/one-click?token=xyz",
    unsubscribe_mailto="mailto:unsubscribe@example.org",
)


LONG_ABSTRACT = ("We introduce a sparse attention scheme that keeps memory linear in sequence length "
                 "while matching dense attention on long-document benchmarks. " * 6)
HOSTS = {"code": "github.com/lab", "project": "lab.example.org", "model": "huggingface.co/lab",
         "data": "zenodo.org/records"}


def _paper(pid: int, title: str, *, url: bool = True, kinds: tuple[LinkKind, ...] = ()) -> Paper:
    links = tuple(Link(f"https://{HOSTS[k]}/item{pid}", k) for k in kinds)
    return paper(pid, title, abstract=LONG_ABSTRACT, url="default" if url else None, links=links)


def _digest() -> Digest:
    papers = (
        _paper(1, "Linear-Memory Attention for Long Documents", kinds=("code", "project", "model")),
        _paper(2, SCRIPT_TITLE, url=False, kinds=("code",)),
        _paper(3, IMG_TITLE, kinds=("data",)),
        _paper(4, LONG_TITLE),
    )
    reasons = (Reason(topics=("long context",), terms=("sparse attention", "memory")), Reason(liked=("Longformer",)),
               Reason(), Reason(topics=("pretraining",)))
    return digest(*papers, reasons=reasons, candidate_count=143,
                  sub=subscriber("alice", topics=("long context", "pretraining")))


@pytest.fixture(scope="module")
def html() -> str:
    renderer = Renderer(TEMPLATES, sender_name="Paper Digest",
                        search_url="https://arxiv.org/search/?query={query}")
    return renderer.render(_digest(), LINKS).html


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if os.environ.get("NEWSLETTER_SKIP_BROWSER") == "1":
        pytest.skip("NEWSLETTER_SKIP_BROWSER=1")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package, "
                    "or set NEWSLETTER_SKIP_BROWSER=1 to skip the browser tests")
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                  args=CHROMIUM_ARGS)
        except PlaywrightError as exc:
            pytest.fail(f"cannot start {CHROMIUM}: {exc}")
        yield chromium
        chromium.close()


def _open(browser, html: str, width: int, requests: list[str] | None = None):  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": width, "height": 900})
    if requests is not None:
        page.on("request", lambda request: requests.append(request.url))
    page.set_content(html, wait_until="load")
    return page


def png_facts(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values in the pixel data) of a PNG, read with the standard library."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    pixels, offset = b"", 8
    while offset < len(data):
        (length,), kind = struct.unpack(">I", data[offset:offset + 4]), data[offset + 4:offset + 8]
        if kind == b"IDAT":
            pixels += data[offset + 8:offset + 8 + length]
        offset += 12 + length
    return width, height, len(set(zlib.decompress(pixels)))


@pytest.mark.parametrize("width", [375, 800])
def test_screenshot_for_review(browser, html: str, width: int, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    """A full-page picture at each width (kept in pytest's temp folder for a person to look at):
    as wide as the viewport, as tall as the whole digest, and not blank."""
    page = _open(browser, html, width)
    document_height = page.evaluate("document.documentElement.scrollHeight")
    target = tmp_path_factory.mktemp("screenshots") / f"digest-{width}.png"
    page.screenshot(path=str(target), full_page=True)
    page.close()
    shot_width, shot_height, distinct = png_facts(target.read_bytes())
    assert shot_width == width
    assert shot_height == document_height > 900, "the whole digest, taller than one screen"
    assert distinct > 50, "the picture shows content, not a blank page"


def test_no_horizontal_overflow_on_a_phone(browser, html: str) -> None:  # type: ignore[no-untyped-def]
    page = _open(browser, html, 375)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375 + 1
    # Every title, abstract and link row fits inside its card.
    overflowing = page.evaluate(
        """() => [...document.querySelectorAll('.digest-paper td div')]
              .filter(el => el.scrollWidth > el.clientWidth + 1)
              .map(el => el.textContent.trim().slice(0, 40))"""
    )
    assert overflowing == []
    font_sizes = page.evaluate(
        """() => [...document.querySelectorAll('.digest-paper *')]
              .filter(el => [...el.childNodes].some(n => n.nodeType === 3 && n.data.trim()))
              .map(el => parseFloat(getComputedStyle(el).fontSize))"""
    )
    assert len(font_sizes) >= 16 and min(font_sizes) >= 12
    page.close()


def test_empty_digest_fits_a_phone(browser) -> None:  # type: ignore[no-untyped-def]
    renderer = Renderer(TEMPLATES, sender_name="Paper Digest",
                        search_url="https://arxiv.org/search/?query={query}")
    empty = renderer.render(replace(_digest(), papers=()), LINKS).html
    page = _open(browser, empty, 375)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375 + 1
    assert page.locator(".digest-empty").get_by_text("No new papers matched").is_visible()
    page.close()


def test_content_is_600px_wide_on_a_desktop(browser, html: str) -> None:  # type: ignore[no-untyped-def]
    page = _open(browser, html, 800)
    widths = page.evaluate(
        """() => [...document.querySelectorAll('.digest-header, .digest-paper, .digest-footer')]
              .map(el => el.getBoundingClientRect().width)"""
    )
    assert len(widths) == 6
    assert all(abs(w - 600) <= 2 for w in widths), widths
    left = page.evaluate("document.querySelector('.digest-paper').getBoundingClientRect().left")
    assert abs(left - 100) <= 2  # centred
    page.close()


def test_malicious_titles_run_nothing_and_show_as_text(browser, html: str) -> None:  # type: ignore[no-untyped-def]
    dialogs: list[str] = []
    requests: list[str] = []
    page = browser.new_page(viewport={"width": 800, "height": 900})
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda request: requests.append(request.url))
    page.set_content(html, wait_until="load")
    page.wait_for_timeout(300)  # give any injected onerror handler time to fire

    assert dialogs == []
    assert page.locator("script").count() == 0
    assert page.locator("img").count() == 0
    assert page.evaluate(
        "[...document.querySelectorAll('*')].some(el => [...el.attributes]"
        ".some(a => a.name.startsWith('on')))"
    ) is False
    titles = page.locator(".digest-title a")
    assert titles.all_inner_texts()[:3] == [
        "Linear-Memory Attention for Long Documents", SCRIPT_TITLE, IMG_TITLE
    ]
    for index in range(4):
        assert titles.nth(index).is_visible()
    assert requests == [], "the email loaded something remote"
    page.close()


def test_footer_links_are_visible_and_readable(browser, html: str) -> None:  # type: ignore[no-untyped-def]
    page = _open(browser, html, 375)
    manage = page.get_by_role("link", name="Manage preferences", exact=True)
    unsubscribe = page.get_by_role("link", name="Unsubscribe", exact=True)
    assert manage.is_visible() and unsubscribe.is_visible()
    assert manage.get_attribute("href") == LINKS.manage
    assert unsubscribe.get_attribute("href") == LINKS.unsubscribe
    page.close()
