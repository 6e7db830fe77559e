"""Render stage: real Jinja2 and mrml output, parsed with html.parser and checked."""

from __future__ import annotations

import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import jinja2
import pytest
from builders import digest as build_digest
from builders import paper as make_paper

from newsletter import render
from newsletter.errors import TemplateError
from newsletter.models import (
    Digest,
    Link,
    Paper,
    Reason,
    SubscriberLinks,
)
from newsletter.render import Renderer
from newsletter.render.views import ABSTRACT_LIMIT, wrap
from newsletter.text import shorten

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
SEARCH = "https://arxiv.org/search/?searchtype=title&query={query}"
LINKS = SubscriberLinks(
    manage="https://digest.example.org/manage?token=abc.def&s=alice",
    unsubscribe="https://digest.example.org/unsubscribe?token=xyz.123&s=alice",
    one_click="https://digest.example.org/one-click?token=xyz",
    unsubscribe_mailto="mailto:unsubscribe@example.org?subject=xyz",
)
SCRIPT_TITLE = "<script>alert(1)</script>"
IMG_TITLE = '"><img src=x onerror=alert(1)>'
GMAIL_CLIP_BYTES = 102 * 1000  # Gmail clips at "102 KB"; count it the strict way


def make_digest(*papers: Paper, reasons: tuple[Reason, ...] = ()) -> Digest:
    return build_digest(*papers, reasons=reasons, candidate_count=42)


def three_links(pid: int) -> tuple[Link, ...]:
    return (
        Link(f"https://github.com/lab/repo{pid}", "code"),
        Link(f"https://lab.example.org/project{pid}", "project"),
        Link(f"https://huggingface.co/lab/model{pid}", "model"),
    )


BLOCKS = {"div", "p", "td", "tr", "table", "br"}


