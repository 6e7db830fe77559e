"""Chooses the parser for a raw page; new formats (HTML, JSON, feeds) register here, not in the orchestration.

Pure: reads nothing but the RawPage it is given. The formats shipped with
newsletter are registered at the end of this module; `detect.py` decides which
one a page is in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from ..errors import PageFormatError
from ..models import Page
from ..text import shorten
from .base import Parser, RawPage
from .detect import detect, media_type
from .feeds import parse_feed
from .html import parse_html
from .jsonlist import parse_json_list
from .listing import parse_listing


@dataclass(frozen=True, slots=True)
class PageFormat:
    """A named page format: `accepts` sniffs a raw page (name, first bytes), `parse` reads it."""

    name: str
    accepts: Callable[[RawPage], bool]
    parse: Parser


# The text listing takes whatever no other format claims, as it did before there were others.
LISTING = PageFormat("listing", accepts=lambda raw: True, parse=parse_listing)
FORMATS: list[PageFormat] = []


def register(page_format: PageFormat) -> None:
    """Add a format; formats are tried in the order registered, the listing last."""
    FORMATS.append(page_format)


def format_of(raw: RawPage) -> PageFormat:
    return next((fmt for fmt in FORMATS if fmt.accepts(raw)), LISTING)


def parse(raw: RawPage, today: date) -> Page:
    """Parse with the first format that accepts the page; raises PageFormatError naming the line."""
    return format_of(raw).parse(raw, today)


def refuse_unsupported(raw: RawPage, _today: date) -> Page:
    kind = shorten(media_type(raw.content_type), 60) or "an unknown type"  # the server's words: keep them short
    raise PageFormatError(raw.origin, None, f"the response is {kind}, not a listing, an HTML page, a JSON list "
                                            "or an RSS/Atom feed")


# Whatever no format claims falls through to the listing, which rejects binary and odd text itself.
for _format in (
    PageFormat("unsupported", lambda raw: detect(raw) == "unsupported", refuse_unsupported),
    PageFormat("feed", lambda raw: detect(raw) == "feed", parse_feed),
    PageFormat("json", lambda raw: detect(raw) == "json", parse_json_list),
    PageFormat("html", lambda raw: detect(raw) == "html", parse_html),
):
    register(_format)
