#!/usr/bin/env python3
"""The store on SQLite and on PostgreSQL: ingest, queueing digests, and one commit per sent message.

    python bench/store_backends.py [--papers 10000] [--digests 2000]

Starts the tests' PostgreSQL server (tests/pg_server.py: Debian's initdb/pg_ctl in a temporary
folder, unix socket, fsync off as in the tests) and a SQLite file beside it, then on each: ingests
pages of 500 generated papers, queues digests 50 to a transaction with 10 papers each, and walks
every message through start_sending (settling the previous one in the same commit, as a send batch
does). Prints rates; nothing is asserted. fsync is off on the PostgreSQL server but on for SQLite,
so the commit-bound rates favour PostgreSQL here.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from builders import abstract_for, generated_titles, listing_page  # noqa: E402
from pg_server import PostgresServer  # noqa: E402

from newsletter.models import DeliveryStatus, Digest, ScoredPaper, Subscriber  # noqa: E402
from newsletter.sources.listing import parse_page  # noqa: E402
from newsletter.store import Enqueue, Store, open_store  # noqa: E402
from newsletter.store.migrate import upgrade  # noqa: E402

NOW = datetime(2026, 11, 20, 7, 30, tzinfo=UTC)
PAGE = 500


def ingest(store: Store, papers: int) -> float:
    titles = generated_titles(papers, seed=11)
    started = time.perf_counter()
    for n, start in enumerate(range(0, papers, PAGE)):
        text = listing_page("Nov 20", [(t, abstract_for(t)) for t in titles[start : start + PAGE]])
        store.papers.add_page(parse_page(Path(f"p{n}.txt"), text.encode(), date(2026, 11, 20)), NOW)
    return papers / (time.perf_counter() - started)


def queue(store: Store, digests: int) -> float:
    chosen = tuple(ScoredPaper(p, 0.5) for p in store.papers.get(range(1, 11)))
    items = [Enqueue(Digest(Subscriber(id=f"s{i}", email=f"s{i}@example.org", name=""), chosen, NOW, NOW, NOW,
                            store.papers.newest_batch(), 10, slot=NOW.date()),
                     NOW, f"<{i}@bench>", b"x" * 20_000) for i in range(digests)]
    started = time.perf_counter()
    for start in range(0, digests, 50):
        store.ledger.enqueue_many(items[start : start + 50], NOW)
    return digests / (time.perf_counter() - started)


def send(store: Store) -> float:
    due = store.ledger.due(NOW)
    started = time.perf_counter()
    previous: int | None = None
    for message in due:
        settle = (previous, "250 OK") if previous is not None else None
        store.ledger.start_sending(message.record.delivery_id, NOW, settle_sent=settle)
        previous = message.record.delivery_id
    if previous is not None:
        store.ledger.settle(previous, DeliveryStatus.SENT, reply="250 OK", now=NOW)
    return len(due) / (time.perf_counter() - started)


def measure(label: str, url: str, papers: int, digests: int) -> None:
    open_store(url).close()  # create or check the schema; the timed open below finds it up to date
    started = time.perf_counter()
    with open_store(url) as store:
        opened = (time.perf_counter() - started) * 1000
        print(f"{label:<10} ingest {ingest(store, papers):8,.0f} papers/s   queue {queue(store, digests):6,.0f} "
              f"digests/s   send bookkeeping {send(store):6,.0f} messages/s   (open {opened:.0f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=10_000)
    parser.add_argument("--digests", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        measure("sqlite", f"sqlite:///{folder}/bench.sqlite3", args.papers, args.digests)
    server = PostgresServer().start()
    try:
        server.execute('CREATE DATABASE bench')
        with open_store(server.url("bench"), migrate=False) as store:
            upgrade(store.db)
        measure("postgresql", server.url("bench"), args.papers, args.digests)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
