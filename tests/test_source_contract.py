"""The Source contract, run against every source: the inbox folder and a URL on a real local HTTP server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from builders import listing_page

from helpers import at
from newsletter.sources import Folders, InboxSource, Source, ingest_from
from newsletter.sources.http import FetchPolicy, UrlSource, Validators, fetch, new_client
from newsletter.store import open_store
from page_server import PageServer, Reply

NOW = at("2026-03-20")
GOOD = listing_page("Mar 13", [("A Study of Sparse Attention", "We study sparse attention.")]).encode()
BAD = b"Papers\nthere is no date line here\n"

# A factory: (folders, page bytes, or None for a page that cannot be read) -> the source holding that one page.
MakeSource = Callable[[Folders, bytes | None], Source]


@contextmanager
def inbox_sources() -> Iterator[MakeSource]:
    def make(folders: Folders, body: bytes | None) -> Source:
        folders.inbox.mkdir(parents=True)
        page = folders.inbox / "page.txt"
        if body is None:
            page.symlink_to(folders.inbox / "gone.txt")  # a broken link: listed, but cannot be read
        else:
            page.write_bytes(body)
        return InboxSource(folders)

    yield make


@contextmanager
def url_sources() -> Iterator[MakeSource]:
    server = PageServer().start()
    policy = FetchPolicy(timeout=2.0, retries=0)
    client = new_client(policy)

    def make(folders: Folders, body: bytes | None) -> Source:
        url = server.serve("/page", Reply(200, body)) if body is not None else server.url("/missing")
        return UrlSource(url, lambda u, v: fetch(client, u, v, policy), Validators(), None, folders.quarantine, NOW)

    try:
        yield make
    finally:
        client.close()
        server.stop()


@pytest.fixture(params=[inbox_sources, url_sources], ids=["inbox", "url"])
def make_source(request: pytest.FixtureRequest) -> Iterator[MakeSource]:
    with request.param() as make:
        yield make


@pytest.fixture
def folders(tmp_path: Path) -> Folders:
    return Folders(tmp_path / "inbox", tmp_path / "processed", tmp_path / "quarantine")


def test_a_good_page_is_ingested(tmp_path, folders, make_source):
    with open_store(tmp_path / "db.sqlite3") as store:
        report = ingest_from(make_source(folders, GOOD), store.papers, NOW)
        assert [p.title for p in store.papers.get()] == ["A Study of Sparse Attention"]
    assert [(p.status, p.new_papers) for p in report.pages] == [("ingested", 1)]
    assert not folders.quarantine.exists()


def test_a_bad_page_is_quarantined_with_its_bytes_and_the_reason_naming_it(tmp_path, folders, make_source):
    with open_store(tmp_path / "db.sqlite3") as store:
        (page,) = ingest_from(make_source(folders, BAD), store.papers, NOW).pages
        assert store.papers.get() == []
    assert page.status == "quarantined"
    assert page.error.startswith(f"{page.origin}: no date line")
    (kept,) = [p for p in folders.quarantine.iterdir() if not p.name.endswith(".error")]
    assert kept.read_bytes() == BAD
    assert page.error in kept.with_name(kept.name + ".error").read_text()


def test_a_page_that_cannot_be_read_is_reported_and_nothing_is_stored(tmp_path, folders, make_source):
    with open_store(tmp_path / "db.sqlite3") as store:
        (page,) = ingest_from(make_source(folders, None), store.papers, NOW).pages
        assert store.papers.get() == []
    assert page.status == "unreadable"
    assert page.error.startswith(page.origin + ": ") and len(page.error) > len(page.origin) + 10
