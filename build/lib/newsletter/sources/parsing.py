"""Chooses the parser for a raw page; new formats (HTML, JSON, feeds) register here, not in the orchestration.

Pure: reads nothing but the RawPage it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from ..models import Page
from .base import Parser, RawPage
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
