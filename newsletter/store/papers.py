"""Pages, papers and sightings: what ingest writes and what planning reads.

Ingest matches a page's titles against the stored ones before it takes the
write lock, and keeps the write transaction to the inserts. Each ingest takes the
next ingest batch number from a counter row inside its transaction; the row lock
makes batches commit in order on SQLite and PostgreSQL alike (paper ids do not on
PostgreSQL). Papers of batches committed by another process in between are read
inside the transaction and the page is matched again, so any interleaving of
ingests gives what serial ingestion gives, and digest windows ("after batch N")
never skip a paper that committed late.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.engine import Connection

from ..models import Link, Page, PageOutcome, Paper, Sighting
from ..titles import TitleIndex, title_key
from .schema import INGEST_BATCH, Database, counters, from_db, pages, papers, sightings, to_db

# SQLite caps the bound parameters of one statement.
CHUNK = 500


@dataclass(frozen=True, slots=True)
class _Match:
    """Where each entry of a page goes: a stored paper's id, or the index of a new paper to insert."""

    existing: tuple[int | None, ...]  # per entry: stored paper id, or None when the entry is (or repeats) a new paper
    new_of_entry: tuple[int | None, ...]  # per entry: index into `new_entries`, for entries that are new papers
    new_entries: tuple[int, ...]  # entry positions that introduce a new paper


