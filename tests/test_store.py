"""Store: a real SQLite file; schema versioning, digests and the delivery state machine."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from helpers import FIXTURE_PAGES, at
from newsletter.errors import StoreError
from newsletter.models import Digest, ScoredPaper, Subscriber
from newsletter.sources.listing import parse_page
from newsletter.store import SCHEMA_VERSION, ClosedWindow, Store

ALICE = Subscriber(id="alice", email="alice@example.org", name="Alice", topics=("graphs",))


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "store.sqlite3") as opened:
        page = FIXTURE_PAGES / "good-extra-chrome.txt"
        opened.add_page(parse_page(page, page.read_bytes(), at("2026-11-22").date()), at("2026-11-22"))
        yield opened


def digest_of(store: Store, paper_ids: list[int], start: str, end: str) -> Digest:
    papers = store.papers(paper_ids)
    return Digest(subscriber=ALICE, papers=tuple(ScoredPaper(p, 0.5) for p in papers), issued_at=at(end),
                  window_start=at(start), window_end=at(end), through_paper_id=store.max_paper_id(),
                  candidate_count=len(papers))


def test_new_file_gets_the_current_schema_version(tmp_path):
    with Store(tmp_path / "a.sqlite3") as store:
        assert store.schema_version() == SCHEMA_VERSION
    assert (tmp_path / "a.sqlite3").stat().st_size > 0


def test_a_database_from_a_newer_release_is_refused(tmp_path):
    path = tmp_path / "a.sqlite3"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match="newer than this release"):
        Store(path)


def test_reopening_keeps_data_and_the_signing_key(tmp_path):
    path = tmp_path / "a.sqlite3"
    with Store(path) as store:
        key = store.secret_key()
        assert len(key) >= 32
    with Store(path) as store:
        assert store.secret_key() == key


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open the database"):
        Store(path)


def test_sent_papers_are_remembered_and_close_the_window(store):
    ids = [p.id for p in store.papers()]
    digest_id = store.record_digest(digest_of(store, ids[:2], "2026-11-21", "2026-11-23"),
                                    message_id="<1@x>", recipient="alice@example.org", now=at("2026-11-23"))
    # Pending counts as delivered: after a crash we would rather miss than repeat.
    assert store.delivered_paper_ids("alice") == set(ids[:2])
    store.finish_delivery(digest_id, status="sent", attempts=1, reply="250 OK", now=at("2026-11-23"))
    assert store.delivered_paper_ids("alice") == set(ids[:2])
    assert store.last_closed_window("alice") == ClosedWindow(at("2026-11-23"), 3)
    assert store.delivered_paper_ids("bob") == set() and store.last_closed_window("bob") is None


def test_a_failed_delivery_leaves_its_papers_and_window_open(store):
    ids = [p.id for p in store.papers()]
    digest_id = store.record_digest(digest_of(store, ids, "2026-11-21", "2026-11-23"),
                                    message_id="<1@x>", recipient="alice@example.org", now=at("2026-11-23"))
    store.finish_delivery(digest_id, status="failed", attempts=3, reply="451 try later", now=at("2026-11-23"))
    assert store.delivered_paper_ids("alice") == set()
    assert store.last_closed_window("alice") is None
    assert store.deliveries_for("alice")[0].reply == "451 try later"


def test_an_empty_digest_closes_the_window_without_a_delivery(store):
    store.record_digest(digest_of(store, [], "2026-11-21", "2026-11-23"), message_id=None,
                        recipient="alice@example.org", now=at("2026-11-23"))
    assert store.last_closed_window("alice") == ClosedWindow(at("2026-11-23"), 3)
    assert store.deliveries_for("alice") == []


def test_pending_deliveries_of_a_crashed_run_become_unknown(store):
    ids = [p.id for p in store.papers()]
    store.record_digest(digest_of(store, ids[:1], "2026-11-21", "2026-11-23"), message_id="<1@x>",
                        recipient="alice@example.org", now=at("2026-11-23"))
    stuck = store.mark_interrupted(at("2026-11-24"))
    assert [(r.subscriber_id, r.status) for r in stuck] == [("alice", "pending")]
    assert store.deliveries_for("alice")[0].status == "unknown"
    assert store.delivered_paper_ids("alice") == {ids[0]}
    assert store.mark_interrupted(at("2026-11-24")) == []


def test_papers_in_play_by_id_or_by_first_seen(store):
    ids = [p.id for p in store.papers()]
    first_seen = store.papers()[0].first_seen
    assert [p.id for p in store.papers_in_play(ids[-1], after_id=ids[0], since=None)] == ids[1:]
    assert [p.id for p in store.papers_in_play(ids[1], after_id=ids[0], since=None)] == [ids[1]]
    assert len(store.papers_in_play(ids[-1], after_id=None, since=first_seen - timedelta(seconds=1))) == 3
    assert store.papers_in_play(ids[-1], after_id=None, since=first_seen) == []  # the bound is exclusive
    assert store.papers_in_play(ids[-1], after_id=None, since=None) == []


def test_timestamps_must_be_timezone_aware(store):
    with pytest.raises(ValueError, match="timezone-aware"):
        store.papers_in_play(10, after_id=None, since=at("2026-11-21").replace(tzinfo=None))
