"""What the templates see of a paper: plain, untrusted text in view objects, links checked to be http(s)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from urllib.parse import quote, urlsplit

from ..models import Link, Paper, PaperVoteLinks, ScoredPaper
from ..text import shorten

ABSTRACT_LIMIT = 300
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_KIND_LABELS = {"code": "Code", "project": "Project page", "model": "Model", "data": "Data"}
_SAFE_SCHEMES = ("http", "https")
_URL_BREAKERS = re.compile(r"[\x00-\x20\x7f-\x9f\s]")


def format_date(day: date) -> str:
    """13 Mar 2026, independent of the process locale."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def wrap(text: str, width: int = 72, indent: int = 0) -> str:
    """Greedy word wrap for the text part; lines after the first are indented, long words kept.

    Not memoised: titles and abstracts are wrapped once per run inside their shared piece
    (render/shared.py), and what is left (each paper's reason, the footer) differs in every email, so a
    cache only cost time and memory. A line is kept as word positions and joined once, at half the cost
    of building it word by word.
    """
    words = text.split()
    joined = " ".join(words)
    if len(joined) <= width:
        return joined
    lines = []
    first, used = 0, len(words[0])  # the current line is words[first:i], `used` characters long
    for i in range(1, len(words)):
        size = len(words[i])
        if used + 1 + size > width:
            lines.append(" ".join(words[first:i]))
            first, used = i, size
        else:
            used += 1 + size
    lines.append(" ".join(words[first:]))
    return ("\n" + " " * indent).join(lines)


def safe_url(url: str | None) -> str | None:
    """The URL if it is plain http(s), else None, so page text cannot inject javascript: links."""
    if not url:
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in _SAFE_SCHEMES or not parts.netloc:
        return None
    if _URL_BREAKERS.search(url):
        return None
    return url


@dataclass(frozen=True, slots=True)
class LinkView:
    url: str
    label: str
    host: str


@dataclass(frozen=True, slots=True, eq=False)
class PaperPart:
    """What a paper shows whoever gets it: made once per run and paper, and the key of its rendered piece
    (render/shared.py). Compared by identity: equal parts made apart only render their piece once more."""

    title: str
    url: str
    abstract: str
    links: tuple[LinkView, ...]
    seen: str  # e.g. "12 Mar 2026", "" when the paper has no sightings


# Not frozen: a frozen dataclass's __init__ costs a call per field, and one is made per paper of every email.
@dataclass(slots=True)
class PaperView:
    """One paper as both templates show it in one email; every text field is plain, untrusted text."""

    rank: int
    shared: PaperPart  # the same for everyone who gets the paper
    reason: str
    topics: tuple[str, ...]
    liked: tuple[str, ...]
    terms: tuple[str, ...]
    paper_id: int = 0  # keys the paper's "more / less like this" links (SubscriberLinks.votes)
    vote: PaperVoteLinks | None = None  # this subscriber's "more / less like this" links for the paper

    # The shared fields under their own names too, for templates written before the shared part.
    @property
    def title(self) -> str:
        return self.shared.title

    @property
    def url(self) -> str:
        return self.shared.url

    @property
    def abstract(self) -> str:
        return self.shared.abstract

    @property
    def links(self) -> tuple[LinkView, ...]:
        return self.shared.links

    @property
    def seen(self) -> str:
        return self.shared.seen


def link_views(links: tuple[Link, ...]) -> tuple[LinkView, ...]:
    views = []
    for link in links:
        url = safe_url(link.url)
        if url is None:
            continue
        host = urlsplit(url).netloc.lower().removeprefix("www.")
        views.append(LinkView(url=url, label=_KIND_LABELS.get(link.kind, "Link"), host=host))
    return tuple(views)


@lru_cache(maxsize=4096)
def short_abstract(abstract: str) -> str:
    """The abstract as the digest shows it. Memoised: one run shows the same few hundred papers to
    thousands of subscribers, and shortening a long abstract cost more than the rest of the view."""
    return shorten(abstract, ABSTRACT_LIMIT)


def paper_view(rank: int, scored: ScoredPaper, shared: PaperPart, vote: PaperVoteLinks | None = None) -> PaperView:
    """The paper as one email shows it: its shared part (paper_part) and this subscriber's rank, reason, links."""
    reason = scored.reason
    return PaperView(rank, shared, reason.summary(), reason.topics, reason.liked, reason.terms, scored.paper.id, vote)


@lru_cache(maxsize=4096)
def paper_part(paper: Paper, search_url: str) -> PaperPart:
    """The paper's shared part: made once per run and paper, not once per subscriber (the same few hundred
    papers go to thousands of people), and the same object each time, which its rendered piece is kept by."""
    title = " ".join(paper.title.split()) or "(untitled)"
    url = safe_url(paper.url) or search_url.replace("{query}", quote(title, safe=""))
    latest = max((s.page_date for s in paper.sightings), default=None)
    return PaperPart(title, url, short_abstract(paper.abstract), link_views(paper.code_links),
                     format_date(latest) if latest else "")
