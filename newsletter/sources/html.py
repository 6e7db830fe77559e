"""Parses an HTML page of the listing: the markup becomes lines of text, then the listing rules apply.

Pure: reads only the RawPage. Block elements end a line, `<br>` too, and
`<pre>` keeps its own line breaks; scripts, styles, navigation, headers and
footers are dropped; the parser decodes entities, so only text is kept, never
markup. A title's link becomes the paper's URL; links in an abstract are kept
with the kinds `links.classify` gives them. Line numbers in errors count the
lines of that text.

selectolax (the Lexbor engine) parses as browsers do, so broken markup still
gives the text a person sees, and it is fast enough that a page costs
milliseconds.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from datetime import date
from urllib.parse import urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

from ..errors import PageFormatError
from ..models import Link, Page, ParsedPaper
from ..text import one_line
from .base import RawPage
from .detect import charset_of
from .links import classify
from .listing import find_date_line, pair_titles_and_abstracts

# Never text a person reads as part of the listing.
DROPPED = frozenset({"head", "script", "style", "noscript", "template", "nav", "header", "footer", "svg", "math",
                     "iframe", "object", "canvas", "select", "button"})
BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details", "dialog", "div", "dl",
    "dt", "fieldset", "figcaption", "figure", "form", "h1", "h2", "h3", "h4", "h5", "h6", "hgroup", "hr", "html",
    "legend", "li", "main", "ol", "p", "pre", "section", "summary", "table", "tbody", "td", "tfoot", "th", "thead",
    "tr", "ul",
})


# Only text that holds an HTML tag or an entity goes through the HTML parser: abstracts say "the <EOS>
# token" or "a<b" as text, and a parser would swallow them.
HTML_TAGS = ("a|abbr|b|big|blockquote|br|center|code|dd|del|div|dl|dt|em|figcaption|figure|font|h[1-6]|hr|i|iframe|"
             "img|ins|li|link|math|meta|object|ol|p|pre|s|script|small|span|strike|strong|style|sub|sup|svg|table|"
             "tbody|td|th|thead|tr|tt|u|ul")
MARKUP = re.compile(rf"</?(?:{HTML_TAGS})(?:\s[^<>]*)?/?>|&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+\d*);", re.IGNORECASE)


@dataclass(slots=True)
class Line:
    """One line of the page's text and the http(s) links of the anchors on it, in order."""

    text: str
    links: list[str] = field(default_factory=list)


def parse_html(raw: RawPage, today: date) -> Page:
    """Parse an HTML listing page; PageFormatError names the origin and the line of its text."""
    lines = html_lines(raw)
    texts = [line.text for line in lines]
    try:
        date_index, page_date = find_date_line(raw.origin, texts, today)
        papers = pair_titles_and_abstracts(raw.origin, texts, date_index + 1)
    except PageFormatError as exc:
        raise PageFormatError(raw.origin, exc.line, f"{exc.problem} (lines of the page's text, markup removed)") \
            from None
    papers = tuple(with_page_links(paper, lines) for paper in papers)
    return Page(name=raw.name, sha256=hashlib.sha256(raw.data).hexdigest(), date=page_date, papers=papers)


def html_lines(raw: RawPage) -> list[Line]:
    """The non-blank lines of text of an HTML page, with each line's links resolved against its URL."""
    tree = parse_tree(raw)
    root = tree.root
    if root is None:
        return []
    return TextWalker(raw.origin).walk(root)


def parse_tree(raw: RawPage) -> LexborHTMLParser:
    charset = charset_of(raw.content_type)
    if charset:
        # The server's charset wins over the page's <meta>, as in a browser.
        try:
            return LexborHTMLParser(raw.data.decode(charset, errors="replace"))
        except LookupError:
            pass  # an unknown label: let the page's own declaration decide
    return LexborHTMLParser(raw.data, encoding=True)


