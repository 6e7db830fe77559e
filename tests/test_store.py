"""Store: a real SQLite file; schema versioning, digests and the delivery state machine."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from builders import abstract_for, generated_titles, listing_page, with_typo, write_page
from sqlalchemy import update

from helpers import DATA, FIXTURE_PAGES, at
from newsletter import pipeline
from newsletter.config import config_from_mapping
from newsletter.errors import RunLocked, StoreBusy, StoreError
from newsletter.models import Digest, Page, ScoredPaper, Subscriber
from newsletter.sources.listing import parse_page
from newsletter.store import SCHEMA_VERSION, Store, open_store
from newsletter.store.schema import Database, meta
from newsletter.titles import store_probes, title_key

ALICE = Subscriber(id="alice", email="alice@example.org", name="Alice", topics=("graphs",))


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "store.sqlite3") as opened:
        page = FIXTURE_PAGES / "good-extra-chrome.txt"
        opened.papers.add_page(parse_page(page, page.read_bytes(), at("2026-11-22").date()), at("2026-11-22"))
        yield opened


def digest_of(store, paper_ids: list[int], start: str, end: str) -> Digest:
    papers = store.papers.get(paper_ids)
    return Digest(subscriber=ALICE, papers=tuple(ScoredPaper(p, 0.5) for p in papers), issued_at=at(end),
                  window_start=at(start), window_end=at(end), through_batch=store.papers.newest_batch(),
                  candidate_count=len(papers))


def test_new_file_gets_the_current_schema_version(tmp_path):
    with open_store(tmp_path / "a.sqlite3") as store:
        assert store.schema_version() == SCHEMA_VERSION
    assert (tmp_path / "a.sqlite3").stat().st_size > 0


def test_a_database_from_a_newer_release_is_refused(tmp_path):
    path = tmp_path / "a.sqlite3"
    open_store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match="newer than this release"):
        open_store(path)


def test_reopening_keeps_data_and_the_signing_key(tmp_path):
    path = tmp_path / "a.sqlite3"
    with open_store(path) as store:
        key = store.keys.signing_key()
        assert len(key) >= 32
    with open_store(path) as store:
        assert store.keys.signing_key() == key


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot use the database"):
        open_store(path)


def test_papers_in_play_by_ingest_batch_or_by_first_seen(store):
    page = FIXTURE_PAGES / "good-extra-chrome.txt"
    first = [p.id for p in store.papers.get()]
    first_seen = store.papers.get()[0].first_seen
    second = page_of([("A second batch paper about graphs", "An abstract.")])
    store.papers.add_page(second, at("2026-11-23"))
    batch = store.papers.newest_batch()
    ids = [p.id for p in store.papers.get()]
    assert batch == 2 and len(ids) == len(first) + 1
    assert [p.id for p in store.papers.in_play(batch, after_batch=1, since=None)] == ids[len(first):]
    assert [p.id for p in store.papers.in_play(1, after_batch=0, since=None)] == first  # later batches wait
    assert len(store.papers.in_play(batch, after_batch=None, since=first_seen - timedelta(seconds=1))) == 4
    assert store.papers.in_play(1, after_batch=None, since=first_seen) == []  # the bound is exclusive
    assert store.papers.in_play(batch, after_batch=None, since=None) == []
    assert page.exists()


def test_timestamps_must_be_timezone_aware(store):
    with pytest.raises(ValueError, match="timezone-aware"):
        store.papers.in_play(10, after_batch=None, since=at("2026-11-21").replace(tzinfo=None))


# -- files, keys and locks shared between processes -------------------------------------------


def test_the_database_file_is_private_to_its_owner(tmp_path):
    path = tmp_path / "private.sqlite3"
    with open_store(path) as store:
        store.keys.signing_key()
        for file in tmp_path.glob("private.sqlite3*"):
            if not file.name.endswith(".lock"):
                assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name


def test_a_world_readable_database_from_an_older_release_is_closed(tmp_path):
    path = tmp_path / "old.sqlite3"
    open_store(path).close()
    os.chmod(path, 0o644)
    open_store(path).close()
    assert stat.S_IMODE(path.stat().st_mode) & stat.S_IROTH == 0


def at_once(job: Callable[..., Any], arguments: list[tuple[Any, ...]]) -> list[Any]:
    """Run `job(*arguments[i])` in separate processes released together; each returns one value
    (an exception comes back as its text rather than being lost in a child's stderr)."""
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(len(arguments)), context.Queue()

    def released(*args: Any) -> None:
        barrier.wait()
        try:
            results.put(job(*args))
        except Exception as exc:
            results.put(f"{type(exc).__name__}: {exc}")

    workers = [context.Process(target=released, args=args) for args in arguments]
    for worker in workers:
        worker.start()
    values = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    return values


def _signing_key(path: str) -> str:
    with open_store(path) as store:
        return store.keys.signing_key()


def _schema_version(path: str) -> int:
    with open_store(path) as store:
        return store.schema_version()


def test_processes_creating_the_signing_key_at_once_all_get_the_stored_one(tmp_path):
    path = str(tmp_path / "keys.sqlite3")
    open_store(path).close()
    keys = at_once(_signing_key, [(path,)] * 6)
    with open_store(path) as store:
        assert set(keys) == {store.keys.signing_key()}


def test_processes_opening_a_brand_new_store_at_once_all_succeed(tmp_path):
    path = str(tmp_path / "new.sqlite3")
    assert at_once(_schema_version, [(path,)] * 5) == [SCHEMA_VERSION] * 5


def test_the_run_lock_holds_through_a_symlink_and_a_relative_path(tmp_path, monkeypatch):
    real = tmp_path / "data" / "store.sqlite3"
    open_store(real).close()
    (tmp_path / "alias").symlink_to(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    with open_store(real) as first, open_store(tmp_path / "alias" / "store.sqlite3") as second, \
            open_store(Path("data/../data/store.sqlite3")) as third:
        with first.locks.hold("digest"):
            with pytest.raises(RunLocked, match="another newsletter digest is running"):
                with second.locks.hold("digest"):
                    pass
            with pytest.raises(RunLocked):
                with third.locks.hold("digest"):
                    pass
            with second.locks.hold("ingest"):  # a different lock is independent
                pass
        with second.locks.hold("digest"):  # free again once released
            pass


def test_a_waiting_lock_says_so_and_gets_its_turn(tmp_path):
    with open_store(tmp_path / "s.sqlite3") as first, open_store(tmp_path / "s.sqlite3") as second:
        messages: list[str] = []
        order: list[str] = []
        with first.locks.hold("ingest"):
            waiter = threading.Thread(target=lambda: _hold_and_note(second, messages, order))
            waiter.start()
            while not messages:
                time.sleep(0.01)
            order.append("first done")
        waiter.join(timeout=10)
    assert messages == [f"waiting for another newsletter ingest on {(tmp_path / 's.sqlite3').resolve()} to finish..."]
    assert order == ["first done", "second ran"]


def _hold_and_note(store: Store, messages: list[str], order: list[str]) -> None:
    with store.locks.hold("ingest", wait=True, on_wait=messages.append):
        order.append("second ran")


def test_a_write_blocked_too_long_is_one_clear_error(tmp_path):
    path = tmp_path / "busy.sqlite3"
    open_store(path).close()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        db = Database(path, busy_timeout_ms=200)
    except StoreBusy as exc:  # the migration check itself waits for the write lock
        message = str(exc)
    else:
        with pytest.raises(StoreBusy) as caught, db.write() as conn:
            conn.exec_driver_sql("SELECT 1")
        message = str(caught.value)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert message == (f"{path}: the database is busy: another newsletter command kept it locked for 0.2 s; "
                       "wait for it to finish and run this again")


# -- ingest: any interleaving gives what serial ingestion gives ----------------------------------


def _pages_sharing_papers(folder: Path, shared: int = 60, own: int = 240) -> tuple[Path, Path]:
    """Two pages of 300 papers each; `shared` of them are on both pages, a typo apart on the second."""
    titles = generated_titles(shared + 2 * own, seed=7)
    common, first_own, second_own = titles[:shared], titles[shared:shared + own], titles[shared + own:]
    first = [(t, abstract_for(t)) for t in common + first_own]
    second = [(with_typo(t, i), abstract_for(t)) for i, t in enumerate(common)] + \
             [(t, abstract_for(t)) for t in second_own]
    return (write_page(folder, "first.txt", "Nov 20", first), write_page(folder, "second.txt", "Nov 20", second))


def _ingest(store_path: str, page: str) -> int:
    config = config_from_mapping({"store": store_path}, Path(store_path).parent)
    return pipeline.ingest_pages(config, at("2026-11-20"), [Path(page)]).new_papers


def test_concurrent_ingests_store_each_paper_once(tmp_path):
    first, second = _pages_sharing_papers(tmp_path / "pages")
    serial_path = tmp_path / "serial" / "s.sqlite3"
    serial = config_from_mapping({"store": str(serial_path)}, serial_path.parent)
    pipeline.ingest_pages(serial, at("2026-11-20"), [first])
    pipeline.ingest_pages(serial, at("2026-11-20"), [second])
    with open_store(serial_path) as store:
        expected = store.papers.count()
    assert expected == 540  # 60 shared + 2 x 240 own

    for round_ in range(3):
        path = str(tmp_path / f"round{round_}" / "s.sqlite3")
        new_papers = sorted(at_once(_ingest, [(path, str(first)), (path, str(second))]), key=str)
        assert new_papers == [240, 300], new_papers  # whichever went first stored 300, the other 240
        with open_store(path) as store:
            assert store.papers.count() == expected
            assert all(len(p.sightings) in (1, 2) for p in store.papers.get())


def test_papers_committed_by_another_process_mid_ingest_are_matched(tmp_path):
    """A writer commits a paper while this ingest is waiting for the write lock; the typo of it
    on our page must join that paper, not become a second one."""
    path = tmp_path / "s.sqlite3"
    title = generated_titles(1, seed=3)[0]
    with open_store(path) as store:
        store.papers.add_page(page_of([("Warm up paper about graph neural networks", "An abstract.")]),
                              at("2026-11-20"))
        other = open_store(path)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        blocker.execute("UPDATE counters SET value = value + 1 WHERE name = 'ingest_batch'")  # as an ingest does
        blocker.execute("INSERT INTO papers (title, title_key, abstract, links, first_seen, ingest_batch) "
                        "VALUES (?, ?, ?, '[]', ?, (SELECT value FROM counters WHERE name = 'ingest_batch'))",
                        (title, title_key(title), "x", "2026-11-20 06:00:00"))
        paper_id = blocker.execute("SELECT max(id) FROM papers").fetchone()[0]
        # What another ingest writes in the same transaction: the paper and its typo index entries.
        blocker.executemany("INSERT INTO recent_title_pieces (probe, paper_id) VALUES (?, ?)",
                            [(probe, paper_id) for probe in store_probes(title_key(title))])
        outcome: list[object] = []
        ours = page_of([(with_typo(title, 1), "The same paper, listed again.")], name="ours.txt")
        worker = threading.Thread(target=lambda: outcome.append(other.papers.add_page(ours, at("2026-11-20"))))
        worker.start()
        time.sleep(0.5)  # let the ingest match and block on the write lock
        blocker.execute("COMMIT")
        blocker.close()
        worker.join(timeout=30)
        other.close()
        assert outcome and outcome[0].new_papers == 0  # type: ignore[attr-defined]
        assert store.papers.count() == 2


def page_of(entries: list[tuple[str, str]], name: str = "p.txt") -> Page:
    data = listing_page("Nov 20", entries).encode()
    return parse_page(Path(name), data, at("2026-11-20").date())


def _ingest_inbox(config_dir: str) -> str:
    config = config_from_mapping({}, Path(config_dir))
    report = pipeline.ingest_pages(config, at("2026-11-20"))
    return f"{len(report.pages)} pages, {report.new_papers} new, {len(report.problems)} problems"


def test_two_ingests_of_the_same_inbox_take_turns(tmp_path):
    """Both list the same files; the second waits, then finds the inbox already emptied."""
    inbox = tmp_path / "var" / "inbox"
    titles = generated_titles(400, seed=11)
    for n in range(4):
        write_page(inbox, f"page-{n}.txt", "Nov 20", [(t, abstract_for(t)) for t in titles[n * 100:(n + 1) * 100]])
    outcomes = sorted(at_once(_ingest_inbox, [(str(tmp_path),), (str(tmp_path),)]))
    assert outcomes == ["0 pages, 0 new, 0 problems", "4 pages, 400 new, 0 problems"]
    with open_store(tmp_path / "var" / "newsletter.sqlite3") as store:
        assert store.papers.count() == 400


def test_a_store_from_before_the_title_index_files_its_papers_and_still_dedupes(tmp_path):
    """A version-5 database (made by the previous release) has papers but no `title_pieces`: the upgrade
    files every stored paper, so a typo of one of them on the next page joins it instead of becoming a second."""
    path = tmp_path / "s.sqlite3"
    shutil.copy(DATA / "store-previous-release.sqlite3", path)
    with sqlite3.connect(path) as conn:
        titles = [title for (title,) in conn.execute("SELECT title FROM papers ORDER BY id")]
        assert not conn.execute("SELECT name FROM sqlite_master WHERE name = 'title_pieces'").fetchall()
        sighted = conn.execute("SELECT paper_id, count(*) FROM sightings GROUP BY paper_id "
                               "ORDER BY paper_id").fetchall()
    with open_store(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        # Revision 11 rebuilt `papers` with foreign key checks off: ids and sightings are kept, the checks are back.
        assert [(p.id, len(p.sightings)) for p in store.papers.get()] == sighted
        with store.db.read() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert not [i for i in conn.exec_driver_sql("PRAGMA index_list(papers)") if i[2]]  # no unique index
        typos = [with_typo(t, n) for n, t in enumerate(titles)]
        outcome = store.papers.add_page(page_of([(t, "Again.") for t in typos], name="again.txt"), at("2026-11-21"))
        assert (outcome.new_papers, outcome.duplicates) == (0, len(titles))
        assert store.papers.count() == len(titles)


def synchronous(conn: Any) -> int:
    return int(conn.connection.driver_connection.execute("PRAGMA synchronous").fetchone()[0])


def test_a_lazily_synced_write_skips_the_fsync_only_right_after_a_synced_one(tmp_path: Path) -> None:
    with open_store(tmp_path / "db.sqlite3") as store:  # opening migrates: a synced write
        with store.db.write(lazy_sync=True) as conn:
            assert synchronous(conn) == 1  # NORMAL: the commit before it was synced a moment ago
        with store.db.write() as conn:
            assert synchronous(conn) == 2  # FULL, and the setting does not leak into later writes
        store.db._synced_at -= 2  # as if the last synced commit were two seconds old
        with store.db.write(lazy_sync=True) as conn:
            assert synchronous(conn) == 2  # waits for the disk: at most ~1 s of lazy commits is ever unsynced
        with store.db.write(lazy_sync=True) as conn:
            conn.execute(update(meta).where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))
    with sqlite3.connect(tmp_path / "db.sqlite3") as check:  # another connection sees the lazy commit
        assert check.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)


def test_a_driver_write_holds_the_write_lock_commits_and_rolls_back_on_an_exception(tmp_path):
    from sqlalchemy import bindparam, insert, select

    from newsletter.store.schema import Database, Prebuilt, from_db, subscriber_health

    path = tmp_path / "driver.sqlite3"
    with open_store(path) as store:
        db = store.db
        other = Database(path, busy_timeout_ms=50)
        try:
            add = Prebuilt(insert(subscriber_health).values(  # type: ignore[arg-type]
                subscriber_id=bindparam("who"), hard_failures=1, last_reply="",
                updated_at=bindparam("at", type_=subscriber_health.c.updated_at.type)))
            with db.driver_write(lazy_sync=True) as txn:
                add.run(txn, {"who": "ann", "at": at("2026-11-23")})
                with pytest.raises(StoreBusy), other.write():
                    pass  # the write lock is held from the start
            with pytest.raises(RuntimeError), db.driver_write() as txn:
                add.run(txn, {"who": "bob", "at": at("2026-11-23")})
                raise RuntimeError("stop")
            with other.write():  # the lock was let go both times
                pass
            with db.read() as conn:
                rows = conn.execute(select(subscriber_health.c.subscriber_id, subscriber_health.c.updated_at)).all()
        finally:
            other.close()
    assert [(r[0], from_db(r[1])) for r in rows] == [("ann", at("2026-11-23"))]


def test_a_batch_commit_is_synced_after_the_write_lock_is_let_go(tmp_path, monkeypatch):
    from newsletter.store import backends
    from newsletter.store.schema import Database, subscriber_health

    path = tmp_path / "sync.sqlite3"
    synced: list[tuple[str, bool]] = []
    real_fsync = os.fsync

    def fsync_and_look(fd: int) -> None:
        other = Database(path, busy_timeout_ms=50)
        try:
            with other.write():  # another writer gets in while the batch waits for the disk
                free = True
        except StoreBusy:
            free = False
        finally:
            other.close()
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), free))
        real_fsync(fd)

    with open_store(path) as store:
        monkeypatch.setattr(backends.os, "fsync", fsync_and_look)
        with store.db.write(sync_after_unlock=True) as conn:
            conn.execute(update(subscriber_health).values(hard_failures=0))
        with store.db.write(lazy_sync=True):  # within LAZY_SYNC_SECONDS of that sync: no fsync of its own
            pass
    assert synced == [(f"{path}-wal", True)]


