"""The store's contract on both backends: papers, votes, sources, runs, keys, locks and vectors behave the
same on a SQLite file and on a real PostgreSQL database (the ledger's tests in test_ledger.py run on both too)."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

import pytest
from builders import abstract_for, generated_titles, listing_page, with_typo
from sqlalchemy import text

from helpers import at
from newsletter.errors import RunLocked, StoreError
from newsletter.models import Page
from newsletter.sources.listing import parse_page
from newsletter.store import SCHEMA_VERSION, SourceState, Store, open_store
from newsletter.store import papers as paper_store
from newsletter.titles import store_probes, title_key


def page_of(entries: list[tuple[str, str]], name: str = "p.txt", day: str = "2026-11-20") -> Page:
    data = listing_page("Nov 20", entries).encode()
    return parse_page(Path(name), data, at(day).date())


def entries(count: int, seed: int) -> list[tuple[str, str]]:
    return [(title, abstract_for(title)) for title in generated_titles(count, seed)]


@pytest.fixture
def store(store_url: str):
    with open_store(store_url) as opened:
        yield opened


def test_a_new_store_is_at_the_current_schema_version(store):
    assert store.schema_version() == SCHEMA_VERSION
    assert store.papers.count() == 0 and store.papers.newest_batch() == 0


def test_papers_asked_for_by_more_ids_than_one_statement_may_carry_are_all_found(store):
    """SQLite caps a statement at 32,766 parameters and PostgreSQL at 65,535; a run's votes can name more."""
    store.papers.add_page(page_of(entries(3, seed=4)), at("2026-11-20", 9))
    ids = [p.id for p in store.papers.get()]
    asked = list(range(70_000, 0, -1))  # unordered, and mostly ids no paper has
    assert [p.id for p in store.papers.get(asked + ids)] == sorted(ids)


def test_papers_are_stored_once_with_every_sighting_and_time_zones_kept(store):
    first = page_of(entries(5, seed=1), name="a.txt")
    outcome = store.papers.add_page(first, at("2026-11-20", 9))
    assert (outcome.new_papers, outcome.duplicates) == (5, 0)
    assert store.papers.add_page(first, at("2026-11-20", 10)).already_ingested
    again = page_of(entries(5, seed=1)[:2] + entries(1, seed=2), name="b.txt", day="2026-11-21")
    outcome = store.papers.add_page(again, at("2026-11-21", 9))
    assert (outcome.new_papers, outcome.duplicates) == (1, 2)
    stored = store.papers.get()
    assert len(stored) == 6 == store.papers.count()
    assert [len(p.sightings) for p in stored] == [2, 2, 1, 1, 1, 1]
    assert stored[0].first_seen == at("2026-11-20", 9) and stored[0].first_seen.utcoffset() is not None
    assert [p.ingest_batch for p in stored] == [1, 1, 1, 1, 1, 2]  # the repeated page took no batch
    assert store.papers.page_ingested(first.sha256)
    assert [p.id for p in store.papers.recent(until=at("2026-11-20", 12), limit=3)] == [p.id for p in stored[2:5]]
    found = store.papers.find_by_title(stored[5].title.upper())
    assert found is not None and found.id == stored[5].id


def filed_rows(store: Store) -> tuple[int, int]:
    """Rows in (title_pieces, recent_title_pieces)."""
    with store.db.read() as conn:
        return (conn.execute(text("SELECT count(*) FROM title_pieces")).scalar_one(),
                conn.execute(text("SELECT count(*) FROM recent_title_pieces")).scalar_one())


def test_new_papers_are_filed_in_the_recent_table_merged_when_due_and_found_in_both(store, monkeypatch):
    monkeypatch.setattr(paper_store, "MERGE_MIN_ROWS", 150)
    first = entries(50, seed=31)  # ~180 probes: the ingest that files them merges them
    store.papers.add_page(page_of(first, name="a.txt"), at("2026-11-20", 9))
    assert filed_rows(store) == (sum(len(store_probes(title_key(t))) for t, _ in first), 0)
    second = entries(10, seed=32)  # ~36 probes: they stay in the recent table
    store.papers.add_page(page_of(second, name="b.txt"), at("2026-11-20", 10))
    merged, recent = filed_rows(store)
    assert recent == sum(len(store_probes(title_key(t))) for t, _ in second) and merged > recent
    # The same titles, typos of them and their exact keys in other spellings: in either table, all found.
    again = [(with_typo(t, n), a) for n, (t, a) in enumerate(first[:20] + second[:5])]
    again += [(t.upper(), a) for t, a in first[20:25] + second[5:]]
    outcome = store.papers.add_page(page_of(again, name="c.txt"), at("2026-11-21", 9))
    assert (outcome.new_papers, outcome.duplicates) == (0, 35)
    assert store.papers.merge_recent_pieces() == recent
    assert filed_rows(store) == (merged + recent, 0)
    outcome = store.papers.add_page(page_of(again[::-1], name="d.txt"), at("2026-11-21", 10))
    assert (outcome.new_papers, outcome.duplicates) == (0, 35) and store.papers.count() == 60


