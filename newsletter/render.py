"""Reads templates/digest.{mjml,txt}.j2 and a Digest; writes a RenderedEmail (subject, HTML, text).

The MJML template is compiled to HTML by mrml once and cached until the file
changes; each email then costs one Jinja render per part. Jinja expressions
survive MJML compilation as plain text, which is why loops between sections
sit inside <mj-raw>.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import quote, urlsplit

import jinja2
import mrml

from .errors import TemplateError
from .models import Digest, Link, RenderedEmail, ScoredPaper, SubscriberLinks

HTML_TEMPLATE = "digest.mjml.j2"
TEXT_TEMPLATE = "digest.txt.j2"
ABSTRACT_LIMIT = 300
PREVIEW_COLOUR = "#6b7280"

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_KIND_LABELS = {"code": "Code", "project": "Project page", "model": "Model", "data": "Data"}
_SAFE_SCHEMES = ("http", "https")
# mrml writes the hidden preheader div white-on-white, which spam filters score as
# hidden text (SpamAssassin HTML_FONT_LOW_CONTRAST); it stays hidden in a neutral grey.
_PREVIEW_DIV = re.compile(r'(<div style="display:none;[^"]*?color:)#ffffff')
_URL_BREAKERS = re.compile(r"[\x00-\x20\x7f-\x9f\s]")


def sanitize_header(text: str, limit: int = 150) -> str:
    """One safe header line: control characters dropped, whitespace collapsed, cut with "…"."""
    cleaned = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text
    )
    return shorten(cleaned, limit)


def shorten(text: str, limit: int) -> str:
    """Collapse whitespace and cut at a word boundary so the result, with "…", fits in limit."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    head, space, _ = cut.rpartition(" ")
    # A single overlong word is cut mid-word rather than dropped entirely.
    kept = head if space and len(head) >= limit // 2 else cut
    return kept.rstrip(" ,;:.-") + "…"


def wrap(text: str, width: int = 72, indent: int = 0) -> str:
    """Greedy word wrap for the text part; lines after the first are indented, long words kept."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return ("\n" + " " * indent).join(lines)


def format_date(day: date) -> str:
    """13 Mar 2026, independent of the process locale."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def _safe_url(url: str | None) -> str | None:
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


@dataclass(frozen=True, slots=True)
class PaperView:
    """One paper as both templates show it; every field is plain, untrusted text."""

    rank: int
    title: str
    url: str
    abstract: str
    links: tuple[LinkView, ...]
    reason: str
    topics: tuple[str, ...]
    liked: tuple[str, ...]
    terms: tuple[str, ...]
    seen: str  # e.g. "12 Mar 2026", "" when the paper has no sightings


def _link_views(links: tuple[Link, ...]) -> tuple[LinkView, ...]:
    views = []
    for link in links:
        url = _safe_url(link.url)
        if url is None:
            continue
        host = urlsplit(url).netloc.lower().removeprefix("www.")
        views.append(LinkView(url=url, label=_KIND_LABELS.get(link.kind, "Link"), host=host))
    return tuple(views)


def _paper_view(rank: int, scored: ScoredPaper, search_url: str) -> PaperView:
    paper, reason = scored.paper, scored.reason
    title = " ".join(paper.title.split()) or "(untitled)"
    url = _safe_url(paper.url) or search_url.replace("{query}", quote(title, safe=""))
    latest = max((s.page_date for s in paper.sightings), default=None)
    return PaperView(
        rank=rank,
        title=title,
        url=url,
        abstract=shorten(paper.abstract, ABSTRACT_LIMIT),
        links=_link_views(paper.code_links),
        reason=reason.summary(),
        topics=reason.topics,
        liked=reason.liked,
        terms=reason.terms,
        seen=format_date(latest) if latest else "",
    )


