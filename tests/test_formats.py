"""Page formats beyond the text listing: HTML, JSON list, RSS/Atom feeds, detection, and what is refused."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from builders import listing_page
from page_formats import as_html, as_json, as_rss

from helpers import shared_pages
from newsletter.errors import PageFormatError
from newsletter.sources import Folders, ingest
from newsletter.sources.base import RawPage
from newsletter.sources.detect import detect
from newsletter.sources.parsing import format_of, parse
from newsletter.store import open_store

FORMATS = Path(__file__).parent / "data" / "formats"
ORIGIN = "https://papers.example.org/daily/"
TODAY = date(2026, 3, 20)
SPARSE = "Sparse Attention for Long-Context Retrieval"
GRAPH = "Graph Neural Networks Without Message Passing"


def fixture(name: str, content_type: str = "") -> RawPage:
    return RawPage(name, ORIGIN + name, (FORMATS / name).read_bytes(), content_type)


def raw(data: str | bytes, content_type: str = "", name: str = "page") -> RawPage:
    return RawPage(name, ORIGIN + name, data.encode() if isinstance(data, str) else data, content_type)


def rejection(page: RawPage) -> str:
    with pytest.raises(PageFormatError) as caught:
        parse(page, TODAY)
    return str(caught.value)


# -- HTML ---------------------------------------------------------------------------------------


def test_html_listing_becomes_papers_with_their_links():
    page = parse(fixture("listing.html", "text/html; charset=utf-8"), TODAY)
    assert page.date == date(2026, 3, 13)
    first, second = page.papers
    # Entities decoded (&amp;, &#8209;), whitespace collapsed, markup gone.
    assert first.title == "Sparse Attention for Long\u2011Context Retrieval & Ranking"
    assert first.abstract == "We study sparse attention for long documents. Code is at our repository."
    # The title's link, resolved against the page's URL, is the paper's URL; the abstract's anchor is code.
    assert [(link.url, link.kind) for link in first.links] == [
        ("https://papers.example.org/papers/2403.01234", "paper"), ("https://github.com/example/sparse", "code")]
    assert second.title == GRAPH
    assert second.abstract == "A graph network that uses no messages <at all>."  # decoded text, not a tag
    assert second.links == ()


def test_html_drops_scripts_styles_navigation_header_and_footer():
    page = parse(fixture("listing.html"), TODAY)
    text = " ".join(p.title + " " + p.abstract for p in page.papers)
    for chrome in ("alert", "document.write", "color: red", "Log in", "Trending", "Terms", "2026 Example"):
        assert chrome not in text
    # The script's "Mar 14" and the navigation's "Mar 12" are not taken for the page's date.
    assert page.date == date(2026, 3, 13)


def test_html_errors_name_the_url_and_the_line_of_the_text():
    html = "<html><body><p>Mar 13</p><h3>A Title</h3><p>An abstract.</p><h3>A Title Without Abstract</h3></body>"
    message = rejection(raw(html, "text/html", "x.html"))
    assert message.startswith(f"{ORIGIN}x.html:4: title 'A Title Without Abstract' has no abstract")
    assert "markup removed" in message


def test_html_charset_from_the_header_or_the_meta_tag():
    body = "<html><body><p>Mar 13</p><h3>Café Networks</h3><p>Naïve résumé parsing.</p></body></html>"
    from_header = parse(raw(body.encode("cp1252"), "text/html; charset=windows-1252"), TODAY)
    assert from_header.papers[0].title == "Café Networks"
    with_meta = '<html><head><meta charset="windows-1252"></head>' + body.removeprefix("<html>")
    assert parse(raw(with_meta.encode("cp1252"), "text/html"), TODAY).papers[0].abstract == "Naïve résumé parsing."


def test_html_pre_keeps_its_lines_and_deep_nesting_does_not_overflow():
    pre = "<html><body><pre>Papers\nMar 13\n\nA Title\nAn abstract &amp; more.\n</pre></body></html>"
    (paper,) = parse(raw(pre, "text/html"), TODAY).papers
    assert (paper.title, paper.abstract) == ("A Title", "An abstract & more.")
    deep = "<html><body>" + "<div>" * 20_000 + "Mar 13<p>Deep Title</p><p>Deep abstract.</p>" + "</body></html>"
    assert [p.title for p in parse(raw(deep, "text/html"), TODAY).papers] == ["Deep Title"]


def test_html_ignores_links_that_are_not_http():
    html = ('<html><body><p>Mar 13</p><h3><a href="javascript:alert(1)">T</a> <a href="mailto:a@b.org">m</a></h3>'
            '<p>An abstract.</p></body></html>')
    assert parse(raw(html, "text/html"), TODAY).papers[0].links == ()


# -- JSON ---------------------------------------------------------------------------------------


def test_json_list_becomes_papers():
    page = parse(fixture("papers.json", "application/json"), TODAY)
    assert page.date == date(2026, 3, 13)  # the latest published day
    first, second = page.papers
    assert (first.title, first.position) == (SPARSE, 1)
    assert [(link.url, link.kind) for link in first.links] == [
        ("https://arxiv.org/abs/2403.01234", "paper"), ("https://github.com/example/sparse", "code")]
    assert second.abstract == "A graph network that uses no messages & no edges."  # markup reduced to text
    assert second.links == ()


def item(**fields: object) -> dict[str, object]:
    return {"title": "A Title", "summary": "An abstract.", **fields}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"title": "x"}, "expected a JSON list of papers ([{...}, ...]), found an object"),
        ([], "the list holds no papers"),
        ([item(), "a string"], "item [1]: expected an object with a title and a summary, found a string"),
        ([{"summary": "An abstract."}], "item [0]: has no title"),
        ([{"title": "A Title"}], "item [0]: has no summary (or abstract)"),
        ([item(title=5)], "item [0].title: must be a string, found a number"),
        ([item(title=" <b></b> ")], "item [0].title: is empty"),
        ([item(title="x" * 401)], "item [0].title: longer than 400 characters"),
        ([item(abstract="Another.")], "item [0]: has both summary and abstract; give one"),
        ([item(url="javascript:alert(1)")], "item [0].url: must be an http(s) URL, found 'javascript:alert(1)'"),
        ([item(), item(published="13 March")], 'item [1].published: must be an ISO date such as "2026-03-13"'),
        ([item(published=20260313)], "item [0].published: must be an ISO date"),
        ([item()] * 5_001, "5001 items; at most 5000 papers are read from one page"),
    ],
)
def test_json_list_errors_name_the_item_and_the_field(data, expected):
    assert rejection(raw(json.dumps(data), "application/json")).startswith(f"{ORIGIN}page: {expected}")


@pytest.mark.parametrize(
    ("summary", "text"),
    [
        ("the last <EOS> token", "the last <EOS> token"),  # not a tag: kept as written
        ("if x<y and y>z", "if x<y and y>z"),
        ("<p>We <b>study</b> x &amp; y.</p><script>alert(1)</script>", "We study x & y."),
        ("caf&eacute; &#x2013; bar", "caf\u00e9 \u2013 bar"),
        ("two\nlines\u2028here", "two lines here"),
    ],
)
def test_json_text_keeps_angle_brackets_that_are_not_markup(summary, text):
    (paper,) = parse(raw(json.dumps([item(summary=summary)]), "application/json"), TODAY).papers
    assert paper.abstract == text


def test_json_that_does_not_parse_names_the_line():
    message = rejection(raw('[\n{"title": "A Title",\n "summary": }\n]', "application/json"))
    assert message.startswith(f"{ORIGIN}page:3: not valid JSON: Expecting value")


def test_json_nested_too_deeply_is_refused_not_a_crash():
    assert "nested too deeply" in rejection(raw("[" * 100_000 + "]" * 100_000, "application/json"))


# -- feeds --------------------------------------------------------------------------------------


def test_atom_feed_becomes_papers_with_text_summaries():
    page = parse(fixture("feed.atom", "application/atom+xml"), TODAY)
    assert page.date == date(2026, 3, 13)
    first, second = page.papers
    assert first.title == SPARSE
    assert first.abstract == "We study sparse attention & long documents."  # tags and the script gone
    assert first.links[0].url == "https://arxiv.org/abs/2403.01234"
    assert second.links[0].url == "https://papers.example.org/papers/2"  # resolved against the feed's URL


def test_rss_feed_keeps_the_summary_anchors_as_links():
    first, second = parse(fixture("feed.rss"), TODAY).papers  # no content type: the bytes say RSS
    assert first.abstract == "We study sparse attention for long documents. See the code."
    assert [(link.url, link.kind) for link in first.links] == [
        ("https://arxiv.org/abs/2403.01234", "paper"), ("https://github.com/example/sparse", "code")]
    assert second.title == GRAPH


def test_feed_entry_without_a_title_is_named():
    feed = (FORMATS / "feed.rss").read_text().replace("<title>Graph Neural Networks Without Message Passing</title>",
                                                     "")
    assert rejection(raw(feed, "application/rss+xml")) == f"{ORIGIN}page: entry 2 has no title"


def test_xml_that_is_not_a_feed_is_refused():
    message = rejection(raw("<?xml version='1.0'?><note><to>Ada</to></note>", "application/xml"))
    assert message.startswith(f"{ORIGIN}page: not an RSS or Atom feed")


def test_a_feed_body_naming_a_local_file_is_not_read_from_disk(tmp_path):
    # feedparser opens a *string* as a file name; the body must reach it as bytes in a stream.
    local = tmp_path / "local-feed.rss"
    local.write_bytes((FORMATS / "feed.rss").read_bytes())
    assert "not an RSS or Atom feed" in rejection(raw(str(local), "application/rss+xml"))


# -- detection and refusal ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type", "data", "kind"),
    [
        ("p", "", b"<?xml version='1.0'?>\n<!-- hi --><rss version='2.0'></rss>", "feed"),
        ("p", "text/html", b"\xef\xbb\xbf<feed xmlns='http://www.w3.org/2005/Atom'></feed>", "feed"),
        ("p", "text/plain", b"<!DOCTYPE html><html><body></body></html>", "html"),
        ("p", "", b'  [{"title": "x"}]', "json"),
        ("p", "text/plain", b"[Skip to content]\nMar 13\n", "listing"),  # looks like JSON, is not
        ("p", "text/html; charset=utf-8", b"<div>fragment</div>", "html"),
        ("p", "application/vnd.api+json", b"not json at all", "json"),
        ("p", "application/rss+xml", b"", "feed"),
        ("p.html", "", b"<div>fragment</div>", "html"),
        ("p.json", "", b"oops", "json"),
        ("p.txt", "", b"Papers\nMar 13\n", "listing"),
        ("p", "application/octet-stream", b"Papers\nMar 13\n", "listing"),
        ("p", "text/markdown", b"Papers\nMar 13\n", "listing"),
        ("p", "image/png", b"\x89PNG\r\n\x1a\n", "unsupported"),
        ("p", "application/pdf", b"%PDF-1.7", "unsupported"),
    ],
)
def test_detection_from_content_and_content_type(name, content_type, data, kind):
    assert detect(RawPage(name, ORIGIN + name, data, content_type)) == kind


def test_unsupported_response_is_refused_with_its_type():
    message = rejection(raw(b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"))
    assert message == f"{ORIGIN}page: the response is image/png, not a listing, an HTML page, a JSON list " \
                      "or an RSS/Atom feed"


def test_listing_is_still_the_fallback():
    page = raw(listing_page("Mar 13", [("A Title", "An abstract.")]))
    assert format_of(page).name == "listing"
    assert parse(page, TODAY).papers[0].title == "A Title"


def test_errors_name_a_url_as_written():
    # A Path would fold "https://" to "https:/".
    error = PageFormatError("https://papers.example.org/a", 3, "bad")
    assert str(error) == "https://papers.example.org/a:3: bad"
    assert rejection(raw("Papers\nno date here\n", "text/plain")).startswith(f"{ORIGIN}page: no date line")


# -- through ingest -----------------------------------------------------------------------------


def test_inbox_ingests_html_json_and_feed_files(tmp_path):
    folders = Folders(tmp_path / "inbox", tmp_path / "processed", tmp_path / "quarantine")
    folders.inbox.mkdir()
    for name in ("listing.html", "papers.json", "feed.atom"):
        (folders.inbox / name).write_bytes((FORMATS / name).read_bytes())
    with open_store(tmp_path / "db.sqlite3") as store:
        report = ingest(store.papers, folders, datetime(2026, 3, 20, 8, tzinfo=UTC))
        stored = {p.title: p for p in store.papers.get()}
    assert report.count("ingested") == 3 and not report.problems
    # The same papers in three formats are matched, not tripled; the HTML title with "& Ranking" is another paper.
    assert (report.new_papers, report.duplicates) == (3, 3)
    assert set(stored) == {SPARSE, GRAPH, "Sparse Attention for Long\u2011Context Retrieval & Ranking"}
    assert sorted(p.name for p in folders.processed.iterdir()) == ["feed.atom", "listing.html", "papers.json"]


# -- the real pages in every format -------------------------------------------------------------


def test_the_real_pages_give_the_same_papers_in_every_format():
    for path in shared_pages():
        text = path.read_bytes()
        parsed = parse(RawPage(path.name, str(path), text), TODAY)
        expected = [(p.title, p.abstract) for p in parsed.papers]
        for data, content_type in [(as_html(text.decode()), "text/html"), (as_json(parsed), "application/json"),
                                   (as_rss(parsed), "application/rss+xml")]:
            other = parse(raw(data, content_type, path.name), TODAY)
            assert [(p.title, p.abstract) for p in other.papers] == expected, (path.name, content_type)
            assert other.date == parsed.date
