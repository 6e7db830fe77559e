"""Takes pages from a source into the paper store, one transaction per page, and reports each page.

A Source (the inbox folder, inbox.py; one URL, http.py) yields raw pages; the
parser registry turns bytes into a Page; anything with `page_ingested`/`add_page`
stores it. A page that is rejected or cannot be read is reported in one line
and set aside by its source; the pages after it are still ingested.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from ..errors import PageFormatError, SourceError
from .base import PaperStore, RawPage, Source
from .inbox import Folders, InboxSource
from .parsing import parse

__all__ = [
    "Folders", "InboxSource", "IngestReport", "PageReport", "PaperStore", "RawPage", "Source", "ingest",
    "ingest_from",
]

PageStatus = Literal["ingested", "already ingested", "quarantined", "unreadable"]


@dataclass(frozen=True, slots=True)
class PageReport:
    origin: str  # the path (or URL) the page came from
    status: PageStatus
    new_papers: int = 0
    duplicates: int = 0
    error: str = ""


@dataclass(frozen=True, slots=True)
class IngestReport:
    pages: tuple[PageReport, ...]

    def count(self, status: PageStatus) -> int:
        return sum(1 for page in self.pages if page.status == status)

    @property
    def new_papers(self) -> int:
        return sum(page.new_papers for page in self.pages)

    @property
    def duplicates(self) -> int:
        return sum(page.duplicates for page in self.pages)

    @property
    def quarantined(self) -> tuple[PageReport, ...]:
        return tuple(page for page in self.pages if page.status == "quarantined")

    @property
    def problems(self) -> tuple[PageReport, ...]:
        """Pages rejected or unreadable, in order: each is one line of output and makes the run fail."""
        return tuple(page for page in self.pages if page.status in ("quarantined", "unreadable"))


# Told about each page as soon as it is done (progress on a terminal, `--verbose` lines).
OnPage = Callable[[PageReport], None]


def ingest(papers: PaperStore, folders: Folders, now: datetime, paths: Sequence[Path] = (),
           on_page: OnPage | None = None) -> IngestReport:
    """Ingest the given files and folders, or every page waiting in the inbox."""
    return ingest_from(InboxSource(folders, paths), papers, now, on_page)


def ingest_from(source: Source, papers: PaperStore, now: datetime, on_page: OnPage | None = None) -> IngestReport:
    """Ingest every page a source yields; one bad page never stops the others."""
    reports = []
    for item in source.pages():
        reports.append(ingest_one(source, papers, item, now))
        if on_page is not None:
            on_page(reports[-1])
    return IngestReport(tuple(reports))


def ingest_one(source: Source, papers: PaperStore, item: RawPage | SourceError, now: datetime) -> PageReport:
    if isinstance(item, SourceError):
        return PageReport(item.where, "unreadable", error=set_aside(source, item, str(item)))
    if papers.page_ingested(hashlib.sha256(item.data).hexdigest()):
        source.done(item)  # the same bytes were stored before: no need to parse them again
        return PageReport(item.origin, "already ingested")
    try:
        page = parse(item, now.date())
    except PageFormatError as exc:
        return PageReport(item.origin, "quarantined", error=set_aside(source, item, str(exc)))
    outcome = papers.add_page(page, now)
    source.done(item)
    status: PageStatus = "already ingested" if outcome.already_ingested else "ingested"
    return PageReport(item.origin, status, outcome.new_papers, outcome.duplicates)


def set_aside(source: Source, item: RawPage | SourceError, message: str) -> str:
    """Quarantine the page; the message, plus why it could not be kept if so."""
    try:
        source.quarantine(item, message)
    except SourceError as exc:
        return f"{message} ({exc.problem})"
    return message