class PaperStore:
    """What ingest writes (pages, papers, sightings) and planning reads (papers with their sightings)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._keys = TitleIndex()  # every stored title key, by paper id
        self._keys_through = 0  # the newest ingest batch loaded into _keys
        self._loose: TitleIndex | None = None  # titles for people's `liked` entries, built on first need
        self._loose_through = 0  # the newest ingest batch in _loose

    # -- ingest ---------------------------------------------------------------------------

    def page_ingested(self, sha256: str) -> bool:
        with self._db.read() as conn:
            return _page_exists(conn, sha256)

    def add_page(self, page: Page, now: datetime) -> PageOutcome:
        """Store a page and its papers in one short transaction; the same page twice adds nothing."""
        with self._db.read() as conn:
            if _page_exists(conn, page.sha256):
                return PageOutcome(already_ingested=True, new_papers=0, duplicates=0)
            self._load_new_keys(conn)
        keys = [title_key(parsed.title) for parsed in page.papers]
        match = self._match(keys)
        with self._db.write() as conn:
            if _page_exists(conn, page.sha256):
                return PageOutcome(already_ingested=True, new_papers=0, duplicates=0)
            batch = _take_batch(conn)  # from here on no other ingest can commit before this one
            if self._load_new_keys(conn):  # another process stored papers since we matched
                match = self._match(keys)
            new_ids = self._insert(conn, page, keys, match, batch, now)
        for position, paper_id in zip(match.new_entries, new_ids, strict=True):
            self._keys.add_key(keys[position], paper_id)
        self._keys_through = batch
        self._loose = None
        return PageOutcome(already_ingested=False, new_papers=len(new_ids), duplicates=len(keys) - len(new_ids))

    def load_title_index(self) -> None:
        """Load every stored key into the index (benchmarks warm a long-running process with it)."""
        with self._db.read() as conn:
            self._load_new_keys(conn)

    def _load_new_keys(self, conn: Connection) -> bool:
        """Add the keys of papers of batches committed since the last look; True when there were any."""
        # The driver's own cursor: at 100,000 papers SQLAlchemy's row objects cost more than the query.
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(f"SELECT title_key, id, ingest_batch FROM papers WHERE ingest_batch > {mark} "
                       "ORDER BY ingest_batch, id", (self._keys_through,))
        rows = cursor.fetchall()
        cursor.close()
        if not len(self._keys):
            self._keys = TitleIndex.from_keys((key, paper_id) for key, paper_id, _ in rows)  # first load: in bulk
        else:
            for key, paper_id, _ in rows:
                self._keys.add_key(key, paper_id)
        if rows:
            self._keys_through = rows[-1][2]
        return bool(rows)

    def _match(self, keys: Sequence[str]) -> _Match:
        """Match each entry to a stored paper, else to an earlier new entry of the same page."""
        on_page = TitleIndex()  # new papers of this page, by their position in new_entries
        existing: list[int | None] = []
        new_of_entry: list[int | None] = []
        new_entries: list[int] = []
        for position, key in enumerate(keys):
            stored = self._keys.find_key(key)
            earlier = on_page.find_key(key) if stored is None else None
            if stored is None and earlier is None:
                earlier = len(new_entries)
                on_page.add_key(key, earlier)
                new_entries.append(position)
            existing.append(stored)
            new_of_entry.append(earlier)
        return _Match(tuple(existing), tuple(new_of_entry), tuple(new_entries))

    def _insert(self, conn: Connection, page: Page, keys: Sequence[str], match: _Match, batch: int,
                now: datetime) -> list[int]:
        page_id = conn.execute(
            insert(pages).values(sha256=page.sha256, name=page.name, page_date=page.date,
                                 ingested_at=to_db(now), paper_count=len(page.papers))
        ).inserted_primary_key[0]  # type: ignore[index]
        rows = [
            {"title": page.papers[i].title, "title_key": keys[i], "abstract": page.papers[i].abstract,
             "links": json.dumps([[link.url, link.kind] for link in page.papers[i].links]),
             "first_seen": to_db(now), "ingest_batch": batch}
            for i in match.new_entries
        ]
        new_ids: list[int] = []
        if rows:
            inserted = conn.execute(insert(papers).returning(papers.c.id, sort_by_parameter_order=True), rows)
            new_ids = [int(row[0]) for row in inserted]
        conn.execute(insert(sightings), [
            {"paper_id": stored if stored is not None else new_ids[new],  # type: ignore[index]
             "page_id": page_id, "position": parsed.position, "title_as_seen": parsed.title}
            for parsed, stored, new in zip(page.papers, match.existing, match.new_of_entry, strict=True)
        ])
        return new_ids

    # -- reading papers -----------------------------------------------------------------------

    def get(self, ids: Iterable[int] | None = None) -> list[Paper]:
        """Stored papers (all, or the given ids) with their sightings, oldest first."""
        query = select(papers).order_by(papers.c.id)
        if ids is not None:
            query = query.where(papers.c.id.in_(list(ids)))
        return self._load(query)

    def max_id(self) -> int:
        with self._db.read() as conn:
            return int(conn.execute(select(func.coalesce(func.max(papers.c.id), 0))).scalar_one())

    def newest_batch(self) -> int:
        """The newest committed ingest batch: every paper of it and of the batches before it is stored."""
        with self._db.read() as conn:
            return int(conn.execute(select(counters.c.value).where(counters.c.name == INGEST_BATCH)).scalar_one())

    def count(self) -> int:
        with self._db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(papers)).scalar_one())

    def in_play(self, through_batch: int, *, after_batch: int | None, since: datetime | None) -> list[Paper]:
        """Papers of batches up to through_batch that are after after_batch or first seen after since."""
        newer = []
        if after_batch is not None:
            newer.append(papers.c.ingest_batch > after_batch)
        if since is not None:
            newer.append(papers.c.first_seen > to_db(since))
        if not newer:
            return []
        return self._load(select(papers).where(papers.c.ingest_batch <= through_batch, or_(*newer))
                          .order_by(papers.c.id))

    def recent(self, until: datetime, limit: int) -> list[Paper]:
        """The `limit` newest papers first seen by `until`, oldest first, without sightings."""
        newest = (
            select(papers.c.id).where(papers.c.first_seen <= to_db(until))
            .order_by(papers.c.first_seen.desc(), papers.c.id.desc()).limit(limit)
        )
        return self._load(select(papers).where(papers.c.id.in_(newest)).order_by(papers.c.id), with_sightings=False)

    def find_by_title(self, title: str) -> Paper | None:
        """The stored paper a title typed by a person (maybe misspelt or reordered) names, if any."""
        # A long-running process (the web app, the daemon) must also find papers another process stored since.
        newest = self.newest_batch()
        if self._loose is None or self._loose_through != newest:
            with self._db.read() as conn:
                rows = conn.execute(select(papers.c.title, papers.c.id).order_by(papers.c.id))
                self._loose = TitleIndex((title, ident) for title, ident in rows)
            self._loose_through = newest
        paper_id = self._loose.find_loose(title)
        found = self.get([paper_id]) if paper_id is not None else []
        return found[0] if found else None

    def _load(self, query: object, *, with_sightings: bool = True) -> list[Paper]:
        with self._db.read() as conn:
            rows = conn.execute(query).mappings().all()  # type: ignore[call-overload]
            seen = _sightings(conn, [row["id"] for row in rows]) if with_sightings else {}
        return [
            Paper(
                id=row["id"], title=row["title"], abstract=row["abstract"], first_seen=from_db(row["first_seen"]),
                links=tuple(Link(url=url, kind=kind) for url, kind in json.loads(row["links"])),
                sightings=tuple(seen.get(row["id"], ())), ingest_batch=row["ingest_batch"],
            )
            for row in rows
        ]


def _take_batch(conn: Connection) -> int:
    """The next ingest batch number. Taken inside the ingest's write transaction: the counter row stays
    locked until it commits, so a later batch can never commit before an earlier one."""
    return int(conn.execute(update(counters).where(counters.c.name == INGEST_BATCH)
                            .values(value=counters.c.value + 1).returning(counters.c.value)).scalar_one())


def _page_exists(conn: Connection, sha256: str) -> bool:
    return conn.execute(select(pages.c.id).where(pages.c.sha256 == sha256)).first() is not None


def _sightings(conn: Connection, paper_ids: Sequence[int]) -> dict[int, list[Sighting]]:
    found: dict[int, list[Sighting]] = defaultdict(list)
    for chunk in _chunks(paper_ids, CHUNK):
        rows = conn.execute(
            select(sightings.c.paper_id, pages.c.name, pages.c.page_date, sightings.c.position)
            .join(pages, pages.c.id == sightings.c.page_id)
            .where(sightings.c.paper_id.in_(chunk))
            .order_by(pages.c.page_date, pages.c.id, sightings.c.position)
        )
        for paper_id, name, page_date, position in rows:
            found[paper_id].append(Sighting(page_name=name, page_date=page_date, position=position))
    return found


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