class _CachedTemplate:
    """A template file compiled once and again only when its mtime or size changes."""

    def __init__(self, path: Path, compile_: Callable[[str], jinja2.Template]) -> None:
        self.path = path
        self._compile = compile_
        self._key: tuple[int, int] | None = None
        self._template: jinja2.Template | None = None

    def get(self) -> jinja2.Template:
        try:
            stat = os.stat(self.path)
        except OSError as exc:
            raise TemplateError(f"{self.path}: cannot read the template ({exc.strerror})") from exc
        key = (stat.st_mtime_ns, stat.st_size)
        if self._template is None or key != self._key:
            try:  # mrml reports MJML parse errors as OSError
                self._template = self._compile(self.path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, jinja2.TemplateSyntaxError) as exc:
                raise TemplateError(f"{self.path}: {exc}") from exc
            self._key = key
        return self._template


def compile_mjml(source: str) -> str:
    """MJML (with Jinja left in as text) to an HTML Jinja template source, without web fonts."""
    # fonts={} stops mrml adding its default Google Fonts <link>: emails load nothing remote.
    options = mrml.RenderOptions(disable_comments=True, fonts={})
    html = mrml.to_html(source, render_options=options).content
    return _PREVIEW_DIV.sub(rf"\g<1>{PREVIEW_COLOUR}", html, count=1)


class Renderer:
    """Turns a Digest into a RenderedEmail; safe to reuse for every subscriber of a run."""

    def __init__(self, templates_dir: Path, *, sender_name: str, search_url: str) -> None:
        self.sender_name = sender_name
        self.search_url = search_url
        html_env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
        text_env = jinja2.Environment(
            autoescape=False,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        text_env.filters["wrap"] = wrap  # textwrap-based wordwrap was most of the render time
        self._html = _CachedTemplate(
            Path(templates_dir) / HTML_TEMPLATE,
            lambda src: html_env.from_string(compile_mjml(src)),
        )
        self._text = _CachedTemplate(Path(templates_dir) / TEXT_TEMPLATE, text_env.from_string)

    def render(self, digest: Digest, links: SubscriberLinks) -> RenderedEmail:
        papers = [
            _paper_view(rank, scored, self.search_url)
            for rank, scored in enumerate(digest.papers, start=1)
        ]
        issue_date = format_date(digest.issued_at.date())
        subject, preheader = self._headline(papers, issue_date)
        context = self._context(digest, links, papers, issue_date)
        context.update(subject=subject, preheader=preheader)
        html = self._render(self._html, context)
        text = self._render(self._text, context)
        return RenderedEmail(subject=subject, preheader=preheader, html=html, text=text)

    def _headline(self, papers: list[PaperView], issue_date: str) -> tuple[str, str]:
        """Subject and preheader; both may end up in headers, so both are sanitized."""
        prefix = f"{self.sender_name}, {issue_date}"
        if not papers:
            subject = sanitize_header(f"{prefix}: no new papers matched your topics")
            return subject, "No new papers matched your topics this time."
        top = papers[0]
        more = f" (plus {len(papers) - 1} more)" if len(papers) > 1 else ""
        subject = sanitize_header(f"{prefix}: {shorten(top.title, 100)}")
        return subject, sanitize_header(f"Top pick: {shorten(top.title, 150)}{more}", 200)

    @staticmethod
    def _render(cached: _CachedTemplate, context: dict[str, object]) -> str:
        template = cached.get()
        try:
            return template.render(context)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"{cached.path}: {exc}") from exc

    def _context(
        self, digest: Digest, links: SubscriberLinks, papers: list[PaperView], issue_date: str
    ) -> dict[str, object]:
        subscriber = digest.subscriber
        return {
            "sender_name": self.sender_name,
            "issue_date": issue_date,
            "since": format_date(digest.window_start.date()),
            "papers": papers,
            "paper_count": len(papers),
            "candidate_count": digest.candidate_count,
            "subscriber_name": " ".join(subscriber.name.split()),
            "subscriber_email": subscriber.email,
            "topics": subscriber.topics,
            "links": links,
            "digest": digest,
        }