def test_windows_count_batches_and_the_bound_is_exclusive(store):
    store.papers.add_page(page_of(entries(3, seed=4), name="a.txt"), at("2026-11-20"))
    store.papers.add_page(page_of(entries(2, seed=5), name="b.txt"), at("2026-11-21"))
    assert store.papers.newest_batch() == 2
    assert len(store.papers.in_play(2, after_batch=1, since=None)) == 2
    assert len(store.papers.in_play(1, after_batch=0, since=None)) == 3  # batch 2 waits for the next window
    assert len(store.papers.in_play(2, after_batch=None, since=at("2026-11-20"))) == 2


def test_votes_are_one_per_paper_replaced_undone_and_forgotten(store):
    store.papers.add_page(page_of(entries(2, seed=6)), at("2026-11-20"))
    one, two = (p.id for p in store.papers.get())
    store.votes.record("ann", one, "more", at("2026-11-20", 9))
    store.votes.record("ann", one, "less", at("2026-11-20", 10))
    store.votes.record("ann", two, "more", at("2026-11-20", 11))
    assert [(v.paper_id, v.direction) for v in store.votes.for_subscriber("ann")] == [(two, "more"), (one, "less")]
    assert store.votes.for_subscriber("ann")[0].voted_at == at("2026-11-20", 11)
    assert store.votes.undo("ann", two) and not store.votes.undo("ann", two)
    with pytest.raises(StoreError, match="no paper 999"):
        store.votes.record("ann", 999, "more", at("2026-11-20"))
    assert store.votes.forget_subscriber("ann") == 1 and store.votes.for_subscriber("ann") == []


def test_source_state_is_upserted_in_place(store):
    url = "https://papers.example.org/daily"
    assert store.sources.get(url) == SourceState(url)
    state = SourceState(url, final_url=url + "/", etag='"v1"', sha256="a" * 64, last_fetch_at=at("2026-03-20"),
                        last_outcome="ingested", next_try_at=at("2026-03-21"))
    store.sources.save(state)
    assert store.sources.get(url) == state
    later = SourceState(url, etag='"v2"', failures=2, last_error="timeout", next_try_at=at("2026-03-22"))
    store.sources.save(later)
    assert store.sources.all() == [later]


def test_the_run_log_records_success_failure_and_finished_runs(store):
    with store.runs.record("digest", at("2026-11-20", 7)) as entry:
        entry.summary = "3 sent"
    with pytest.raises(RuntimeError), store.runs.record("ingest", at("2026-11-20", 8)):
        raise RuntimeError("the inbox vanished")
    store.runs.add("ingest", at("2026-11-20", 9), at("2026-11-20", 10), ok=True, summary="1 page")
    newest, failed, first = store.runs.recent()
    assert (newest.kind, newest.finished_at, newest.ok) == ("ingest", at("2026-11-20", 10), True)
    assert (failed.ok, failed.summary) == (False, "RuntimeError: the inbox vanished")
    assert (first.summary, first.started_at) == ("3 sent", at("2026-11-20", 7))


def test_vectors_are_stored_once_per_paper_and_model(store):
    store.papers.add_page(page_of(entries(3, seed=7)), at("2026-11-20"))
    ids = [p.id for p in store.papers.get()]
    store.vectors.put("m1", {ids[0]: b"\x00\x00\x80?", ids[1]: b"\x00\x00\x00@"})
    store.vectors.put("m1", {ids[0]: b"changed!"})  # a second writer's row is kept
    assert store.vectors.get("m1", ids) == {ids[0]: b"\x00\x00\x80?", ids[1]: b"\x00\x00\x00@"}
    assert store.vectors.missing("m1") == [ids[2]] and store.vectors.count("m1") == 2
    store.vectors.put("m2", {ids[2]: b"abcd"})
    assert store.vectors.drop_other_models("m2") == 2 and store.vectors.count("m1") == 0


def test_phrase_vectors_are_stored_once_per_phrase_and_model(store):
    store.vectors.put_phrases("m1", {"graph neural networks": b"\x00\x00\x80?", "RAG": b"\x00\x00\x00@"})
    store.vectors.put_phrases("m1", {"RAG": b"changed!"})  # a second writer's row is kept
    assert store.vectors.get_phrases("m1", ["RAG", "unknown", "graph neural networks"]) == {
        "RAG": b"\x00\x00\x00@", "graph neural networks": b"\x00\x00\x80?"}
    store.vectors.put_phrases("m2", {"RAG": b"abcd"})
    store.vectors.drop_other_models("m2")
    assert store.vectors.get_phrases("m1", ["RAG"]) == {}
    assert store.vectors.get_phrases("m2", ["RAG"]) == {"RAG": b"abcd"}


