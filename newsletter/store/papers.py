"""Pages, papers and sightings: what ingest writes and what planning reads.

Ingest matches a page's titles against the stored ones in the database itself:
the same key and its typos alike through the probes filed in `title_pieces` and
`recent_title_pieces` (titles.py explains them), so a new process pays for its
page, not for the 100,000 papers already stored. New papers' probes go to the
small recent table, whose few leaves an ingest dirties instead of most of the big
table's (probes are random); once it holds as many rows as half the stored papers,
the ingest that filled it moves them into `title_pieces` in one sorted insert, in
a transaction of its own after its page has committed (a merge of 50,000 rows into a
store of 100,000 papers is measured by bench/bench_ingest.py (e)). Matching happens before the
write lock; if another process stored papers in between, the page is matched
again inside the write transaction, so any interleaving of ingests gives what
serial ingestion gives.

Each ingest takes the next ingest batch number from a counter row inside its write
transaction; the row stays locked until it commits, so batches commit in order on
SQLite and PostgreSQL alike (paper ids do not on PostgreSQL: a sequence value is
taken at insert). Digest windows ("after batch N") and "has anyone stored papers
since we matched" both count batches, so neither misses a paper that committed late.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, or_, select, union_all, update
from sqlalchemy.engine import Connection

from ..errors import StoreBusy
from ..models import Link, Page, PageOutcome, Paper, Sighting
from ..titles import TitleIndex, closest, lookup_probes, store_probes, title_key
from .schema import (
    INGEST_BATCH,
    Database,
    counters,
    from_db,
    insert_rows,
    pages,
    papers,
    recent_title_pieces,
    sightings,
    title_pieces,
    to_db,
)

log = logging.getLogger(__name__)

# SQLite caps the bound parameters of one statement.
CHUNK = 500
# recent_title_pieces is moved into title_pieces once it holds this many rows, or half as many as there
# are stored papers if that is more: a merge rewrites most of the big table's leaves, so its cost per
# row stays the same as the store grows, and the recent table stays a few hundred pages at most.
MERGE_MIN_ROWS = 20_000


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
        self._loose: TitleIndex | None = None  # titles for people's `liked` entries, built on first need
        self._loose_through = 0  # the newest ingest batch in _loose

    # -- ingest ---------------------------------------------------------------------------

    def page_ingested(self, sha256: str) -> bool:
        with self._db.read() as conn:
            return _page_exists(conn, sha256)

    def add_page(self, page: Page, now: datetime) -> PageOutcome:
        """Store a page and its papers in one short transaction; the same page twice adds nothing."""
        keys = [title_key(parsed.title) for parsed in page.papers]
        with self._db.read() as conn:
            if _page_exists(conn, page.sha256):
                return PageOutcome(already_ingested=True, new_papers=0, duplicates=0)
            matched_through = _newest_batch(conn)
            match = _match(conn, keys)
        with self._db.write() as conn:
            if _page_exists(conn, page.sha256):
                return PageOutcome(already_ingested=True, new_papers=0, duplicates=0)
            batch = _take_batch(conn)  # from here on no other ingest can commit before this one
            if batch - 1 != matched_through:  # another process stored papers since we matched
                match = _match(conn, keys)
            new_ids = self._insert(conn, page, keys, match, batch, now)
            merge_due = _merge_due(conn)
        self._loose = None
        if merge_due:  # after the page committed: the page is stored whether or not the merge happens
            try:
                self.merge_recent_pieces()
            except StoreBusy:  # lookups read both tables, so a later ingest can merge just as well
                log.info("title index merge skipped: another process holds the database; a later ingest merges")
        return PageOutcome(already_ingested=False, new_papers=len(new_ids), duplicates=len(keys) - len(new_ids))

    def merge_recent_pieces(self) -> int:
        """Move every row of recent_title_pieces into title_pieces (sorted, so the big table's leaves are
        written once each); the number of rows moved. Lookups give the same answers before and after."""
        with self._db.write() as conn:
            recent = recent_title_pieces.c
            conn.execute(insert(title_pieces).from_select(
                ["probe", "paper_id"], select(recent.probe, recent.paper_id).order_by(recent.probe, recent.paper_id)
            ))
            moved = conn.execute(delete(recent_title_pieces)).rowcount  # PostgreSQL gave -1 for the INSERT
        return int(moved)

    def _insert(self, conn: Connection, page: Page, keys: Sequence[str], match: _Match, batch: int,
                now: datetime) -> list[int]:
        page_id = conn.execute(
            insert(pages).values(sha256=page.sha256, name=page.name, page_date=page.date,
                                 ingested_at=to_db(now), paper_count=len(page.papers))
        ).inserted_primary_key[0]  # type: ignore[index]
        new_keys = [keys[i] for i in match.new_entries]
        ids_by_key = _insert_papers(conn, [
            (page.papers[i].title, keys[i], page.papers[i].abstract,
             json.dumps([[link.url, link.kind] for link in page.papers[i].links]), to_db(now), batch)
            for i in match.new_entries
        ])
        new_ids = [ids_by_key[key] for key in new_keys]
        insert_rows(conn, recent_title_pieces, [(probe, paper_id)
                                                for key, paper_id in zip(new_keys, new_ids, strict=True)
                                                for probe in store_probes(key)])
        insert_rows(conn, sightings, [
            (None, stored if stored is not None else new_ids[new], page_id, parsed.position, parsed.title)  # type: ignore[index]
            for parsed, stored, new in zip(page.papers, match.existing, match.new_of_entry, strict=True)
        ])
        return new_ids

    # -- reading papers -----------------------------------------------------------------------

    def get(self, ids: Iterable[int] | None = None) -> list[Paper]:
        """Stored papers (all, or the given ids) with their sightings, oldest first."""
        query = select(papers).order_by(papers.c.id)
        if ids is None:
            return self._load(query)
        # In chunks: the databases cap the parameters of one statement (SQLite at 32,766), and the
        # papers a run's votes name grow with the subscribers.
        wanted = sorted(set(ids))
        return [paper for chunk in _chunks(wanted, CHUNK) for paper in self._load(query.where(papers.c.id.in_(chunk)))]

    def max_id(self) -> int:
        with self._db.read() as conn:
            return _newest_id(conn)

    def newest_batch(self) -> int:
        """The newest committed ingest batch: every paper of it and of the batches before it is stored."""
        with self._db.read() as conn:
            return _newest_batch(conn)

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
        return self.find_by_titles([title])[title]

    def find_by_titles(self, titles: Sequence[str]) -> dict[str, Paper | None]:
        """`find_by_title` of each title, with one look at the store for all of them (a run's liked papers)."""
        # A long-running process (the web app, the daemon) must also find papers another process stored since.
        newest = self.newest_batch()
        if self._loose is None or self._loose_through != newest:
            with self._db.read() as conn:
                rows = conn.execute(select(papers.c.title, papers.c.id).order_by(papers.c.id))
                self._loose = TitleIndex((title, ident) for title, ident in rows)
            self._loose_through = newest
        index = self._loose
        matched = {title: index.find_loose(title) for title in dict.fromkeys(titles)}
        found = {p.id: p for p in self.get([pid for pid in matched.values() if pid is not None])}
        return {title: found.get(pid) if pid is not None else None for title, pid in matched.items()}

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


def _match(conn: Connection, keys: Sequence[str]) -> _Match:
    """Match each entry to a stored paper, else to an earlier new entry of the same page."""
    probes = {key: lookup_probes(key) for key in keys if key}  # once per key, used twice
    stored = _stored_matches(conn, probes)
    on_page = TitleIndex()  # new papers of this page, by their position in new_entries
    existing: list[int | None] = []
    new_of_entry: list[int | None] = []
    new_entries: list[int] = []
    for position, key in enumerate(keys):
        found = stored.get(key)
        earlier = on_page.find_key(key, probes.get(key, ())) if found is None else None
        if found is None and earlier is None:
            earlier = len(new_entries)
            on_page.add_key(key, earlier)
            new_entries.append(position)
        existing.append(found)
        new_of_entry.append(earlier)
    return _Match(tuple(existing), tuple(new_of_entry), tuple(new_entries))


def _stored_matches(conn: Connection, probes: dict[str, set[int]]) -> dict[str, int]:
    """For each key (with its lookup probes), the stored paper with the same key, else the closest typo."""
    asked: list[int] = []  # every key's probes one after another (a probe two keys ask for appears twice)
    asker: list[str] = []  # the key that asks for asked[i]
    for key, wanted in probes.items():
        asked.extend(wanted)
        asker.extend([key] * len(wanted))
    candidates: defaultdict[str, dict[int, str]] = defaultdict(dict)  # key -> {paper id: its stored key}
    for position, paper_id, stored_key in _filed_under(conn, asked):
        candidates[asker[position]][paper_id] = stored_key
    found: dict[str, int] = {}
    for key, papers_by_id in candidates.items():
        # Ingest never stores one key twice; min() only makes the answer independent of row order.
        same = [ident for ident, stored_key in papers_by_id.items() if stored_key == key]
        nearest = min(same) if same else closest(key, ((stored_key, ident) for ident, stored_key in
                                                        papers_by_id.items()))
        if nearest is not None:
            found[key] = nearest
    return found


def _merge_due(conn: Connection) -> bool:
    recent = int(conn.execute(select(func.count()).select_from(recent_title_pieces)).scalar_one())
    return recent >= max(MERGE_MIN_ROWS, _newest_id(conn) // 2)


def _insert_papers(conn: Connection, rows: list[tuple[str, str, str, str, datetime, int]]) -> dict[str, int]:
    """Insert (title, title_key, abstract, links, first_seen, ingest_batch) rows; the new id of each key."""
    if not rows:
        return {}
    columns = ("title", "title_key", "abstract", "links", "first_seen", "ingest_batch")
    if conn.dialect.name == "sqlite":  # the driver's executemany, then one query for the ids (keys are unique)
        before = _newest_id(conn)
        # SQLAlchemy's own text form of a datetime, so stored values compare as before
        as_stored = papers.c.first_seen.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        assert as_stored is not None
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(f"INSERT INTO papers ({', '.join(columns)}) VALUES (?, ?, ?, ?, ?, ?)",
                               [(*row[:4], as_stored(row[4]), row[5]) for row in rows])
        finally:
            cursor.close()
        return {key: ident for ident, key in _driver_rows(conn, "SELECT id, title_key FROM papers WHERE id > ?",
                                                          before)}
    inserted = conn.execute(insert(papers).returning(papers.c.id, papers.c.title_key),
                            [dict(zip(columns, row, strict=True)) for row in rows])
    return {key: int(ident) for ident, key in inserted}


def _filed_under(conn: Connection, probes: list[int]) -> list[tuple[int, int, str]]:
    """(position in `probes`, paper id, stored title key) of every stored paper filed under one of `probes`.

    Both tables in one statement: on PostgreSQL every statement sees one snapshot, so a merge committing
    meanwhile can never hide a row that moved from one table to the other.
    """
    if not probes:
        return []
    if conn.dialect.name == "sqlite":  # the list as one JSON parameter; json_each numbers its elements
        return _driver_rows(conn, " UNION ALL ".join(
            "SELECT wanted.key, filed.paper_id, papers.title_key FROM json_each(?1) AS wanted "
            f"JOIN {table.name} AS filed ON filed.probe = wanted.value JOIN papers ON papers.id = filed.paper_id"
            for table in (title_pieces, recent_title_pieces)
        ), json.dumps(probes))
    positions: defaultdict[int, list[int]] = defaultdict(list)
    for position, probe in enumerate(probes):
        positions[probe].append(position)
    distinct = list(positions)
    rows: list[tuple[int, int, str]] = []
    for start in range(0, len(distinct), CHUNK):
        chunk = distinct[start : start + CHUNK]
        filed = union_all(*(select(table.c.probe, table.c.paper_id).where(table.c.probe.in_(chunk))
                            for table in (title_pieces, recent_title_pieces))).subquery()
        query = (select(filed.c.probe, filed.c.paper_id, papers.c.title_key)
                 .join(papers, papers.c.id == filed.c.paper_id))
        rows.extend((position, int(ident), key) for probe, ident, key in conn.execute(query)
                    for position in positions[int(probe)])
    return rows


def _driver_rows(conn: Connection, sql: str, *parameters: object) -> list[tuple]:  # type: ignore[type-arg]
    """Rows straight from the sqlite3 cursor: for thousands of rows SQLAlchemy's row objects cost more than
    the query."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        return cursor.execute(sql, parameters).fetchall()
    finally:
        cursor.close()


def _newest_id(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(papers.c.id), 0))).scalar_one())


def _take_batch(conn: Connection) -> int:
    """The next ingest batch number. Taken inside the ingest's write transaction: the counter row stays
    locked until it commits, so a later batch can never commit before an earlier one."""
    return int(conn.execute(update(counters).where(counters.c.name == INGEST_BATCH)
                            .values(value=counters.c.value + 1).returning(counters.c.value)).scalar_one())


def _newest_batch(conn: Connection) -> int:
    return int(conn.execute(select(counters.c.value).where(counters.c.name == INGEST_BATCH)).scalar_one())


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
