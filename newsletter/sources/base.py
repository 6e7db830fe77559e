"""The contracts of the sources package: raw pages, where they come from, and where parsed pages go.

No I/O here. A Source fetches (a folder today, URLs next); a parser turns a
RawPage's bytes into a Page; a PaperStore keeps the result. The orchestration in
`newsletter.sources` only sees these three shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from ..errors import SourceError
from ..models import Page, PageOutcome


@dataclass(frozen=True, slots=True)
class RawPage:
    """A page as fetched, not yet parsed: its name, where it came from (a path or URL) and its bytes.

    `content_type` is the Content-Type a server sent ("" for a file): a hint to
    the parser registry, checked against the bytes.
    """

    name: str
    origin: str
    data: bytes
    content_type: str = ""


class Source(Protocol):
    """Yields pages (or the error of one that could not be read) and is told what became of each."""

    def pages(self) -> Iterable[RawPage | SourceError]:
        """Every page waiting; a page that cannot be read comes as a SourceError naming it, not a raise."""
        ...

    def done(self, page: RawPage) -> None:
        """The page is stored (or was already): an inbox moves it out of the way."""
        ...

    def quarantine(self, item: RawPage | SourceError, message: str) -> None:
        """The page was rejected with `message`: keep it (or its bytes) with the reason beside it.

        Raises SourceError when it cannot be kept; the page is still reported.
        """
        ...


class PaperStore(Protocol):
    """The part of the store ingest needs: `store.papers`."""

    def page_ingested(self, sha256: str) -> bool: ...

    def add_page(self, page: Page, now: datetime) -> PageOutcome: ...


# A parser is pure: the same bytes and day always give the same Page or PageFormatError.
Parser = Callable[[RawPage, date], Page]