def _signing_key(url: str) -> str:
    with open_store(url) as store:
        return store.keys.signing_key()


def test_processes_creating_the_signing_key_at_once_all_get_the_stored_one(store_url):
    open_store(store_url).close()
    context = multiprocessing.get_context("fork")
    with context.Pool(5) as pool:
        keys = pool.map(_signing_key, [store_url] * 5)
    with open_store(store_url) as store:
        assert set(keys) == {store.keys.signing_key()} and len(keys[0]) >= 32


def test_a_run_lock_is_held_by_one_store_at_a_time_and_waiters_get_their_turn(store_url):
    with open_store(store_url) as first, open_store(store_url) as second:
        with first.locks.hold("digest"):
            with pytest.raises(RunLocked, match="another newsletter digest is running"):
                with second.locks.hold("digest"):
                    pass
            with second.locks.hold("ingest"):  # a different lock is independent
                pass
            messages: list[str] = []
            order: list[str] = []
            waiter = threading.Thread(target=lambda: _hold_and_note(second, messages, order))
            waiter.start()
            while not messages:
                time.sleep(0.01)
            order.append("first done")
        waiter.join(timeout=10)
        assert order == ["first done", "second ran"]
        assert messages[0].startswith("waiting for another newsletter digest on ")
        with second.locks.hold("digest"):  # free again once released
            pass


def _hold_and_note(store: Store, messages: list[str], order: list[str]) -> None:
    with store.locks.hold("digest", wait=True, on_wait=messages.append):
        order.append("second ran")


# -- PostgreSQL only ----------------------------------------------------------------------------


def test_a_paper_that_commits_after_a_larger_id_is_in_the_next_window(postgres):
    """On PostgreSQL a sequence value is taken at insert, not at commit: here a transaction holds a smaller
    paper id while an ingest with a larger one commits and a digest closes its window. Counting windows in
    paper ids would skip the late paper for good; ingest batches, taken in commit order, do not."""
    url = postgres.new_database(template=postgres.template)
    with open_store(url) as store:
        store.papers.add_page(page_of(entries(1, seed=8), name="warm.txt"), at("2026-11-20"))
        late = store.db.engine.connect()
        late_tx = late.begin()
        late_id = late.execute(text("SELECT nextval('papers_id_seq')")).scalar_one()  # a slow ingest's id
        store.papers.add_page(page_of(entries(1, seed=9), name="early.txt"), at("2026-11-20", 9))
        early = store.papers.get()[-1]
        assert early.id > late_id  # the larger id commits first
        closed_through = store.papers.newest_batch()  # what a digest planned now records
        # The slow ingest now takes its batch (as PaperStore.add_page does, first) and commits its paper.
        batch = late.execute(text("UPDATE counters SET value = value + 1 WHERE name = 'ingest_batch' "
                                  "RETURNING value")).scalar_one()
        title, abstract = entries(1, seed=10)[0]
        late.execute(text("INSERT INTO papers (id, title, title_key, abstract, links, first_seen, ingest_batch) "
                          "VALUES (:id, :title, :key, :abstract, '[]', now(), :batch)"),
                     {"id": late_id, "title": title, "key": title.lower(), "abstract": abstract, "batch": batch})
        late_tx.commit()
        late.close()
        next_window = store.papers.in_play(store.papers.newest_batch(), after_batch=closed_through, since=None)
        assert [p.id for p in next_window] == [late_id]
        assert all(p.id <= early.id for p in next_window)  # "after id early.id" would have skipped it


def test_a_postgresql_store_not_yet_upgraded_is_refused_with_the_command_to_run(postgres):
    url = postgres.new_database()
    with pytest.raises(StoreError, match=r"has no schema yet.*run `newsletter db upgrade`"):
        open_store(url)


def test_the_password_comes_from_the_environment_and_never_shows_in_errors(postgres, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_DB_PASSWORD", "s3cret-pass")
    with pytest.raises(StoreError) as caught:
        open_store(f"postgresql+psycopg://nobody-here@/nowhere?host={postgres.root}&port={postgres.port}")
    assert "cannot use the database" in str(caught.value) and "s3cret-pass" not in str(caught.value)


def test_a_write_blocked_too_long_on_postgresql_is_one_clear_error(postgres):
    from newsletter.errors import StoreBusy
    from newsletter.store.schema import Database

    url = postgres.new_database(template=postgres.template)
    with open_store(url) as holder, holder.db.write():
        db = Database(url, busy_timeout_ms=200)
        with pytest.raises(StoreBusy, match="the database is busy"), db.write():
            pass
        db.close()