def test_driver_writes_keep_their_lazy_connection_to_themselves_and_sync_when_they_must(tmp_path, monkeypatch):
    from sqlalchemy import text

    from newsletter.store import backends, schema

    synced: list[str] = []
    real_fsync = os.fsync

    def fsync_and_note(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    path = tmp_path / "own.sqlite3"
    with open_store(path) as store:
        monkeypatch.setattr(backends.os, "fsync", fsync_and_note)
        monkeypatch.setattr(schema, "LAZY_SYNC_SECONDS", 0.0)
        with store.db.driver_write(lazy_sync=True):  # no synced commit in the last 0 s: this one must sync
            pass
        monkeypatch.setattr(schema, "LAZY_SYNC_SECONDS", 60.0)
        with store.db.driver_write(lazy_sync=True):  # one just did: this one need not
            pass
        with store.db.write() as conn:  # every other write still waits for the disk in its commit
            mode = conn.execute(text("PRAGMA synchronous")).scalar()
    assert synced == [f"{path}-wal"]
    assert mode == 2  # FULL


def test_driver_writes_from_many_short_lived_threads_leave_the_pool_its_connections(tmp_path):
    # A daemon's runs start new sending threads; connections kept per thread would never come back.
    from sqlalchemy import text

    with open_store(tmp_path / "threads.sqlite3") as store:
        for _ in range(3 * 15):  # three times what the pool may lend out at once
            thread = threading.Thread(target=_one_driver_write, args=(store,))
            thread.start()
            thread.join()
        held = [store.db.engine.connect() for _ in range(10)]  # the pool still has plenty to lend
        try:
            assert [conn.execute(text("SELECT 1")).scalar() for conn in held] == [1] * 10
        finally:
            for conn in held:
                conn.close()


def _one_driver_write(store: Any) -> None:
    with store.db.driver_write(lazy_sync=True) as txn:
        txn.driver.execute("SELECT 1")


def test_a_driver_write_waits_for_another_writer_and_gets_in_once_it_commits(tmp_path):
    # Its connection's own busy handler is off (busy_timeout 0): begin_immediate does the waiting, in short steps.
    path = tmp_path / "wait.sqlite3"
    with open_store(path) as store:
        blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        blocker.execute("BEGIN IMMEDIATE")
        blocker.execute("INSERT INTO meta (key, value) VALUES ('blocker', 'committed')")
        released = threading.Timer(0.2, blocker.execute, args=("COMMIT",))
        released.start()
        try:
            with store.db.driver_write() as txn:
                # It began after the other writer's commit (it sees its row), having waited rather than failed.
                assert txn.driver.execute("SELECT value FROM meta WHERE key = 'blocker'").fetchone() == ("committed",)
                txn.driver.execute("INSERT INTO meta (key, value) VALUES ('waited', 'yes')")
                own_timeout = txn.driver.execute("PRAGMA busy_timeout").fetchone()[0]
        finally:
            released.join()
            blocker.close()
        with store.db.read() as conn:
            assert conn.exec_driver_sql("SELECT value FROM meta WHERE key = 'waited'").scalar() == "yes"
    assert own_timeout == 0


def test_a_driver_write_blocked_past_the_busy_timeout_is_one_clear_error(tmp_path):
    path = tmp_path / "busy.sqlite3"
    open_store(path).close()
    db = Database(path, busy_timeout_ms=150)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreBusy) as caught, db.driver_write():
            pass
        blocker.execute("ROLLBACK")
        with db.driver_write() as txn:  # the failed wait left nothing behind: the next write gets in
            txn.driver.execute("INSERT INTO meta (key, value) VALUES ('after', 'yes')")
    finally:
        blocker.close()
        db.close()
    assert str(caught.value) == (f"{path}: the database is busy: another newsletter command kept it locked for "
                                 "0.15 s; wait for it to finish and run this again")


