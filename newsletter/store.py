"""The only module that touches the database: pages, papers, sightings, digests, deliveries.

SQLAlchemy Core over SQLite. Timestamps are stored as naive UTC and returned
timezone-aware. The schema carries a version in `meta`; `MIGRATIONS` upgrades
an older file in place, and a file from a newer release is refused rather than
guessed at.
"""

from __future__ import annotations

import json
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DatabaseError

from .errors import StoreError
from .models import Digest, Link, Page, PageOutcome, Paper, Sighting
from .titles import TitleIndex, title_key

metadata = MetaData()

meta = Table("meta", metadata, Column("key", String, primary_key=True), Column("value", Text, nullable=False))

pages = Table(
    "pages", metadata,
    Column("id", Integer, primary_key=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("page_date", Date, nullable=False),
    Column("ingested_at", DateTime, nullable=False),
    Column("paper_count", Integer, nullable=False),
)

papers = Table(
    "papers", metadata,
    Column("id", Integer, primary_key=True),
    Column("title", Text, nullable=False),
    Column("title_key", Text, nullable=False, unique=True),
    Column("abstract", Text, nullable=False),
    Column("links", Text, nullable=False, default="[]"),  # JSON list of [url, kind]
    Column("first_seen", DateTime, nullable=False, index=True),
)

sightings = Table(
    "sightings", metadata,
    Column("id", Integer, primary_key=True),
    Column("paper_id", Integer, ForeignKey("papers.id"), nullable=False, index=True),
    Column("page_id", Integer, ForeignKey("pages.id"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("title_as_seen", Text, nullable=False),
    UniqueConstraint("page_id", "position"),
)

digests = Table(
    "digests", metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber_id", String, nullable=False, index=True),
    Column("issued_at", DateTime, nullable=False),
    Column("window_start", DateTime, nullable=False),
    Column("window_end", DateTime, nullable=False),
    # Paper ids grow in commit order (SQLite has one writer), so "after this id" never
    # misses a paper committed while a digest was being planned, whatever the clocks say.
    Column("through_paper_id", Integer, nullable=False),
    Column("candidate_count", Integer, nullable=False),
    Column("paper_count", Integer, nullable=False),
)

digest_papers = Table(
    "digest_papers", metadata,
    Column("digest_id", Integer, ForeignKey("digests.id"), primary_key=True),
    Column("paper_id", Integer, ForeignKey("papers.id"), primary_key=True),
    Column("rank", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("reason", Text, nullable=False),  # JSON {"topics": [...], "liked": [...], "terms": [...]}
)

# One row per digest that was handed to a mailer. `pending` is written before the
# send and replaced after it, so a crash in between leaves a visible trace.
deliveries = Table(
    "deliveries", metadata,
    Column("id", Integer, primary_key=True),
    Column("digest_id", Integer, ForeignKey("digests.id"), nullable=False, unique=True),
    Column("recipient", Text, nullable=False),
    Column("message_id", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending | sent | failed | unknown
    Column("attempts", Integer, nullable=False, default=0),
    Column("reply", Text, nullable=False, default=""),
    Column("updated_at", DateTime, nullable=False),
)

# A digest whose papers count as delivered: sent, possibly sent (pending/unknown
# after a crash: never risk a repeat), or an empty digest that was deliberately not sent.
DELIVERED_STATES = ("sent", "pending", "unknown")


def _create_v1(conn: Connection) -> None:
    metadata.create_all(conn)


# MIGRATIONS[n] upgrades a version-n database to n+1; version 0 is an empty file.
MIGRATIONS: list[Callable[[Connection], None]] = [_create_v1]
SCHEMA_VERSION = len(MIGRATIONS)


def to_db(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).replace(tzinfo=None)


def from_db(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """The newest digest window of a subscriber that counts as served."""

    ended_at: datetime
    through_paper_id: int


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    digest_id: int
    subscriber_id: str
    recipient: str
    message_id: str
    status: str
    attempts: int
    reply: str


class Store:
    """A SQLite database of pages, papers and what was sent to whom."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(f"sqlite:///{path}")
        event.listen(self.engine, "connect", _sqlite_pragmas)
        self._title_index: TitleIndex | None = None
        self._migrate()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ---------------------------------------------------------------------------

    def _migrate(self) -> None:
        try:
            with self.engine.begin() as conn:
                version = self._schema_version(conn)
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.path}: database schema version {version} is newer than this release "
                        f"understands ({SCHEMA_VERSION}); upgrade newsletter or point `store` at another file"
                    )
                for step in MIGRATIONS[version:]:
                    step(conn)
                if version < SCHEMA_VERSION:
                    self._set_meta(conn, "schema_version", str(SCHEMA_VERSION))
        except DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot open the database ({exc.orig})") from None

    def _schema_version(self, conn: Connection) -> int:
        if not self.engine.dialect.has_table(conn, "meta"):
            return 0
        value = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
        return int(value) if value is not None else 0

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return self._schema_version(conn)

    def _set_meta(self, conn: Connection, key: str, value: str) -> None:
        if conn.execute(select(meta.c.key).where(meta.c.key == key)).first():
            conn.execute(update(meta).where(meta.c.key == key).values(value=value))
        else:
            conn.execute(insert(meta).values(key=key, value=value))

    def secret_key(self) -> str:
        """The link-signing key kept in the store, generated on first use."""
        with self.engine.begin() as conn:
            value = conn.execute(select(meta.c.value).where(meta.c.key == "secret_key")).scalar()
            if value is None:
                value = secrets.token_urlsafe(32)
                self._set_meta(conn, "secret_key", value)
            return str(value)

    # -- ingest -----------------------------------------------------------------------------

    def page_ingested(self, sha256: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(pages.c.id).where(pages.c.sha256 == sha256)).first() is not None

    def titles(self) -> TitleIndex:
        if self._title_index is None:
            with self.engine.connect() as conn:
                rows = conn.execute(select(papers.c.title, papers.c.id).order_by(papers.c.id))
                self._title_index = TitleIndex((title, ident) for title, ident in rows)
        return self._title_index

    def add_page(self, page: Page, now: datetime) -> PageOutcome:
        """Store a page and its papers in one transaction; the same page twice adds nothing."""
        index = self.titles()
        added = False
        try:
            with self.engine.begin() as conn:
                if conn.execute(select(pages.c.id).where(pages.c.sha256 == page.sha256)).first():
                    return PageOutcome(already_ingested=True, new_papers=0, duplicates=0)
                page_id = conn.execute(
                    insert(pages).values(sha256=page.sha256, name=page.name, page_date=page.date,
                                         ingested_at=to_db(now), paper_count=len(page.papers))
                ).inserted_primary_key[0]  # type: ignore[index]
                new = 0
                for parsed in page.papers:
                    paper_id = index.find(parsed.title)
                    if paper_id is None:
                        paper_id = conn.execute(
                            insert(papers).values(
                                title=parsed.title, title_key=title_key(parsed.title), abstract=parsed.abstract,
                                links=json.dumps([[link.url, link.kind] for link in parsed.links]),
                                first_seen=to_db(now),
                            )
                        ).inserted_primary_key[0]  # type: ignore[index]
                        index.add(parsed.title, paper_id)
                        added = True
                        new += 1
                    conn.execute(insert(sightings).values(paper_id=paper_id, page_id=page_id,
                                                          position=parsed.position, title_as_seen=parsed.title))
        except BaseException:
            if added:
                self._title_index = None  # it holds ids that were rolled back
            raise
        return PageOutcome(already_ingested=False, new_papers=new, duplicates=len(page.papers) - new)

    # -- reading papers -----------------------------------------------------------------------

    def papers(self, ids: Iterable[int] | None = None) -> list[Paper]:
        """Stored papers (all, or the given ids) with their sightings, oldest first."""
        query = select(papers).order_by(papers.c.id)
        if ids is not None:
            query = query.where(papers.c.id.in_(list(ids)))
        return self._load_papers(query)

    def max_paper_id(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(papers.c.id), 0))).scalar_one())

    def papers_in_play(self, through_id: int, *, after_id: int | None, since: datetime | None) -> list[Paper]:
        """Papers with id <= through_id that are newer than after_id or first seen after since."""
        newer = []
        if after_id is not None:
            newer.append(papers.c.id > after_id)
        if since is not None:
            newer.append(papers.c.first_seen > to_db(since))
        if not newer:
            return []
        query = select(papers).where(papers.c.id <= through_id, or_(*newer)).order_by(papers.c.id)
        return self._load_papers(query)

    def recent_papers(self, until: datetime, limit: int) -> list[Paper]:
        """The `limit` newest papers first seen by `until`, oldest first."""
        newest = (
            select(papers.c.id).where(papers.c.first_seen <= to_db(until))
            .order_by(papers.c.first_seen.desc(), papers.c.id.desc()).limit(limit)
        )
        # Only their text is needed (to fit the IDF), not where they were seen.
        query = select(papers).where(papers.c.id.in_(newest)).order_by(papers.c.id)
        return self._load_papers(query, with_sightings=False)

    def find_paper(self, title: str) -> Paper | None:
        """The stored paper a title typed by a person (maybe misspelt or reordered) names, if any."""
        paper_id = self.titles().find_loose(title)
        if paper_id is None:
            return None
        found = self.papers([paper_id])
        return found[0] if found else None

    def paper_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(papers)).scalar_one())

    def _load_papers(self, query: object, *, with_sightings: bool = True) -> list[Paper]:
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()  # type: ignore[call-overload]
            seen = self._sightings(conn, [row["id"] for row in rows]) if with_sightings else {}
        return [
            Paper(
                id=row["id"], title=row["title"], abstract=row["abstract"], first_seen=from_db(row["first_seen"]),
                links=tuple(Link(url=url, kind=kind) for url, kind in json.loads(row["links"])),
                sightings=tuple(seen.get(row["id"], ())),
            )
            for row in rows
        ]

    def _sightings(self, conn: Connection, paper_ids: Sequence[int]) -> dict[int, list[Sighting]]:
        found: dict[int, list[Sighting]] = defaultdict(list)
        for chunk in _chunks(paper_ids, 500):  # SQLite caps bound parameters per statement
            rows = conn.execute(
                select(sightings.c.paper_id, pages.c.name, pages.c.page_date, sightings.c.position)
                .join(pages, pages.c.id == sightings.c.page_id)
                .where(sightings.c.paper_id.in_(chunk))
                .order_by(pages.c.page_date, pages.c.id, sightings.c.position)
            )
            for paper_id, name, page_date, position in rows:
                found[paper_id].append(Sighting(page_name=name, page_date=page_date, position=position))
        return found

    # -- digests and deliveries --------------------------------------------------------------------

    def last_closed_window(self, subscriber_id: str) -> ClosedWindow | None:
        """The newest digest window that is closed: delivered, possibly delivered, or empty.

        A failed delivery does not close its window, so its papers come round again.
        """
        with self.engine.connect() as conn:
            row = conn.execute(
                select(digests.c.window_end, digests.c.through_paper_id)
                .select_from(digests.outerjoin(deliveries, deliveries.c.digest_id == digests.c.id))
                .where(digests.c.subscriber_id == subscriber_id)
                .where(deliveries.c.id.is_(None) | deliveries.c.status.in_(DELIVERED_STATES))
                .order_by(digests.c.id.desc())
                .limit(1)
            ).first()
        return ClosedWindow(from_db(row[0]), int(row[1])) if row is not None else None

    def delivered_paper_ids(self, subscriber_id: str) -> set[int]:
        """Every paper this subscriber has (or may have, after a crash) been sent."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(digest_papers.c.paper_id)
                .join(digests, digests.c.id == digest_papers.c.digest_id)
                .join(deliveries, deliveries.c.digest_id == digests.c.id)
                .where(digests.c.subscriber_id == subscriber_id, deliveries.c.status.in_(DELIVERED_STATES))
            )
            return {row[0] for row in rows}

    def record_digest(self, digest: Digest, *, message_id: str | None, recipient: str, now: datetime) -> int:
        """Store a digest, and when it is about to be sent a `pending` delivery, in one transaction."""
        with self.engine.begin() as conn:
            digest_id = conn.execute(
                insert(digests).values(
                    subscriber_id=digest.subscriber.id, issued_at=to_db(digest.issued_at),
                    window_start=to_db(digest.window_start), window_end=to_db(digest.window_end),
                    through_paper_id=digest.through_paper_id,
                    candidate_count=digest.candidate_count, paper_count=len(digest.papers),
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            if digest.papers:
                conn.execute(
                    insert(digest_papers),
                    [
                        {"digest_id": digest_id, "paper_id": scored.paper.id, "rank": rank, "score": scored.score,
                         "reason": json.dumps({"topics": scored.reason.topics, "liked": scored.reason.liked,
                                               "terms": scored.reason.terms})}
                        for rank, scored in enumerate(digest.papers, start=1)
                    ],
                )
            if message_id is not None:
                conn.execute(
                    insert(deliveries).values(digest_id=digest_id, recipient=recipient, message_id=message_id,
                                              status="pending", attempts=0, reply="", updated_at=to_db(now))
                )
        return int(digest_id)

    def finish_delivery(self, digest_id: int, *, status: str, attempts: int, reply: str, now: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(deliveries).where(deliveries.c.digest_id == digest_id)
                .values(status=status, attempts=attempts, reply=reply, updated_at=to_db(now))
            )

    def mark_interrupted(self, now: datetime) -> list[DeliveryRecord]:
        """Turn deliveries left `pending` by a crashed run into `unknown`, and return them."""
        with self.engine.begin() as conn:
            stuck = self._deliveries(conn, deliveries.c.status == "pending")
            if stuck:
                conn.execute(
                    update(deliveries).where(deliveries.c.status == "pending")
                    .values(status="unknown", reply="run interrupted between send and record", updated_at=to_db(now))
                )
        return stuck

    def deliveries_for(self, subscriber_id: str) -> list[DeliveryRecord]:
        with self.engine.connect() as conn:
            return self._deliveries(conn, digests.c.subscriber_id == subscriber_id)

    def _deliveries(self, conn: Connection, condition: object) -> list[DeliveryRecord]:
        rows = conn.execute(
            select(deliveries.c.digest_id, digests.c.subscriber_id, deliveries.c.recipient, deliveries.c.message_id,
                   deliveries.c.status, deliveries.c.attempts, deliveries.c.reply)
            .join(digests, digests.c.id == deliveries.c.digest_id)
            .where(condition)  # type: ignore[arg-type]
            .order_by(deliveries.c.id)
        )
        return [DeliveryRecord(*row) for row in rows]


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (preview, papers) don't block a running digest
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
