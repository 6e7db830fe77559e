"""Ingest: the page parser on real and malformed pages, and moving pages through the folders."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from helpers import FIXTURE_PAGES, at, shared_pages
from newsletter.errors import PageFormatError
from newsletter.sources import Folders, ingest
from newsletter.sources.links import extract_links
from newsletter.sources.listing import parse_date_line, parse_page
from newsletter.store import Store

TODAY = date(2026, 3, 20)


def parse(path: Path, today: date = TODAY):
    return parse_page(path, path.read_bytes(), today)


@pytest.fixture
def folders(tmp_path: Path) -> Folders:
    return Folders(tmp_path / "inbox", tmp_path / "processed", tmp_path / "quarantine")


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "store.sqlite3") as opened:
        yield opened


# -- the real pages -------------------------------------------------------------------------------


def test_real_pages_parse_into_title_abstract_pairs():
    pages = [parse(p) for p in shared_pages()]
    assert sum(len(p.papers) for p in pages) == 312
    for page in pages:
        assert page.date.year == 2026 and page.date <= TODAY
        for paper in page.papers:
            assert 10 < len(paper.title) < 300, paper.title
            assert len(paper.abstract) > len(paper.title)
    first = pages[0].papers[0]
    assert first.position == 1 and first.line > 5  # below the chrome


def test_real_pages_hold_282_distinct_papers(store, folders):
    report = ingest(store, folders, at("2026-03-20"), shared_pages())
    assert report.new_papers == 282
    assert report.duplicates == 30
    assert store.paper_count() == 282
    titles = {p.title for p in store.papers()}
    # Titles that share words are still two papers.
    assert "Qwen2.5 Technical Report" in titles
    assert any(t.startswith("Qwen2.5-Math Technical Report") for t in titles)


def test_paper_on_several_pages_keeps_every_sighting(store, folders):
    ingest(store, folders, at("2026-03-20"), shared_pages())
    multi = [p for p in store.papers() if len(p.sightings) == 3]
    assert multi, "some real papers appear on all three pages"
    dates = {s.page_date for s in multi[0].sightings}
    assert dates == {date(2026, 3, 11), date(2026, 3, 13), date(2026, 3, 14)}


def test_same_pages_twice_add_nothing(store, folders):
    ingest(store, folders, at("2026-03-20"), shared_pages())
    again = ingest(store, folders, at("2026-03-21"), shared_pages())
    assert [p.status for p in again.pages] == ["already ingested"] * 3
    assert again.new_papers == 0 and store.paper_count() == 282


def test_code_links_are_extracted_from_real_abstracts(store, folders):
    ingest(store, folders, at("2026-03-20"), shared_pages())
    links = [link for p in store.papers() for link in p.links]
    code = [link.url for link in links if link.kind == "code"]
    assert "https://github.com/griff4692/calibrating-summaries" in code
    assert all(not url.endswith((".", ",", ")", "}")) for url in code)
    assert any(link.kind == "project" and "github.io" in link.url for link in links)


# -- formats the parser must tolerate ----------------------------------------------------------------


def test_crlf_bom_trailing_spaces_and_blank_runs():
    page = parse(FIXTURE_PAGES / "good-crlf-bom.txt", date(2026, 11, 22))
    assert page.date == date(2024, 2, 29)  # the most recent 29 February not after the ingest day
    assert [p.line for p in page.papers] == [11, 17, 21]
    assert all(p.title == p.title.strip() and "\r" not in p.abstract for p in page.papers)
    assert any(ord(ch) > 127 for p in page.papers for ch in p.title + p.abstract)


def test_chrome_is_not_fixed():
    page = parse(FIXTURE_PAGES / "good-extra-chrome.txt", date(2026, 11, 22))
    assert page.date == date(2025, 12, 31)
    assert [p.line for p in page.papers] == [13, 17, 21]


@pytest.mark.parametrize(
    ("line", "today", "expected"),
    [
        ("Mar 13", date(2026, 3, 20), date(2026, 3, 13)),
        ("Mar 13", date(2026, 3, 13), date(2026, 3, 13)),  # today itself
        ("Dec 30", date(2026, 1, 2), date(2025, 12, 30)),  # across new year
        ("Feb 29", date(2026, 3, 1), date(2024, 2, 29)),
        ("September 3", date(2026, 9, 5), date(2026, 9, 3)),
        ("Sept. 3", date(2026, 9, 5), date(2026, 9, 3)),
        ("Subscribe", date(2026, 3, 20), None),
        ("Mar 32", date(2026, 3, 20), None),
        ("May 2024", date(2026, 3, 20), None),
    ],
)
def test_date_line_resolves_the_most_recent_past_date(line, today, expected):
    assert parse_date_line(line, today) == expected


# -- pages that must be rejected, with the line -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "line", "words"),
    [
        ("bad-no-date.txt", None, "no date line"),
        ("bad-missing-abstract.txt", 13, "no abstract"),
        ("bad-odd-end.txt", 13, "no abstract"),
        ("bad-only-chrome.txt", 9, "no papers"),
        ("bad-binary.bin.txt", 3, "binary"),
        ("bad-undecodable.txt", 9, "UTF-8"),
    ],
)
def test_malformed_pages_name_the_line_and_problem(name, line, words):
    with pytest.raises(PageFormatError) as caught:
        parse(FIXTURE_PAGES / name)
    assert caught.value.line == line
    assert words in caught.value.problem
    assert name in str(caught.value)


def test_an_abstract_in_a_title_position_is_caught(tmp_path):
    abstract = "We study things. " * 30
    page = tmp_path / "shifted.txt"
    page.write_text(f"chrome\n\nMar 1\n\nTitle one\n\n{abstract}\n\n{abstract}\n\nTitle two\n\n{abstract}\n")
    with pytest.raises(PageFormatError) as caught:
        parse(page)
    assert caught.value.line == 9


# -- moving pages through the folders ---------------------------------------------------------------


def copy_into_inbox(folders: Folders, *sources: Path) -> None:
    folders.inbox.mkdir(parents=True, exist_ok=True)
    for source in sources:
        (folders.inbox / source.name).write_bytes(source.read_bytes())


def test_inbox_pages_move_to_processed_and_bad_ones_to_quarantine(store, folders):
    copy_into_inbox(folders, FIXTURE_PAGES / "good-extra-chrome.txt", FIXTURE_PAGES / "bad-missing-abstract.txt")
    report = ingest(store, folders, at("2026-11-22"))
    assert [p.status for p in report.pages] == ["quarantined", "ingested"]
    assert not list(folders.inbox.iterdir())
    assert (folders.processed / "good-extra-chrome.txt").exists()
    bad = folders.quarantine / "bad-missing-abstract.txt"
    assert bad.read_bytes() == (FIXTURE_PAGES / "bad-missing-abstract.txt").read_bytes()
    error = (folders.quarantine / "bad-missing-abstract.txt.error").read_text()
    assert "bad-missing-abstract.txt:13" in error
    assert store.paper_count() == 3  # only the good page's papers


def test_a_bad_page_stores_nothing_from_it(store, folders):
    report = ingest(store, folders, at("2026-11-22"), [FIXTURE_PAGES / "bad-odd-end.txt"])
    assert report.count("quarantined") == 1
    assert store.paper_count() == 0
    # A page named explicitly is left where it was; a copy goes to quarantine.
    assert (FIXTURE_PAGES / "bad-odd-end.txt").exists()
    assert (folders.quarantine / "bad-odd-end.txt.error").exists()


def test_a_page_failing_mid_transaction_leaves_no_trace(store, folders, monkeypatch):
    page = parse(FIXTURE_PAGES / "good-extra-chrome.txt", date(2026, 11, 22))
    calls = {"n": 0}
    real_find = store.titles().find

    def fail_on_third(title: str):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real_find(title)

    monkeypatch.setattr(store.titles(), "find", fail_on_third)
    with pytest.raises(RuntimeError):
        store.add_page(page, at("2026-11-22"))
    monkeypatch.undo()
    assert store.paper_count() == 0 and not store.page_ingested(page.sha256)
    assert store.add_page(page, at("2026-11-22")).new_papers == 3  # and it can be ingested again


def test_partial_and_hidden_files_in_the_inbox_wait(store, folders):
    folders.inbox.mkdir(parents=True)
    (folders.inbox / "page.txt.part").write_text("still downloading")
    (folders.inbox / ".hidden.txt").write_text("editor swap")
    report = ingest(store, folders, at("2026-11-22"))
    assert report.pages == ()
    assert len(list(folders.inbox.iterdir())) == 2


def test_quarantine_never_overwrites_an_earlier_page(store, folders):
    for _ in range(2):
        copy_into_inbox(folders, FIXTURE_PAGES / "bad-no-date.txt")
        ingest(store, folders, at("2026-11-22"))
    names = sorted(p.name for p in folders.quarantine.iterdir())
    assert names == ["bad-no-date.1.txt", "bad-no-date.1.txt.error", "bad-no-date.txt", "bad-no-date.txt.error"]


def test_link_extraction_trims_latex_and_punctuation():
    links = extract_links(
        "Code: https://github.com/a/b. Project https://x.github.io/{https://x.github.io/}. "
        "OIE\\url{https://github.com/c/d}. See www.github.com/e/f, and https://arxiv.org/abs/2401.00001)."
    )
    assert [(link.url, link.kind) for link in links] == [
        ("https://github.com/a/b", "code"),
        ("https://x.github.io/", "project"),
        ("https://github.com/c/d", "code"),
        ("https://www.github.com/e/f", "code"),
        ("https://arxiv.org/abs/2401.00001", "paper"),
    ]
