"""Reads the digest templates and a Digest; writes a RenderedEmail (subject, preheader, HTML, text).

The MJML template is compiled to HTML by mrml once and cached until the file
changes; each email then costs one Jinja render per part, in which the part of a
paper that is the same for everyone is rendered once per run (shared.py). Jinja expressions
survive MJML compilation as plain text, which is why loops between sections
sit inside <mj-raw>.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import date
from importlib import resources
from pathlib import Path
from typing import cast
from zoneinfo import ZoneInfo

import jinja2
import mrml

from ..errors import TemplateError
from ..models import Digest, Paper, RenderedEmail, SubscriberLinks
from ..text import shorten
from .shared import SharedPieces
from .views import PaperPart, PaperView, format_date, paper_part, paper_view, wrap

HTML_TEMPLATE = "digest.mjml.j2"
TEXT_TEMPLATE = "digest.txt.j2"
PREVIEW_COLOUR = "#6b7280"
SUBJECT_LIMIT = 150
PART_LIMIT = 4096  # papers whose shared part a renderer keeps by identity (a run has a few hundred)
# mrml writes the hidden preheader div white-on-white, which spam filters score as
# hidden text (SpamAssassin HTML_FONT_LOW_CONTRAST); it stays hidden in a neutral grey.
_PREVIEW_DIV = re.compile(r'(<div style="display:none;[^"]*?color:)#ffffff')
_TAG_WITH_ATTRIBUTES = re.compile(r"<([A-Za-z][A-Za-z0-9]*) ")


def shipped_templates() -> Path:
    """The templates installed with the package (the repository's top-level templates/ folder)."""
    return Path(str(resources.files("newsletter.templates")))


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
    html = _PREVIEW_DIV.sub(rf"\g<1>{PREVIEW_COLOUR}", html, count=1)
    # mrml writes a whole section on one line (2,000+ characters); SMTP allows 998. A tag's attributes
    # may be set off by any whitespace, so each starts on a new line: an email's lines stay short and
    # its HTML goes as plain 7bit text rather than quoted-printable (deliver/message.py: _html_part).
    return _TAG_WITH_ATTRIBUTES.sub("<\\1\n", html)


class Renderer:
    """Turns a Digest into a RenderedEmail; safe to reuse for every subscriber of a run."""

    def __init__(self, templates_dir: Path, *, sender_name: str, search_url: str) -> None:
        self.sender_name = sender_name
        self.search_url = search_url
        # Each environment keeps the shared pieces of its template (render/shared.py): one renderer, one store.
        html_env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, extensions=[SharedPieces])
        text_env = jinja2.Environment(
            autoescape=False,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            extensions=[SharedPieces],
        )
        text_env.filters["wrap"] = wrap  # textwrap-based wordwrap was most of the render time
        self._html = _CachedTemplate(
            Path(templates_dir) / HTML_TEMPLATE,
            lambda src: html_env.from_string(compile_mjml(src)),
        )
        self._text = _CachedTemplate(Path(templates_dir) / TEXT_TEMPLATE, text_env.from_string)
        self._parts: dict[int, tuple[Paper, PaperPart]] = {}  # by id(paper); see _shared_part
        self._pieces = [env.extensions[SharedPieces.identifier] for env in (html_env, text_env)]

    def _shared_part(self, paper: Paper) -> PaperPart:
        """paper_part, found by the paper object first: a run hands the same Paper to every digest, and
        hashing a paper (all its fields, sightings and links) for paper_part's cache cost more than the rest."""
        known = self._parts.get(id(paper))
        if known is not None and known[0] is paper:  # the entry holds the paper, so its id is not reused
            return known[1]
        if len(self._parts) >= PART_LIMIT:
            self._parts.clear()
        part = paper_part(paper, self.search_url)
        self._parts[id(paper)] = (paper, part)
        return part

    def cached_pieces(self) -> int:
        """How many shared pieces (render/shared.py) this renderer holds now, both templates together."""
        return sum(len(cast(SharedPieces, ext).pieces) for ext in self._pieces)

    def render(self, digest: Digest, links: SubscriberLinks) -> RenderedEmail:
        votes = links.votes
        papers = [
            paper_view(rank, scored, self._shared_part(scored.paper), votes.get(scored.paper.id))
            for rank, scored in enumerate(digest.papers, start=1)
        ]
        issue_date = format_date(local_date(digest))
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
            subject = shorten(f"{prefix}: no new papers matched your topics", SUBJECT_LIMIT)
            return subject, "No new papers matched your topics this time."
        top = papers[0]
        more = f" (plus {len(papers) - 1} more)" if len(papers) > 1 else ""
        subject = shorten(f"{prefix}: {shorten(top.title, 100)}", SUBJECT_LIMIT)
        return subject, shorten(f"Top pick: {shorten(top.title, 150)}{more}", 200)

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
            "late_note": late_note(digest),
            "papers": papers,
            "paper_count": len(papers),
            "candidate_count": digest.candidate_count,
            "subscriber_name": " ".join(subscriber.name.split()),
            "subscriber_email": subscriber.email,
            "topics": subscriber.topics,
            # The footer's list, joined here rather than by a loop in each template (a loop costs more than
            # the rest of the footer); escaping it whole equals escaping each topic, as quotes and commas
            # need none.
            "quoted_topics": ", ".join(f"“{topic}”" for topic in subscriber.topics),
            "links": links,
            "digest": digest,
        }


def local_date(digest: Digest) -> date:
    """The day the digest is for, on the subscriber's calendar: its slot, or today where they live."""
    if digest.slot is not None:
        return digest.slot
    return digest.issued_at.astimezone(ZoneInfo(digest.subscriber.schedule.timezone)).date()


def late_note(digest: Digest) -> str:
    """One sentence for a digest that goes out well after its slot (the service was down); "" otherwise."""
    if not digest.late or digest.slot is None:
        return ""
    schedule = digest.subscriber.schedule
    return (f"This digest was due on {format_date(digest.slot)} at {schedule.time:%H:%M} ({schedule.timezone}) "
            "and comes late: the digest service was not running then.")
