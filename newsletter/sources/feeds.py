"""Parses an Atom or RSS feed with feedparser: each entry's title, summary (as text) and link.

Pure: reads only the RawPage. feedparser is given the bytes as a stream, never
as a string: a string it would take for a URL to fetch or a file name to open,
and a hostile body such as "/etc/passwd" would then be read from this machine.
Summaries are HTML more often than not; only their text is kept. The page's
date is the latest entry date not after today, else the feed's, else today.
"""

from __future__ import annotations

import hashlib
import io
import time
from datetime import UTC, date, datetime
from typing import Any

import feedparser

from ..errors import PageFormatError
from ..models import Link, Page, ParsedPaper
from .base import RawPage
from .html import flat, fragment_text_and_links, plain_text
from .links import classify, extract_links
from .listing import MAX_TITLE_CHARS

MAX_ENTRIES = 5_000
MAX_SUMMARY_CHARS = 20_000
HTML_TYPES = ("text/html", "application/xhtml+xml")


def parse_feed(raw: RawPage, today: date) -> Page:
    """Parse an RSS or Atom feed; PageFormatError names the origin and the entry."""
    feed = read_feed(raw)
    papers: list[ParsedPaper] = []
    days: list[date] = []
    for index, entry in enumerate(feed.entries):
        papers.append(entry_paper(raw.origin, entry, index + 1))
        day = entry_day(entry)
        if day is not None and day <= today:
            days.append(day)
    feed_day = struct_day(feed.feed.get("updated_parsed"))
    fallback = feed_day if feed_day is not None and feed_day <= today else today
    return Page(name=raw.name, sha256=hashlib.sha256(raw.data).hexdigest(), date=max(days, default=fallback),
                papers=tuple(papers))


def read_feed(raw: RawPage) -> Any:
    headers = {"content-location": raw.origin} if raw.origin.lower().startswith(("http://", "https://")) else {}
    if raw.content_type:
        headers["content-type"] = raw.content_type
    # Summaries are reduced to text here, so feedparser need not sanitise or rewrite their markup first.
    feed = feedparser.parse(io.BytesIO(raw.data), response_headers=headers, sanitize_html=False,
                            resolve_relative_uris=False)
    if not feed.get("version") and not feed.entries:
        reason = feed.get("bozo_exception")
        why = f" ({str(reason).strip()})" if reason else ""
        raise PageFormatError(raw.origin, None, f"not an RSS or Atom feed{why}")
    if not feed.entries:
        raise PageFormatError(raw.origin, None, "the feed has no entries")
    if len(feed.entries) > MAX_ENTRIES:
        raise PageFormatError(raw.origin, None, f"{len(feed.entries)} entries; at most {MAX_ENTRIES} papers are "
                                                "read from one page")
    return feed


def entry_paper(origin: str, entry: Any, position: int) -> ParsedPaper:
    where = f"entry {position}"
    title = plain_text(entry.get("title") or "")
    if not title:
        raise PageFormatError(origin, None, f"{where} has no title")
    if len(title) > MAX_TITLE_CHARS:
        raise PageFormatError(origin, None, f"{where}: the title is longer than {MAX_TITLE_CHARS} characters")
    summary, summary_links = entry_summary(entry, origin)
    if not summary:
        raise PageFormatError(origin, None, f"{where} ({title[:60]!r}) has no summary")
    if len(summary) > MAX_SUMMARY_CHARS:
        raise PageFormatError(origin, None, f"{where}: the summary is longer than {MAX_SUMMARY_CHARS} characters")
    link = entry.get("link") or ""
    links = [Link(link, "paper")] if link.lower().startswith(("http://", "https://")) else []
    links += [Link(url, classify(url)) for url in summary_links] + list(extract_links(summary))
    unique: dict[str, Link] = {}
    for found in links:
        unique.setdefault(found.url.lower(), found)
    return ParsedPaper(title=title, abstract=summary, line=position, position=position,
                       links=tuple(unique.values()))


def entry_summary(entry: Any, origin: str) -> tuple[str, list[str]]:
    """The summary's text and the links of its anchors; the full content when there is no summary."""
    detail = entry.get("summary_detail") or next(iter(entry.get("content") or []), None)
    if not detail or not detail.get("value"):
        return "", []
    value = str(detail["value"])
    if detail.get("type") in HTML_TYPES:
        text, links = fragment_text_and_links(value, origin)
        return flat(text), links
    return plain_text(value), []


def entry_day(entry: Any) -> date | None:
    return struct_day(entry.get("published_parsed") or entry.get("updated_parsed"))


def struct_day(value: time.struct_time | None) -> date | None:
    if value is None:
        return None
    return datetime(*value[:6], tzinfo=UTC).date()