class Parsed(HTMLParser):
    """Elements with their attributes, anchors with their text, and all visible text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.anchors: list[tuple[str | None, str]] = []
        self.chunks: list[str] = []
        self._anchor: list[str] | None = None
        self._href: str | None = None
        self._skip = 0
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag in BLOCKS:
            self.chunks.append(" ")
        if tag == "a":
            self._anchor, self._href = [], dict(attrs).get("href")
        if tag in ("style", "title", "script"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in BLOCKS:
            self.chunks.append(" ")
        if tag == "a" and self._anchor is not None:
            self.anchors.append((self._href, " ".join("".join(self._anchor).split())))
            self._anchor = None
        if tag in ("style", "title", "script"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.chunks.append(data)
        if self._anchor is not None:
            self._anchor.append(data)

    @property
    def text(self) -> str:
        return " ".join("".join(self.chunks).split())

    def tags(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.elements if tag == name]

    def href_of(self, text: str) -> list[str | None]:
        return [href for href, label in self.anchors if label == text]


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(TEMPLATES, sender_name="Paper Digest", search_url=SEARCH)


def test_malicious_titles_are_visible_text_never_markup(renderer: Renderer) -> None:
    digest = make_digest(
        make_paper(1, SCRIPT_TITLE, url=None),
        make_paper(2, IMG_TITLE, abstract="<b onmouseover=alert(2)>bold</b> & more"),
    )
    email = renderer.render(digest, LINKS)
    parsed = Parsed(email.html)

    assert parsed.tags("script") == []
    assert parsed.tags("img") == []
    assert not any(
        name.startswith("on") for _, attrs in parsed.elements for name in attrs
    ), "an event-handler attribute leaked into the HTML"
    assert SCRIPT_TITLE in parsed.text
    assert IMG_TITLE in parsed.text
    assert "<b onmouseover=alert(2)>bold</b> & more" in parsed.text
    # The search link built from the title is URL-quoted, so it cannot break out of href.
    assert parsed.href_of(SCRIPT_TITLE) == [SEARCH.replace("{query}", quote(SCRIPT_TITLE, safe=""))]
    assert parsed.href_of(IMG_TITLE) == ["https://arxiv.org/abs/2603.00002"]
    # The preheader (top title) is escaped too.
    assert SCRIPT_TITLE in email.preheader
    assert "&lt;script&gt;" in email.html


def test_titles_link_to_the_paper_or_to_a_title_search(renderer: Renderer) -> None:
    title = "Graph Transformers & Friends: 100% Linear?"
    digest = make_digest(make_paper(1, "Known URL"), make_paper(2, title, url=None))
    parsed = Parsed(renderer.render(digest, LINKS).html)
    assert parsed.href_of("Known URL") == ["https://arxiv.org/abs/2603.00001"]
    expected = "https://arxiv.org/search/?searchtype=title&query=" + quote(title, safe="")
    assert parsed.href_of(title) == [expected]


def test_non_http_urls_from_pages_are_never_linked(renderer: Renderer) -> None:
    links = (Link("javascript:alert(1)", "code"), Link("https://github.com/ok/ok", "code"))
    paper = make_paper(1, "Sneaky", url="javascript:alert(document.cookie)", links=links)
    email = renderer.render(make_digest(paper), LINKS)
    hrefs = [attrs.get("href") or "" for attrs in Parsed(email.html).tags("a")]
    assert not any(h.lower().startswith("javascript:") for h in hrefs)
    assert SEARCH.replace("{query}", "Sneaky") in hrefs
    assert "https://github.com/ok/ok" in hrefs
    assert "javascript:" not in email.text


def test_footer_links_are_exact(renderer: Renderer) -> None:
    for digest in (make_digest(make_paper(1, "A paper")), make_digest()):
        email = renderer.render(digest, LINKS)
        parsed = Parsed(email.html)
        assert parsed.href_of("Manage preferences") == [LINKS.manage]
        assert parsed.href_of("Unsubscribe") == [LINKS.unsubscribe]
        assert "alice@example.org" in parsed.text
        assert "You get this email because" in parsed.text
        assert f"Manage preferences: {LINKS.manage}" in email.text
        assert f"Unsubscribe: {LINKS.unsubscribe}" in email.text


def test_code_links_are_labelled_by_kind(renderer: Renderer) -> None:
    links = (*three_links(7), Link("https://zenodo.org/records/1", "data"))
    email = renderer.render(make_digest(make_paper(7, "With code", links=links)), LINKS)
    anchors = {label: href for href, label in Parsed(email.html).anchors}
    assert anchors["Code · github.com"] == "https://github.com/lab/repo7"
    assert anchors["Project page · lab.example.org"] == "https://lab.example.org/project7"
    assert anchors["Model · huggingface.co"] == "https://huggingface.co/lab/model7"
    assert anchors["Data · zenodo.org"] == "https://zenodo.org/records/1"
    assert "Code: https://github.com/lab/repo7" in email.text
    assert "Data: https://zenodo.org/records/1" in email.text


def test_each_paper_shows_rank_reason_abstract_and_sighting(renderer: Renderer) -> None:
    reason = Reason(topics=("graph neural networks",), terms=("message passing",))
    long_abstract = " ".join(["Message passing on graphs scales poorly."] * 60)
    digest = make_digest(
        make_paper(1, "First", abstract=long_abstract), make_paper(2, "Second"), reasons=(reason,)
    )
    email = renderer.render(digest, LINKS)
    text = Parsed(email.html).text
    assert re.search(r"#1 .*First .*#2 .*Second", text)
    assert reason.summary() in text
    assert "Chosen as the closest match to your profile." in text  # the default Reason
    assert "Listed 12 Mar 2026" in text
    assert long_abstract not in text
    short = shorten(long_abstract, ABSTRACT_LIMIT)
    assert short.endswith("…") and len(short) <= ABSTRACT_LIMIT
    assert short in text
    assert reason.summary() in " ".join(email.text.split())
    assert short in " ".join(email.text.split())


def test_mj_raw_loops_survive_compilation(renderer: Renderer) -> None:
    papers = [make_paper(i, f"Paper number {i}") for i in range(1, 6)]
    parsed = Parsed(renderer.render(make_digest(*papers), LINKS).html)
    cards = [a for a in parsed.tags("div") if "digest-paper" in (a.get("class") or "")]
    assert len(cards) == 5
    assert not re.search(r"\{[{%]|[%}]\}", parsed.text), "Jinja syntax leaked into the email"


def test_twenty_long_papers_stay_under_gmail_clipping(renderer: Renderer) -> None:
    abstract = ("Transformers with sparse attention reach long contexts cheaply. " * 40)[:1900]
    papers = [
        make_paper(i, f"A reasonably long paper title about topic {i} " * 3, abstract=abstract,
                   links=three_links(i))
        for i in range(1, 21)
    ]
    reasons = tuple(Reason(topics=("long context",), liked=("Longformer",), terms=("sparse",))
                    for _ in papers)
    email = renderer.render(make_digest(*papers, reasons=reasons), LINKS)
    size = len(email.html.encode("utf-8"))
    assert size < GMAIL_CLIP_BYTES, f"HTML is {size} bytes, Gmail clips at {GMAIL_CLIP_BYTES}"
    # Every tag's attributes start a line, so even this email's lines fit SMTP's 998 with room to spare
    # (its HTML then goes as 7bit, not quoted-printable), and the browser sees the same document.
    assert max(len(line) for line in email.html.splitlines()) < 600
    assert len(Parsed(email.html).tags("a")) == len(Parsed(email.html.replace("\n", " ")).tags("a")) > 60
    assert len(Parsed(email.html).href_of("Code · github.com")) == 20


def test_subject_names_the_date_and_the_top_paper(renderer: Renderer) -> None:
    email = renderer.render(make_digest(make_paper(1, "Top One"), make_paper(2, "Next")), LINKS)
    assert email.subject == "Paper Digest, 13 Mar 2026: Top One"
    assert email.preheader == "Top pick: Top One (plus 1 more)"


def test_subject_cannot_carry_injected_headers(renderer: Renderer) -> None:
    email = renderer.render(make_digest(make_paper(1, "Evil\r\nBcc: x@y\n\tmore\x00\x1b")), LINKS)
    for value in (email.subject, email.preheader):
        assert not any(ord(ch) < 32 for ch in value), repr(value)
    assert email.subject == "Paper Digest, 13 Mar 2026: Evil Bcc: x@y more"


def test_long_subject_is_truncated(renderer: Renderer) -> None:
    email = renderer.render(make_digest(make_paper(1, "word " * 100)), LINKS)
    assert len(email.subject) <= render.SUBJECT_LIMIT and email.subject.endswith("…")
    assert len(email.preheader) <= 200 and email.preheader.endswith("…")


def test_empty_digest_says_nothing_matched(renderer: Renderer) -> None:
    email = renderer.render(make_digest(), LINKS)
    text = Parsed(email.html).text
    assert email.subject == "Paper Digest, 13 Mar 2026: no new papers matched your topics"
    assert "No new papers matched your topics this time." in text
    assert "42 new papers since 6 Mar 2026" in text
    assert "No new papers matched your topics this time." in email.text
    assert email.preheader and "\n" not in email.preheader


def test_preview_div_is_hidden_but_not_white(renderer: Renderer) -> None:
    email = renderer.render(make_digest(make_paper(1, "Preview me")), LINKS)
    previews = [
        attrs for attrs in Parsed(email.html).tags("div")
        if "display:none" in (attrs.get("style") or "").replace(" ", "")
    ]
    assert len(previews) == 1
    style = (previews[0]["style"] or "").lower().replace(" ", "")
    assert "color:#ffffff" not in style and "color:#fff;" not in style
    assert f"color:{render.PREVIEW_COLOUR}" in style
    assert "opacity:0" in style and "max-height:0px" in style
    body = email.html[email.html.index("<body"):]
    assert body.index("Top pick: Preview me") < body.index('role="article"')


def test_no_remote_fonts_or_stylesheets(renderer: Renderer) -> None:
    html = renderer.render(make_digest(make_paper(1, "Fonts")), LINKS).html
    assert "fonts.googleapis.com" not in html
    assert "@import" not in html
    assert Parsed(html).tags("link") == []
    assert "-apple-system" in html  # the system font stack from mj-attributes


def test_text_part_is_plain_and_readable(renderer: Renderer) -> None:
    digest = make_digest(
        make_paper(1, "Fish & Chips <3", links=three_links(1)),
        make_paper(2, SCRIPT_TITLE, url=None),
        reasons=(Reason(liked=("Fish stew",)),),
    )
    text = renderer.render(digest, LINKS).text
    assert text.startswith("Paper Digest, 13 Mar 2026\n")
    assert "\n1. Fish & Chips <3\n   https://arxiv.org/abs/2603.00001\n" in text
    assert f"\n2. {SCRIPT_TITLE}\n" in text  # autoescape is off for the text part
    assert "&amp;" not in text and "&lt;" not in text
    assert "Code: https://github.com/lab/repo1" in text
    assert "Why this paper: Is similar to “Fish stew”." in text
    assert text.index("Why this paper") < text.index("\n2. ")
    assert text.rstrip().endswith(f"Unsubscribe: {LINKS.unsubscribe}")
    assert max(len(line) for line in text.splitlines() if "://" not in line) <= 80


def test_mjml_is_compiled_once_and_again_after_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    compiled: list[str] = []
    real = render.compile_mjml

    def counting(source: str) -> str:
        compiled.append(source)
        return real(source)

    monkeypatch.setattr(render, "compile_mjml", counting)
    renderer = Renderer(tmp_path / "templates", sender_name="Paper Digest", search_url=SEARCH)
    digest = make_digest(make_paper(1, "Same"))
    first = renderer.render(digest, LINKS)
    renderer.render(digest, LINKS)
    renderer.render(digest, LINKS)
    assert len(compiled) == 1
    assert "Why this paper:" in first.html

    for name, old, new in (("digest.mjml.j2", "Why this paper:", "Picked because:"),
                           ("digest.txt.j2", "Why this paper:", "Picked because:")):
        path = tmp_path / "templates" / name
        path.write_text(path.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
        stat = path.stat()  # same-second edits must still be seen, so push mtime on
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))

    second = renderer.render(digest, LINKS)
    assert len(compiled) == 2
    assert "Picked because:" in second.html and "Why this paper:" not in second.html
    assert "Picked because:" in second.text


@pytest.mark.parametrize("name", ["digest.mjml.j2", "digest.txt.j2"])
def test_unknown_variable_in_a_custom_template_raises(tmp_path: Path, name: str) -> None:
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    path = tmp_path / "templates" / name
    source = path.read_text(encoding="utf-8")
    marker = "Manage preferences"
    path.write_text(source.replace(marker, marker + " {{ no_such_variable }}"), encoding="utf-8")
    renderer = Renderer(tmp_path / "templates", sender_name="Paper Digest", search_url=SEARCH)
    with pytest.raises(TemplateError, match="no_such_variable") as caught:
        renderer.render(make_digest(make_paper(1, "Any")), LINKS)
    assert isinstance(caught.value.__cause__, jinja2.UndefinedError)
    assert name in str(caught.value)


def test_broken_mjml_is_a_template_error(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    (tmp_path / "templates" / "digest.mjml.j2").write_text("<mjml><mj-body><mj-section>")
    renderer = Renderer(tmp_path / "templates", sender_name="Paper Digest", search_url=SEARCH)
    with pytest.raises(TemplateError, match="digest.mjml.j2"):
        renderer.render(make_digest(), LINKS)


def test_template_keeps_jinja_out_of_mjml_attributes_and_angle_brackets() -> None:
    source = (TEMPLATES / "digest.mjml.j2").read_text(encoding="utf-8")
    assert not re.search(r"<mj-[^>]*\{[{%]", source), "Jinja inside an MJML tag's attributes"
    for expr in re.findall(r"\{\{.*?\}\}|\{%.*?%\}", source, flags=re.DOTALL):
        assert "<" not in expr and ">" not in expr, expr
    # Loops and conditionals between MJML components must sit in <mj-raw>; inside
    # ending tags such as <mj-text> the content is HTML and Jinja is safe there.
    outside = re.sub(r"<(mj-raw|mj-text|mj-title|mj-preview)\b.*?</\1>", "", source, flags=re.DOTALL)
    assert "{%" not in outside and "{{" not in outside, "bare Jinja between MJML components"


def test_wrap_keeps_long_words_and_indents_continuation_lines() -> None:
    assert wrap("aaa bbb ccc", 7, indent=2) == "aaa bbb\n  ccc"
    url = "https://example.org/" + "x" * 80
    assert wrap(f"see {url} now", 20) == f"see\n{url}\nnow"
    assert wrap("", 10) == ""