def plain_text(value: str) -> str:
    """One line of text from a field that may hold markup: tags gone, entities decoded, whitespace collapsed."""
    return flat(html_to_text(value) if MARKUP.search(value) else value)


def flat(text: str) -> str:
    """`one_line`, with a fast path: most abstracts hold no control or separator characters at all."""
    return " ".join(text.split()) if text.isprintable() else one_line(text)


def html_to_text(fragment: str) -> str:
    """An HTML fragment (a feed summary, say) as one line of plain text: tags gone, entities decoded."""
    return fragment_text_and_links(fragment, "")[0]


def fragment_text_and_links(fragment: str, base_url: str) -> tuple[str, list[str]]:
    """An HTML fragment's text on one line, and the http(s) URLs its anchors point to, resolved against base_url."""
    tree = LexborHTMLParser(fragment, is_fragment=True)
    lines = TextWalker(base_url).walk_children(tree.root) if tree.root is not None else []
    return " ".join(line.text for line in lines), [url for line in lines for url in line.links]


class TextWalker:
    """Walks a tree depth first without recursion (a deeply nested page must not overflow the stack)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url if base_url.lower().startswith(("http://", "https://")) else ""
        self.lines: list[Line] = []
        self.words: list[str] = []
        self.links: list[str] = []
        self.pre_depth = 0

    def walk(self, root: LexborNode) -> list[Line]:
        return self._run([(root, False)])

    def walk_children(self, root: LexborNode) -> list[Line]:
        return self._run([(child, False) for child in reversed(list(root.iter(include_text=True)))])

    def _run(self, stack: list[tuple[LexborNode, bool]]) -> list[Line]:
        while stack:
            node, leaving = stack.pop()
            tag = node.tag or ""
            if leaving:
                self.pre_depth -= tag == "pre"
                if tag in BLOCKS:
                    self.end_line()
                continue
            if tag == "-text":
                self.add_text(node.text(deep=False) or "")
            elif tag == "br":
                self.end_line()
            elif tag not in DROPPED and not tag.startswith(("_", "!")):
                self.enter(node, tag)
                stack.append((node, True))
                stack.extend((child, False) for child in reversed(list(node.iter(include_text=True))))
        self.end_line()
        return self.lines

    def enter(self, node: LexborNode, tag: str) -> None:
        if tag in BLOCKS:
            self.end_line()
        self.pre_depth += tag == "pre"
        if tag == "a":
            url = self.resolve(node.attributes.get("href") or "")
            if url and url not in self.links:
                self.links.append(url)

    def add_text(self, text: str) -> None:
        if self.pre_depth:
            first, *rest = text.replace("\r\n", "\n").split("\n")
            self.words.append(first)
            for part in rest:
                self.end_line()
                self.words.append(part)
        else:
            self.words.append(text)

    def end_line(self) -> None:
        # Whitespace collapses as a browser shows it (str.split also takes no-break spaces).
        text = " ".join("".join(self.words).split())
        if text:
            self.lines.append(Line(text, self.links))
            self.links = []
        self.words = []

    def resolve(self, href: str) -> str | None:
        """An absolute http(s) URL, or None for javascript:, mailto:, fragments and the like."""
        href = href.strip()
        if not href or href.startswith("#"):
            return None
        url = urljoin(self.base_url, href) if self.base_url else href
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            return None
        return url


def with_page_links(paper: ParsedPaper, lines: list[Line]) -> ParsedPaper:
    """The title line's first link is the paper's URL; the abstract line's links join those in its text."""
    title_line = lines[paper.line - 1]  # every Line is non-blank, so the abstract is the next one
    abstract_links = lines[paper.line].links if paper.line < len(lines) else []
    links: list[Link] = [Link(title_line.links[0], "paper")] if title_line.links else []
    links += [Link(url, classify(url)) for url in abstract_links]
    unique: dict[str, Link] = {}
    for link in [*links, *paper.links]:
        unique.setdefault(link.url.lower(), link)
    return replace(paper, links=tuple(unique.values()))