def test_rows_inserted_with_their_ids_are_stored_as_sqlalchemy_stores_them_and_take_the_next_ids(tmp_path):
    from sqlalchemy import delete, insert, text

    from newsletter.store.schema import deliveries, digests, insert_with_ids, to_db

    def row(who: str) -> dict[str, object]:
        return {"subscriber_id": who, "issued_at": to_db(at("2026-11-23")), "window_start": to_db(at("2026-11-20")),
                "window_end": to_db(at("2026-11-23")), "through_batch": 3, "candidate_count": 40, "paper_count": 5,
                "slot_date": at("2026-11-23").date(), "slot_at": None}

    with open_store(tmp_path / "ids.sqlite3") as store:
        with store.db.write() as conn:
            conn.execute(insert(digests), [row("by-sqlalchemy")])
            conn.execute(insert(digests), [row("removed")])
            conn.execute(delete(digests).where(digests.c.subscriber_id == "removed"))  # SQLite reuses its id
            ids = insert_with_ids(conn, digests, [row("ann"), row("bob")])
            stored = conn.execute(text("SELECT id, subscriber_id, issued_at, typeof(issued_at), window_start, "
                                       "slot_date, typeof(slot_date), slot_at FROM digests ORDER BY id")).all()
            assert insert_with_ids(conn, digests, []) == []
            with pytest.raises(ValueError, match="do not all have the same columns"):
                insert_with_ids(conn, digests, [row("cy"), row("dee") | {"unknown": 1}])
            # A column left out takes its Python-side default, as SQLAlchemy's insert gives it (attempts, reply).
            delivery = {"digest_id": 2, "recipient": "ann@example.org", "message_id": "<m@x>", "status": "queued",
                        "updated_at": to_db(at("2026-11-23"))}
            conn.execute(insert(deliveries), [delivery])
            insert_with_ids(conn, deliveries, [delivery | {"digest_id": 3}])
            kept = conn.execute(text("SELECT digest_id, attempts, reply, updated_at, next_attempt_at FROM deliveries "
                                     "ORDER BY id")).all()
    assert ids == [2, 3]
    assert [tuple(r) for r in kept] == [(2, 0, "", "2026-11-23 08:00:00.000000", None),
                                        (3, 0, "", "2026-11-23 08:00:00.000000", None)]
    assert [tuple(r) for r in stored] == [
        (1, "by-sqlalchemy", "2026-11-23 08:00:00.000000", "text", "2026-11-20 08:00:00.000000", "2026-11-23", "text",
         None),
        (2, "ann", "2026-11-23 08:00:00.000000", "text", "2026-11-20 08:00:00.000000", "2026-11-23", "text", None),
        (3, "bob", "2026-11-23 08:00:00.000000", "text", "2026-11-20 08:00:00.000000", "2026-11-23", "text", None)]
