"""The same listing page in the other formats a site may publish: HTML, a JSON list, an RSS feed (tests and bench)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime
from html import escape

from newsletter.models import Page
from newsletter.sources.listing import DATE_LINE


def as_html(text: str) -> str:
    """A listing page as a site would publish it: chrome in header and nav, titles linked, abstracts in <p>."""
    lines = [line.strip() for line in text.splitlines()]
    date_at = next(i for i, line in enumerate(lines) if DATE_LINE.match(line))
    chrome = "".join(f"<li>{escape(line)}</li>" for line in lines[:date_at] if line)
    body = [line for line in lines[date_at + 1:] if line]
    entries = "".join(f'<article><h3><a href="/p/{i}">{escape(t)}</a></h3>\n<p>{escape(a)}</p></article>'
                      for i, (t, a) in enumerate(zip(body[::2], body[1::2], strict=True)))
    return (f"<!DOCTYPE html><html><head><title>Papers</title><script>var d = 'Mar 1';</script></head><body>"
            f"<header><nav><ul>{chrome}</ul></nav></header><main><h2>{escape(lines[date_at])}</h2>{entries}</main>"
            "<footer>About · Terms</footer></body></html>")


def as_json(parsed: Page) -> str:
    return json.dumps([{"title": p.title, "abstract": p.abstract, "published": parsed.date.isoformat()}
                       for p in parsed.papers])


def as_rss(parsed: Page) -> str:
    # An RSS description is HTML: text in it is escaped once for HTML and once more for XML.
    published = format_datetime(datetime(parsed.date.year, parsed.date.month, parsed.date.day, 8, tzinfo=UTC))
    items = "".join(f"<item><title>{escape(p.title)}</title><link>https://example.org/p/{p.position}</link>"
                    f"<description>{escape(escape(p.abstract))}</description><pubDate>{published}</pubDate></item>"
                    for p in parsed.papers)
    return f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>P</title>{items}</channel></rss>'
