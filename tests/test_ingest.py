"""Ingest: the page parser on real and malformed pages, and moving pages through the folders."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import FIXTURE_PAGES, REPO, at, shared_pages
from newsletter.cli import main
from newsletter.errors import PageFormatError, StoreError
from newsletter.models import Page, ParsedPaper
from newsletter.sources import Folders, RawPage, ingest, parsing
from newsletter.sources.links import extract_links
from newsletter.sources.listing import parse_date_line, parse_page
from newsletter.sources.parsing import PageFormat
from newsletter.store import open_store

TODAY = date(2026, 3, 20)


def parse(path: Path, today: date = TODAY):
    return parse_page(path, path.read_bytes(), today)


@pytest.fixture
def folders(tmp_path: Path) -> Folders:
    return Folders(tmp_path / "inbox", tmp_path / "processed", tmp_path / "quarantine")


@pytest.fixture
def store(tmp_path: Path):
    with open_store(tmp_path / "store.sqlite3") as opened:
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
    report = ingest(store.papers, folders, at("2026-03-20"), shared_pages())
    assert report.new_papers == 282
    assert report.duplicates == 30
    assert store.papers.count() == 282
    titles = {p.title for p in store.papers.get()}
    # Titles that share words are still two papers.
    assert "Qwen2.5 Technical Report" in titles
    assert any(t.startswith("Qwen2.5-Math Technical Report") for t in titles)


def test_paper_on_several_pages_keeps_every_sighting(store, folders):
    ingest(store.papers, folders, at("2026-03-20"), shared_pages())
    multi = [p for p in store.papers.get() if len(p.sightings) == 3]
    assert multi, "some real papers appear on all three pages"
    dates = {s.page_date for s in multi[0].sightings}
    assert dates == {date(2026, 3, 11), date(2026, 3, 13), date(2026, 3, 14)}


def test_same_pages_twice_add_nothing(store, folders):
    ingest(store.papers, folders, at("2026-03-20"), shared_pages())
    again = ingest(store.papers, folders, at("2026-03-21"), shared_pages())
    assert [p.status for p in again.pages] == ["already ingested"] * 3
    assert again.new_papers == 0 and store.papers.count() == 282


def test_code_links_are_extracted_from_real_abstracts(store, folders):
    ingest(store.papers, folders, at("2026-03-20"), shared_pages())
    links = [link for p in store.papers.get() for link in p.links]
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
    report = ingest(store.papers, folders, at("2026-11-22"))
    assert [p.status for p in report.pages] == ["quarantined", "ingested"]
    assert not list(folders.inbox.iterdir())
    assert (folders.processed / "good-extra-chrome.txt").exists()
    bad = folders.quarantine / "bad-missing-abstract.txt"
    assert bad.read_bytes() == (FIXTURE_PAGES / "bad-missing-abstract.txt").read_bytes()
    error = (folders.quarantine / "bad-missing-abstract.txt.error").read_text()
    assert "bad-missing-abstract.txt:13" in error
    assert store.papers.count() == 3  # only the good page's papers


def test_a_bad_page_stores_nothing_from_it(store, folders):
    report = ingest(store.papers, folders, at("2026-11-22"), [FIXTURE_PAGES / "bad-odd-end.txt"])
    assert report.count("quarantined") == 1
    assert store.papers.count() == 0
    # A page named explicitly is left where it was; a copy goes to quarantine.
    assert (FIXTURE_PAGES / "bad-odd-end.txt").exists()
    assert (folders.quarantine / "bad-odd-end.txt.error").exists()


def test_a_page_failing_mid_transaction_leaves_no_trace(store, folders):
    page = parse(FIXTURE_PAGES / "good-extra-chrome.txt", date(2026, 11, 22))
    # Two entries claiming one position: the database refuses the second sighting after
    # the page and its papers were inserted, so the whole transaction must roll back.
    clash = dataclasses.replace(page, papers=(*page.papers, dataclasses.replace(page.papers[0], title="Another paper",
                                                                                 position=page.papers[1].position)))
    with pytest.raises(StoreError):
        store.papers.add_page(clash, at("2026-11-22"))
    assert store.papers.count() == 0 and not store.papers.page_ingested(page.sha256)
    assert store.papers.add_page(page, at("2026-11-22")).new_papers == 3  # and it can be ingested again


def test_partial_and_hidden_files_in_the_inbox_wait(store, folders):
    folders.inbox.mkdir(parents=True)
    (folders.inbox / "page.txt.part").write_text("still downloading")
    (folders.inbox / ".hidden.txt").write_text("editor swap")
    report = ingest(store.papers, folders, at("2026-11-22"))
    assert report.pages == ()
    assert len(list(folders.inbox.iterdir())) == 2


def test_quarantine_never_overwrites_an_earlier_page(store, folders):
    for _ in range(2):
        copy_into_inbox(folders, FIXTURE_PAGES / "bad-no-date.txt")
        ingest(store.papers, folders, at("2026-11-22"))
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


# -- characters that are line breaks to Python but not to a page ---------------------------------------------

GOOD_PAGE = (
    "Trending\n\nMar 13\n\n"
    "Sparse Attention for Very Long Documents\n\n"
    "We make attention sparse.{sep}Long documents become cheap, and quality holds on four benchmarks.\n\n"
    "Graph Networks for Weather Forecasting\n\n"
    "We forecast weather with message passing over a global mesh.\n"
)


@pytest.mark.parametrize(
    "sep", ["\u2028", "\u2029", "\f", "\v", "\x1c", "\x1d", "\x1e", "\x85", "\u2028\u2029"]
)
def test_separators_inside_an_abstract_do_not_split_it(tmp_path, sep):
    page_file = tmp_path / "page.txt"
    page_file.write_bytes(GOOD_PAGE.format(sep=sep).encode())
    page = parse(page_file)
    assert [p.title for p in page.papers] == [
        "Sparse Attention for Very Long Documents", "Graph Networks for Weather Forecasting"]
    assert page.papers[0].abstract.startswith("We make attention sparse. Long documents become cheap")
    assert [p.line for p in page.papers] == [5, 9]


def test_a_separator_in_an_abstract_adds_no_paper_to_the_store(store, folders, tmp_path):
    page_file = tmp_path / "page.txt"
    page_file.write_bytes(GOOD_PAGE.format(sep="\u2028").encode())
    report = ingest(store.papers, folders, at("2026-03-20"), [page_file])
    assert [p.status for p in report.pages] == ["ingested"]
    assert sorted(p.title for p in store.papers.get()) == [
        "Graph Networks for Weather Forecasting", "Sparse Attention for Very Long Documents"]


def test_a_lone_cr_still_ends_a_line(tmp_path):
    page_file = tmp_path / "page.txt"
    page_file.write_bytes(GOOD_PAGE.format(sep="").replace("\n", "\r").encode())
    assert [p.line for p in parse(page_file).papers] == [5, 9]


# -- symbol-only titles --------------------------------------------------------------------------------------


def test_symbol_only_titles_stay_different_papers_in_the_store(store, folders, tmp_path):
    titles = ["🚀🚀🚀", "!!!", "🤖 🧠", "🚀 🚀 🚀"]  # the last is the first again, spaced differently
    body = "\n\n".join(f"{t}\n\nAn abstract about paper number {n}." for n, t in enumerate(titles))
    page_file = tmp_path / "symbols.txt"
    page_file.write_text(f"Trending\n\nMar 13\n\n{body}\n", encoding="utf-8")
    report = ingest(store.papers, folders, at("2026-03-20"), [page_file])
    assert (report.new_papers, report.duplicates) == (3, 1)
    assert sorted(p.title for p in store.papers.get()) == sorted(["🚀🚀🚀", "!!!", "🤖 🧠"])


# -- dates that cannot be -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "words"), [("Feb 30", "February has no day 30"), ("Apr 31", "April has no day 31"),
                                            ("Jun 0", "June has no day 0"), ("Mar 32", "March has no day 32")])
def test_an_impossible_date_is_named_with_its_line(tmp_path, line, words):
    page_file = tmp_path / "page.txt"
    page_file.write_text(f"Trending\n\nSubscribe\n\n{line}\n\nA Title\n\nAn abstract.\n")
    with pytest.raises(PageFormatError) as caught:
        parse(page_file)
    assert caught.value.line == 5
    assert "impossible date" in caught.value.problem and words in caught.value.problem


def test_a_title_in_an_error_is_shortened_on_one_line(tmp_path):
    title = "A Remarkably Long Title " * 6
    page_file = tmp_path / "page.txt"
    page_file.write_text(f"Mar 1\n\n{title}\n")
    with pytest.raises(PageFormatError) as caught:
        parse(page_file)
    quoted_title = caught.value.problem.split("'")[1]
    assert quoted_title.endswith("…") and len(quoted_title) <= 60


# -- Hugging Face links -----------------------------------------------------------------------------------------


def test_hugging_face_links_are_labelled_by_what_they_hold():
    links = extract_links(
        "Data https://huggingface.co/datasets/org/set, demo https://huggingface.co/spaces/org/demo, "
        "weights https://huggingface.co/org/model and https://hf.co/datasets/org/other."
    )
    assert [link.kind for link in links] == ["data", "project", "model", "data"]


# -- pages that cannot be read --------------------------------------------------------------------------------


def make_unreadable(inbox: Path, kind: str) -> Path:
    """An entry sorted before the good pages, that no process (root included) can read as a page."""
    entry = inbox / "a-bad.txt"
    if kind == "broken link":
        entry.symlink_to(inbox / "gone.txt")
    elif kind == "link loop":
        entry.symlink_to(inbox / "a-bad.txt")
    elif kind == "folder":
        entry.mkdir()
        (entry / "inside.txt").write_text("not a page")
    elif kind == "fifo":
        os.mkfifo(entry)
    return entry


UNREADABLE = [
    ("broken link", "broken symbolic link"),
    ("link loop", "symbolic link loop"),
    ("folder", "not a page file but a folder"),
    ("fifo", "not a page file but a FIFO"),
]
# A file without read permission takes the same OSError path as a broken link; it is not
# a case here because the tests run as root in CI, where every file is readable.


@pytest.mark.parametrize(("kind", "words"), UNREADABLE)
def test_an_unreadable_inbox_page_is_reported_and_set_aside(store, folders, kind, words):
    copy_into_inbox(folders, FIXTURE_PAGES / "good-extra-chrome.txt")
    make_unreadable(folders.inbox, kind)
    report = ingest(store.papers, folders, at("2026-11-22"))
    assert [p.status for p in report.pages] == ["unreadable", "ingested"]
    bad = report.problems[0]
    assert bad.origin.endswith("a-bad.txt") and words in bad.error and "\n" not in bad.error
    assert store.papers.count() == 3
    # Moved out of the inbox, so the next run is clean instead of failing on it for ever.
    assert not list(folders.inbox.iterdir())
    assert os.path.lexists(folders.quarantine / "a-bad.txt")
    assert words in (folders.quarantine / "a-bad.txt.error").read_text()
    assert ingest(store.papers, folders, at("2026-11-23")).pages == ()


@pytest.mark.parametrize(("kind", "words"), UNREADABLE)
def test_an_unreadable_page_in_a_named_folder_is_reported_and_left(store, folders, tmp_path, kind, words):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "b-good.txt").write_bytes((FIXTURE_PAGES / "good-extra-chrome.txt").read_bytes())
    bad = make_unreadable(elsewhere, kind)
    report = ingest(store.papers, folders, at("2026-11-22"), [elsewhere])
    assert [(p.status, Path(p.origin).name) for p in report.pages] == [("unreadable", "a-bad.txt"),
                                                                      ("ingested", "b-good.txt")]
    assert words in report.pages[0].error
    assert os.path.lexists(bad) and not os.path.lexists(folders.quarantine / "a-bad.txt")


def test_a_missing_named_page_is_reported_not_raised(store, folders, tmp_path):
    named = [tmp_path / "nope.txt", FIXTURE_PAGES / "good-extra-chrome.txt"]
    report = ingest(store.papers, folders, at("2026-11-22"), named)
    assert [p.status for p in report.pages] == ["unreadable", "ingested"]
    assert "nope.txt" in report.pages[0].error


def test_ingest_cli_exits_1_and_prints_one_line_for_an_unreadable_page(tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    shutil.copytree(REPO / "subscribers", tmp_path / "subscribers")
    inbox = tmp_path / "var" / "inbox"
    inbox.mkdir(parents=True)
    shutil.copy(FIXTURE_PAGES / "good-extra-chrome.txt", inbox)
    make_unreadable(inbox, "broken link")
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "config.yaml"), "ingest"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    problem_lines = [line for line in result.output.splitlines() if line.startswith("unreadable: ")]
    assert len(problem_lines) == 1 and "a-bad.txt" in problem_lines[0]
    assert "1 ingested" in result.output and "1 unreadable" in result.output


# -- the parser registry ------------------------------------------------------------------------------------------


def test_a_registered_format_gets_the_pages_it_claims(store, folders, tmp_path, monkeypatch):
    def parse_json(raw: RawPage, today: date) -> Page:
        data = json.loads(raw.data)
        papers = tuple(ParsedPaper(title=p["title"], abstract=p["abstract"], line=1, position=n)
                       for n, p in enumerate(data["papers"], start=1))
        return Page(name=raw.name, sha256=hashlib.sha256(raw.data).hexdigest(), date=today, papers=papers)

    monkeypatch.setattr(parsing, "FORMATS", [])
    parsing.register(PageFormat("json", accepts=lambda raw: raw.name.endswith(".json"), parse=parse_json))
    page_file = tmp_path / "page.json"
    page_file.write_text(json.dumps({"papers": [{"title": "A JSON Paper", "abstract": "From a feed."}]}))
    report = ingest(store.papers, folders, at("2026-03-20"), [page_file, FIXTURE_PAGES / "good-extra-chrome.txt"])
    assert [p.status for p in report.pages] == ["ingested", "ingested"]
    assert "A JSON Paper" in {p.title for p in store.papers.get()} and store.papers.count() == 4
