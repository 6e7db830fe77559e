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
    event,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DatabaseError, OperationalError

from ..errors import StoreBusy, StoreError

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
    # The exact bytes to send (added by _add_delivery_queue): a resend after a crash is the same message.
    Column("message", LargeBinary, nullable=True),
    Column("next_attempt_at", DateTime, nullable=True),  # when a deferred delivery is due again
    # The worker sending it and until when its claim holds (added by _add_delivery_claims): another
    # worker takes a delivery only once its lease has run out, so a live worker's send is never doubled.
    Column("claimed_by", String(128), nullable=True),
    Column("lease_until", DateTime, nullable=True),
)
DELIVERY_STATUS = Index("ix_deliveries_status", deliveries.c.status)
DELIVERY_CLAIM = Index("ix_deliveries_claimed_by", deliveries.c.claimed_by)

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


# The one shared send pace of every worker on this database (store/pace.py): the earliest moment, in
# seconds since the epoch, the next message may go out. One row, made here so no two workers race to make it.
send_pace = Table(
    "send_pace", later_metadata,
    Column("name", String(32), primary_key=True),
    Column("next_at", Float, nullable=False),
)
PACE_ROW = "smtp"


def _add_delivery_claims(conn: Connection) -> None:
    """Several workers share the queue: a delivery is claimed by one worker (`claimed_by`) until
    `lease_until`; an expired lease is anyone's. Plus the shared send pace."""
    existing = {column["name"] for column in inspect(conn).get_columns(deliveries.name)}
    for column in ("claimed_by", "lease_until"):
        if column not in existing:
            kind = deliveries.c[column].type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {deliveries.name} ADD COLUMN {column} {kind}")
    DELIVERY_CLAIM.create(conn, checkfirst=True)
    send_pace.create(conn, checkfirst=True)
    if conn.execute(select(send_pace.c.name).where(send_pace.c.name == PACE_ROW)).first() is None:
        conn.execute(insert(send_pace).values(name=PACE_ROW, next_at=0.0))


# MIGRATIONS[n] upgrades a version-n database to n+1; version 0 is an empty file.
MIGRATIONS: list[Callable[[Connection], None]] = [_create_v1, _add_votes, _add_source_state, _add_delivery_queue,
                                                  _add_paper_vectors, _add_delivery_claims]
SCHEMA_VERSION = len(MIGRATIONS)

# How long a write waits for another process's write transaction before giving up.
BUSY_TIMEOUT_MS = 30_000


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
        _create_private_file(path)
        self.engine: Engine = create_engine(f"sqlite:///{path}")
        event.listen(self.engine, "connect", self._on_connect)
        event.listen(self.engine, "begin", _sqlite_begin)
        self._migrate()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction that takes SQLite's write lock at BEGIN, so it never fails half-way
        on a lock upgrade; waits up to BUSY_TIMEOUT_MS for another writer, then raises StoreBusy."""
        with self.guard(), self.engine.connect() as conn:
            conn.execution_options(newsletter_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.guard(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Turn the driver's lock and corruption errors into StoreError with a next step."""
        try:
            yield
        except OperationalError as exc:
            if _is_busy(exc):
                raise StoreBusy(
                    f"{self.label}: the database is busy: another newsletter command kept it locked for "
                    f"{self.busy_timeout_ms / 1000:g} s; wait for it to finish and run this again"
                ) from None
            raise StoreError(f"{self.label}: cannot use the database ({exc.orig})") from None
        except DatabaseError as exc:
            raise StoreError(f"{self.label}: cannot use the database ({exc.orig})") from None

    def _on_connect(self, dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # We issue BEGIN ourselves (see _sqlite_begin); the driver must not.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")  # before WAL: switching may wait
        cursor.execute("PRAGMA foreign_keys=ON")
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
        # Inside one write transaction: two processes opening a brand-new file at once
        # take turns, and the second finds the tables the first created.
        with self.write() as conn:
            version = _schema_version(conn)
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.label}: database schema version {version} is newer than this release "
                    f"understands ({SCHEMA_VERSION}); upgrade newsletter or point `store` at another database"
                )
            for step in MIGRATIONS[version:]:
                step(conn)
            if version < SCHEMA_VERSION:
                set_meta(conn, "schema_version", str(SCHEMA_VERSION))


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


def _is_busy(exc: OperationalError) -> bool:
    return "locked" in str(exc.orig) or "busy" in str(exc.orig)
