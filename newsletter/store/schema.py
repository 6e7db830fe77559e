"""The database schema, its migrations, and opening a database from a URL (SQLite today).

Timestamps are stored as naive UTC and returned timezone-aware. The schema
carries a version in `meta`; MIGRATIONS upgrades an older database in place
inside one write transaction, and a database from a newer release is refused.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DatabaseError

from ..errors import StoreBusy, StoreError
from ..titles import filed_probes

log = logging.getLogger(__name__)

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
    # The subscriber's local date this digest is for, and its due instant (added by _add_delivery_queue;
    # NULL for digests from before schedules, which the unique key below ignores).
    Column("slot_date", Date, nullable=True),
    Column("slot_at", DateTime, nullable=True),
)
# One digest per subscriber per slot, enforced here rather than by any process's memory:
# a hand-run digest, a restart or a second process cannot double a slot.
DIGEST_SLOT = Index("ux_digests_subscriber_slot", digests.c.subscriber_id, digests.c.slot_date, unique=True)

digest_papers = Table(
    "digest_papers", metadata,
    Column("digest_id", Integer, ForeignKey("digests.id"), primary_key=True),
    Column("paper_id", Integer, ForeignKey("papers.id"), primary_key=True),
    Column("rank", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("reason", Text, nullable=False),  # JSON {"topics": [...], "liked": [...], "terms": [...]}
)

# One row per digest that was handed to a mailer; ledger.py owns every change of `status`.
deliveries = Table(
    "deliveries", metadata,
    Column("id", Integer, primary_key=True),
    Column("digest_id", Integer, ForeignKey("digests.id"), nullable=False, unique=True),
    Column("recipient", Text, nullable=False),
    Column("message_id", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("reply", Text, nullable=False, default=""),
    Column("updated_at", DateTime, nullable=False),
    # Unused since _split_message_bodies moved the bytes to `messages` (always NULL now).
    Column("message", LargeBinary, nullable=True),
    Column("next_attempt_at", DateTime, nullable=True),  # when a deferred delivery is due again
)
DELIVERY_STATUS = Index("ix_deliveries_status", deliveries.c.status)

# Hard failures in a row per subscriber; `bounced_at` set means suppressed until someone resets it.
subscriber_health = Table(
    "subscriber_health", metadata,
    Column("subscriber_id", String, primary_key=True),
    Column("hard_failures", Integer, nullable=False, default=0),
    Column("bounced_at", DateTime, nullable=True),
    Column("last_reply", Text, nullable=False, default=""),
    Column("updated_at", DateTime, nullable=False),
)

# One row per digest run or ingest, for `newsletter status`.
runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),  # "digest" or "ingest"
    Column("started_at", DateTime, nullable=False, index=True),
    Column("finished_at", DateTime, nullable=True),
    Column("ok", Boolean, nullable=True),  # NULL while running, or when the process died
    Column("summary", Text, nullable=False, default=""),
)

# Tables added by later migrations live in their own MetaData, so `_create_v1` (create_all) never makes them
# and each migration creates exactly its own table.
later_metadata = MetaData()

# Added by _add_paper_vectors: one vector per paper and model, computed once (rank/embeddings.py).
paper_vectors = Table(
    "paper_vectors", later_metadata,
    Column("paper_id", Integer, nullable=False, primary_key=True),  # papers.id; papers are never deleted
    Column("model_id", String, nullable=False, primary_key=True),
    Column("vector", LargeBinary, nullable=False),  # little-endian float32
)


def _create_v1(conn: Connection) -> None:
    metadata.create_all(conn)



# "More / less like this" from a subscriber about one paper: one row per (subscriber, paper),
# a second vote replaces the first (votes.py).
votes = Table(
    "votes", later_metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber_id", String, nullable=False),
    Column("paper_id", Integer, ForeignKey(papers.c.id), nullable=False),
    Column("direction", String(8), nullable=False),  # "more" or "less"
    Column("voted_at", DateTime, nullable=False),
    UniqueConstraint("subscriber_id", "paper_id"),
)


def _add_votes(conn: Connection) -> None:
    votes.create(conn, checkfirst=True)


# One row per fetched URL: what the conditional request sends next time, and how the last fetches went.
source_state = Table(
    "source_state", later_metadata,
    Column("url", Text, primary_key=True),  # as written in config.yaml
    Column("final_url", Text, nullable=False, default=""),  # after redirects
    Column("etag", Text, nullable=True),
    Column("last_modified", Text, nullable=True),
    Column("sha256", String(64), nullable=True),  # of the last body received
    Column("last_fetch_at", DateTime, nullable=True),
    Column("last_success_at", DateTime, nullable=True),
    Column("last_outcome", String(32), nullable=False, default=""),
    Column("last_error", Text, nullable=False, default=""),  # why the last fetch failed; "" after a good one
    Column("body_error", Text, nullable=False, default=""),  # why the body we hold was quarantined
    Column("failures", Integer, nullable=False, default=0),  # consecutive failed fetches
    Column("next_try_at", DateTime, nullable=True),
)


def _add_source_state(conn: Connection) -> None:
    source_state.create(conn, checkfirst=True)



def _add_delivery_queue(conn: Connection) -> None:
    """The ledger becomes a queue: slots on digests, stored messages and retry times on deliveries,
    bounce counts and a run log. Idempotent, because _create_v1 builds today's tables whole on a new file.

    Deliveries an older release left `pending` or `unknown` count as sent: that release never
    resent them, and their bytes were not kept, so they cannot be sent again now.
    """
    for table, column in ((digests, "slot_date"), (digests, "slot_at"), (deliveries, "message"),
                          (deliveries, "next_attempt_at")):
        existing = {row[1] for row in conn.exec_driver_sql(f"PRAGMA table_info({table.name})")}
        if column not in existing:
            kind = table.c[column].type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column} {kind}")
    DIGEST_SLOT.create(conn, checkfirst=True)
    DELIVERY_STATUS.create(conn, checkfirst=True)
    metadata.create_all(conn, tables=[subscriber_health, runs])
    conn.execute(update(deliveries).where(deliveries.c.status.in_(("pending", "unknown"))).values(status="sent"))


def _add_paper_vectors(conn: Connection) -> None:
    paper_vectors.create(conn, checkfirst=True)


# Added by _add_title_pieces: the typo index of stored title keys (titles.filed_probes), so an ingest looks
# up only its own page's pieces instead of loading every stored title. Kept in step with `papers` by the
# transaction that inserts a paper.
title_pieces = Table(
    "title_pieces", later_metadata,
    Column("probe", BigInteger, primary_key=True),
    Column("paper_id", Integer, primary_key=True),  # papers.id
    sqlite_with_rowid=False,  # the primary key is the table: one B-tree, looked up by probe
)


def _add_title_pieces(conn: Connection) -> None:
    """Create the typo index and file every stored paper in it (about 2 s per 100,000 papers, once).

    Refiles from scratch when the table exists: like the other steps, this one may run on a file whose
    tables are newer than its recorded version (a new file gets today's tables from _create_v1).
    """
    title_pieces.create(conn, checkfirst=True)
    conn.execute(delete(title_pieces))
    stored = conn.execute(select(papers.c.title_key, papers.c.id)).all()
    for start in range(0, len(stored), 10_000):
        insert_rows(conn, title_pieces, [(probe, paper_id) for key, paper_id in stored[start : start + 10_000]
                                         for probe in filed_probes(key)])


def insert_rows(conn: Connection, table: Table, rows: list[tuple[object, ...]]) -> None:
    """Insert many rows given as tuples in the table's column order.

    On SQLite straight through the driver's executemany: for thousands of small rows
    SQLAlchemy's per-row parameter handling costs several times the insert itself.
    """
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        columns = ", ".join(column.name for column in table.columns)
        marks = ", ".join("?" for _ in table.columns)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(f"INSERT INTO {table.name} ({columns}) VALUES ({marks})", rows)
        finally:
            cursor.close()
        return
    names = [column.name for column in table.columns]
    conn.execute(insert(table), [dict(zip(names, row, strict=True)) for row in rows])


# The exact bytes to send for a delivery: a resend after a crash is the same message. A table of their
# own, because SQLite rewrites a whole row (its 30-60 KB message included) on every status change,
# and a delivery changes status twice per send.
messages = Table(
    "messages", later_metadata,
    Column("delivery_id", Integer, ForeignKey(deliveries.c.id), primary_key=True),
    Column("message", LargeBinary, nullable=False),
)


def _split_message_bodies(conn: Connection) -> None:
    messages.create(conn, checkfirst=True)
    conn.execute(insert(messages).from_select(["delivery_id", "message"], select(deliveries.c.id, deliveries.c.message)
                                              .where(deliveries.c.message.is_not(None))))
    conn.execute(update(deliveries).where(deliveries.c.message.is_not(None)).values(message=None))


# MIGRATIONS[n] upgrades a version-n database to n+1; version 0 is an empty file.
MIGRATIONS: list[Callable[[Connection], None]] = [_create_v1, _add_votes, _add_source_state, _add_delivery_queue,
                                                  _add_paper_vectors, _add_title_pieces,
                                                  _split_message_bodies]
SCHEMA_VERSION = len(MIGRATIONS)

# How much of the database file SQLite maps into memory (address space, not resident memory).
MMAP_BYTES = 256 * 1024 * 1024

# How long a write waits for another process's write transaction before giving up.
BUSY_TIMEOUT_MS = 30_000
# A lazily synced commit (see Database.write) waits for the disk when none has for this long.
LAZY_SYNC_SECONDS = 1.0


def to_db(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).replace(tzinfo=None)


def from_db(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC)


class Database:
    """An engine plus the one way to write: `with db.write() as conn:` (a short, immediate transaction)."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = path
        self.label = str(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._synced_at = float("-inf")  # when a commit last waited for the disk (see write)
        _create_private_file(path)
        self.engine: Engine = create_engine(f"sqlite:///{path}")
        event.listen(self.engine, "connect", self._on_connect)
        event.listen(self.engine, "begin", _sqlite_begin)
        self._migrate()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def write(self, *, lazy_sync: bool = False) -> Iterator[Connection]:
        """A write transaction that takes SQLite's write lock at BEGIN, so it never fails half-way
        on a lock upgrade; waits up to BUSY_TIMEOUT_MS for another writer, then raises StoreBusy.

        Every commit survives the process being killed. A `lazy_sync` commit skips the fsync when
        another commit synced less than LAZY_SYNC_SECONDS ago (SQLite's synchronous=NORMAL under
        WAL: the next synced commit writes it to disk too), so after a power cut or an OS crash
        at most that much of such commits can be lost. The per-message delivery records use it:
        an fsync per message cost more than sending the message.
        """
        lazy = lazy_sync and time.monotonic() - self._synced_at < LAZY_SYNC_SECONDS
        with self.guard(), self.engine.connect() as conn:
            conn.execution_options(newsletter_write=True)
            # On the driver's connection, outside any transaction: SQLite refuses the change inside one.
            driver = conn.connection.driver_connection
            if lazy and driver is not None:
                driver.execute("PRAGMA synchronous=NORMAL")
            try:
                with conn.begin():
                    yield conn
            finally:
                if lazy and driver is not None:
                    driver.execute("PRAGMA synchronous=FULL")
        if not lazy:
            self._synced_at = time.monotonic()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.guard(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Turn the driver's lock and corruption errors into StoreError with a next step."""
        try:
            yield
        except (DatabaseError, sqlite3.DatabaseError) as exc:
            # SQLAlchemy wraps the driver's error; statements run on the driver's cursor (bulk paths) raise it bare.
            reason = exc.orig if isinstance(exc, DatabaseError) else exc
            if isinstance(reason, sqlite3.OperationalError) and _is_busy(reason):
                raise StoreBusy(
                    f"{self.label}: the database is busy: another newsletter command kept it locked for "
                    f"{self.busy_timeout_ms / 1000:g} s; wait for it to finish and run this again"
                ) from None
            raise StoreError(f"{self.label}: cannot use the database ({reason})") from None

    def _on_connect(self, dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # We issue BEGIN ourselves (see _sqlite_begin); the driver must not.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")  # before WAL: switching may wait
        cursor.execute("PRAGMA foreign_keys=ON")
        # Read the file through a memory map: an ingest's thousands of index look-ups in a fresh process
        # cost about half as much as through read() calls.
        cursor.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        cursor.execute("PRAGMA synchronous=FULL")  # every commit waits for the disk unless it asks not to
        self._switch_to_wal(cursor)
        cursor.close()

    def _switch_to_wal(self, cursor: sqlite3.Cursor) -> None:
        """WAL, so readers (preview, papers) don't block a running digest.

        Switching a brand-new file needs a moment alone with it, and SQLite answers
        "locked" at once, without its busy handler, while another process does the
        same; so we retry until the busy timeout.
        """
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        while True:
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def schema_version(self) -> int:
        with self.read() as conn:
            return _schema_version(conn)

    def _migrate(self) -> None:
        # An up-to-date database (every open but the first) is only read: a write transaction would queue
        # behind a running ingest or digest for nothing.
        with self.read() as conn:
            current = _schema_version(conn)
        self._check_version(current)
        if current == SCHEMA_VERSION:
            return
        # Inside one write transaction: two processes opening a brand-new file at once
        # take turns, and the second finds the tables the first created.
        with self.write() as conn:
            version = _schema_version(conn)
            self._check_version(version)
            for step in MIGRATIONS[version:]:
                step(conn)
            if version < SCHEMA_VERSION:
                set_meta(conn, "schema_version", str(SCHEMA_VERSION))

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.label}: database schema version {version} is newer than this release "
                f"understands ({SCHEMA_VERSION}); upgrade newsletter or point `store` at another database"
            )


def _schema_version(conn: Connection) -> int:
    if not conn.dialect.has_table(conn, "meta"):
        return 0
    value = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
    return int(value) if value is not None else 0


def set_meta(conn: Connection, key: str, value: str) -> None:
    if conn.execute(select(meta.c.key).where(meta.c.key == key)).first():
        conn.execute(update(meta).where(meta.c.key == key).values(value=value))
    else:
        conn.execute(insert(meta).values(key=key, value=value))


def _create_private_file(path: Path) -> None:
    """Create the database file readable by its owner only: it holds addresses and the signing key."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
        mode = path.stat().st_mode
    except OSError as exc:
        raise StoreError(f"{path}: cannot create or open the database file ({exc.strerror}); "
                         "check the `store` setting in config.yaml and the folder's permissions") from None
    if mode & stat.S_IROTH and path.stat().st_uid == os.getuid():
        # A file from an older release, created world-readable: close it now.
        os.chmod(path, stat.S_IMODE(mode) & ~(stat.S_IROTH | stat.S_IWOTH))
        log.warning("%s was readable by every user; removed that permission", path)


def _sqlite_begin(conn: Connection) -> None:
    # IMMEDIATE takes the write lock at once (waiting busy_timeout for it); a deferred
    # transaction that later writes can fail at once with "database is locked".
    immediate = conn.get_execution_options().get("newsletter_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _is_busy(reason: BaseException) -> bool:
    return "locked" in str(reason) or "busy" in str(reason)
