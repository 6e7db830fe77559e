"""The database schema as it is now, timestamps, and `Database`: one engine and the one way to write.

The tables below describe the current schema for queries; the schema itself is made and
upgraded by the Alembic revisions in store/migrations (run by store/migrate.py). Timestamps are
handed to the database as naive UTC (`to_db`) and come back timezone-aware (`from_db`); on
PostgreSQL they are `timestamptz` and every session runs in UTC. What differs between SQLite and
PostgreSQL (connecting, taking the write lock, errors) lives in store/backends.py.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
    Update,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DatabaseError
from sqlalchemy.pool import PoolProxiedConnection

from ..errors import StoreBusy, StoreError
from .backends import BUSY_TIMEOUT_MS, Backend, backend_for, begin_immediate

metadata = MetaData()


# A lazily synced commit (see Database.write) waits for the disk when none has for this long.
LAZY_SYNC_SECONDS = 1.0


def _utc(name: str, *, nullable: bool = False, index: bool = False) -> Column[datetime]:
    return Column(name, DateTime(timezone=True), nullable=nullable, index=index)


meta = Table("meta", metadata, Column("key", String, primary_key=True), Column("value", Text, nullable=False))

# Named counters updated inside the transaction that uses them; the row lock orders their users.
counters = Table("counters", metadata, Column("name", String, primary_key=True),
                 Column("value", Integer, nullable=False))
INGEST_BATCH = "ingest_batch"

pages = Table(
    "pages", metadata,
    Column("id", Integer, primary_key=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("page_date", Date, nullable=False),
    _utc("ingested_at"),
    Column("paper_count", Integer, nullable=False),
)

papers = Table(
    "papers", metadata,
    Column("id", Integer, primary_key=True),
    Column("title", Text, nullable=False),
    # Unique by what ingest does (it matches every key first, under the write lock), not by an index: a
    # unique index on ~60-character text keys cost an ingest ~750 dirty pages. Looked up by title_pieces.
    Column("title_key", Text, nullable=False),
    Column("abstract", Text, nullable=False),
    Column("links", Text, nullable=False, default="[]"),  # JSON list of [url, kind]
    _utc("first_seen", index=True),
    # The ingest that stored it (counters.ingest_batch): batches commit in order on every database,
    # which paper ids do not on PostgreSQL (a sequence value is taken at insert, not at commit).
    Column("ingest_batch", Integer, nullable=False, index=True),
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
    _utc("issued_at"),
    _utc("window_start"),
    _utc("window_end"),
    # The newest ingest batch committed when the digest was planned: the next window starts after it,
    # so a paper committed while a digest was being planned is never missed, whatever the clocks say.
    Column("through_batch", Integer, nullable=False),
    Column("candidate_count", Integer, nullable=False),
    Column("paper_count", Integer, nullable=False),
    # The subscriber's local date this digest is for, and its due instant (NULL for digests from
    # before schedules, which the unique key below ignores).
    Column("slot_date", Date, nullable=True),
    _utc("slot_at", nullable=True),
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
    _utc("updated_at"),
    # Unused since revision 0008 moved the bytes to `messages` (always NULL now).
    Column("message", LargeBinary, nullable=True),
    _utc("next_attempt_at", nullable=True),  # when a deferred delivery is due again
    # The worker sending it and until when its claim holds (revision 0010): another worker takes
    # a delivery only once its lease has run out, so a live worker's send is never doubled.
    Column("claimed_by", String(128), nullable=True),
    _utc("lease_until", nullable=True),
)
DELIVERY_STATUS = Index("ix_deliveries_status", deliveries.c.status)
DELIVERY_CLAIM = Index("ix_deliveries_claimed_by", deliveries.c.claimed_by)

# The exact bytes to send for a delivery: a resend after a crash is the same message. A table of their
# own, because SQLite rewrites a whole row (its 30-60 KB message included) on every status change,
# and a delivery changes status twice per send.
messages = Table(
    "messages", metadata,
    Column("delivery_id", Integer, ForeignKey(deliveries.c.id), primary_key=True),
    Column("message", LargeBinary, nullable=False),
)

# Hard failures in a row per subscriber; `bounced_at` set means suppressed until someone resets it.
subscriber_health = Table(
    "subscriber_health", metadata,
    Column("subscriber_id", String, primary_key=True),
    Column("hard_failures", Integer, nullable=False, default=0),
    _utc("bounced_at", nullable=True),
    Column("last_reply", Text, nullable=False, default=""),
    _utc("updated_at"),
)

# One row per digest run or ingest, for `newsletter status`.
runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),  # "digest" or "ingest"
    _utc("started_at", index=True),
    _utc("finished_at", nullable=True),
    Column("ok", Boolean, nullable=True),  # NULL while running, or when the process died
    Column("summary", Text, nullable=False, default=""),
)

# One vector per paper and model, computed once (rank/embeddings.py).
paper_vectors = Table(
    "paper_vectors", metadata,
    Column("paper_id", Integer, nullable=False, primary_key=True),  # papers.id; papers are never deleted
    Column("model_id", String, nullable=False, primary_key=True),
    Column("vector", LargeBinary, nullable=False),  # little-endian float32
)

# One vector per phrase a ranker embeds (typed topics, bare liked titles) and model: a run for 10,000
# subscribers would otherwise embed every one of their phrases again (minutes of CPU), every run.
phrase_vectors = Table(
    "phrase_vectors", metadata,
    Column("model_id", String, nullable=False, primary_key=True),
    Column("phrase", Text, nullable=False, primary_key=True),
    Column("vector", LargeBinary, nullable=False),  # little-endian float32
)

# "More / less like this" from a subscriber about one paper: one row per (subscriber, paper),
# a second vote replaces the first (votes.py).
votes = Table(
    "votes", metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber_id", String, nullable=False),
    Column("paper_id", Integer, ForeignKey(papers.c.id), nullable=False),
    Column("direction", String(8), nullable=False),  # "more" or "less"
    _utc("voted_at"),
    UniqueConstraint("subscriber_id", "paper_id"),
)

# One row per fetched URL: what the conditional request sends next time, and how the last fetches went.
source_state = Table(
    "source_state", metadata,
    Column("url", Text, primary_key=True),  # as written in config.yaml
    Column("final_url", Text, nullable=False, default=""),  # after redirects
    Column("etag", Text, nullable=True),
    Column("last_modified", Text, nullable=True),
    Column("sha256", String(64), nullable=True),  # of the last body received
    _utc("last_fetch_at", nullable=True),
    _utc("last_success_at", nullable=True),
    Column("last_outcome", String(32), nullable=False, default=""),
    Column("last_error", Text, nullable=False, default=""),  # why the last fetch failed; "" after a good one
    Column("body_error", Text, nullable=False, default=""),  # why the body we hold was quarantined
    Column("failures", Integer, nullable=False, default=0),  # consecutive failed fetches
    _utc("next_try_at", nullable=True),
)

# The index of stored title keys (titles.store_probes: the whole key and its typo pieces), so an ingest
# looks up only its own page's probes instead of loading every stored title. Kept in step with `papers`
# by the transaction that inserts a paper.
title_pieces = Table(
    "title_pieces", metadata,
    Column("probe", BigInteger, primary_key=True),
    Column("paper_id", Integer, primary_key=True),  # papers.id
    sqlite_with_rowid=False,  # the primary key is the table: one B-tree, looked up by probe
)

# The newest papers' probes, moved into title_pieces in bulk (store/papers.py: merge_recent_pieces).
# Probes are random numbers: an ingest's thousands of rows would dirty most leaves of the big table, but
# only the few of this small one; a lookup asks both tables.
recent_title_pieces = Table(
    "recent_title_pieces", metadata,
    Column("probe", BigInteger, primary_key=True),
    Column("paper_id", Integer, primary_key=True),  # papers.id
    sqlite_with_rowid=False,
)

# The one shared send pace of every worker on this database (store/pace.py): the earliest moment, in
# seconds since the epoch, the next message may go out. One row, made by revision 0010 so no two
# workers race to make it.
send_pace = Table(
    "send_pace", metadata,
    Column("name", String(32), primary_key=True),
    Column("next_at", Float, nullable=False),
)
PACE_ROW = "smtp"

# Parents before children: the order `db copy` fills a new database in.
TABLES_IN_ORDER = (meta, counters, pages, papers, title_pieces, recent_title_pieces, sightings, digests, digest_papers,
                   deliveries, messages, subscriber_health, runs, paper_vectors, phrase_vectors, votes, source_state,
                   send_pace)


def to_db(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).replace(tzinfo=None)


def from_db(moment: datetime) -> datetime:
    # SQLite gives back the naive UTC it was given; PostgreSQL an aware time in the session's UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Database:
    """An engine plus the one way to write: `with db.write() as conn:` (a short transaction that holds
    the database's write lock from its start, so check-then-insert steps never interleave)."""

    def __init__(self, target: Path | str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS, migrate: bool = True) -> None:
        self.backend: Backend = backend_for(target, busy_timeout_ms)
        self.label = self.backend.label
        self.path = self.backend.path  # the SQLite file; None for a server database
        self.busy_timeout_ms = busy_timeout_ms
        self._synced_at = float("-inf")  # when a commit last waited for the disk (see write)
        # driver_write's connections, kept apart from the pool (see there): as many as have been in use at once.
        self._lazy_idle: list[PoolProxiedConnection] = []
        self._lazy_all: list[PoolProxiedConnection] = []
        self._lazy_lock = threading.Lock()
        with self.guard():
            self.engine: Engine = self.backend.create_engine()
        if migrate:
            from .migrate import open_schema  # migrate imports this module's tables

            open_schema(self)

    def close(self) -> None:
        with self._lazy_lock:
            lazy, self._lazy_all, self._lazy_idle = self._lazy_all, [], []
        for pooled in lazy:
            with suppress(Exception):
                pooled.invalidate()  # closed, never handed to write(): it commits without waiting for the disk
        self.engine.dispose()

    @contextmanager
    def write(self, *, lazy_sync: bool = False, sync_after_unlock: bool = False,
              foreign_keys: bool = True) -> Iterator[Connection]:
        """A write transaction holding the write lock from its start; waits up to busy_timeout_ms for
        another writer, then raises StoreBusy.

        Every commit survives the process being killed. A `lazy_sync` commit skips waiting for the
        disk when another commit did less than LAZY_SYNC_SECONDS ago (SQLite's synchronous=NORMAL
        under WAL, PostgreSQL's synchronous_commit=off: the next synced commit makes it durable too),
        so after a power cut or an OS crash at most that much of such commits can be lost. The
        per-message delivery records use it: an fsync per message cost more than sending the message.

        A `sync_after_unlock` commit is as durable as any other once this returns, but waits for the
        disk after letting go of the write lock (SQLite: the commit skips its fsync and the log file is
        synced then), so other writers go on meanwhile: a batch of digests is megabytes, and the sender
        needs the lock for every message.

        `foreign_keys=False` is for schema upgrades only: SQLite rebuilds a table by copying it, dropping
        the old one and renaming the copy, which it allows only with its foreign key checks off.
        """
        lazy = sync_after_unlock or (lazy_sync and time.monotonic() - self._synced_at < LAZY_SYNC_SECONDS)
        with self.guard(), self.engine.connect() as conn:
            conn.execution_options(newsletter_write=True)
            with (self.backend.sync_lazily(conn) if lazy else nullcontext(),
                  nullcontext() if foreign_keys else self.backend.foreign_keys_off(conn)):
                with conn.begin():
                    self.backend.take_write_lock(conn)
                    yield conn
        if sync_after_unlock:
            with self.guard():
                self.backend.sync_committed()
        if not lazy or sync_after_unlock:
            self._synced_at = time.monotonic()

    @property
    def has_driver_writes(self) -> bool:
        """Whether `driver_write` is there (SQLite)."""
        return self.path is not None

    @contextmanager
    def driver_write(self, *, lazy_sync: bool = False) -> Iterator[DriverWrite]:
        """`write` for Prebuilt statements only, on SQLite (see has_driver_writes): the transaction runs
        straight on a driver connection kept for these transactions alone, without SQLAlchemy's connection,
        transaction and event objects or the pool, which cost several times what SQLite does for the
        one-row transaction the sender makes per message. The same write lock from the start (waited for in
        shorter steps than SQLite's own: begin_immediate), the same
        durability: those connections commit without waiting for the disk (synchronous=NORMAL, set once),
        and a commit that must not be lazy syncs the log once the lock is let go. An exception rolls back."""
        if not self.has_driver_writes:
            raise TypeError(f"{self.label}: driver_write is for SQLite")
        lazy = lazy_sync and time.monotonic() - self._synced_at < LAZY_SYNC_SECONDS
        with self.guard():
            pooled = self._take_lazy_connection()
            driver = pooled.driver_connection
            assert isinstance(driver, sqlite3.Connection)
            try:
                begin_immediate(driver, self.busy_timeout_ms)
                try:
                    yield DriverWrite(driver, self.engine.dialect)
                except BaseException:
                    driver.execute("ROLLBACK")
                    raise
                driver.execute("COMMIT")
            except BaseException:
                self._drop_lazy_connection(pooled)  # whatever state it was left in, the next one starts afresh
                raise
            with self._lazy_lock:
                self._lazy_idle.append(pooled)
            if not lazy:
                self.backend.sync_committed()
        if not lazy:
            self._synced_at = time.monotonic()

    def _take_lazy_connection(self) -> PoolProxiedConnection:
        with self._lazy_lock:
            if self._lazy_idle:
                return self._lazy_idle.pop()
        pooled = self.engine.raw_connection()  # our connect-time PRAGMAs applied, like every connection
        driver = pooled.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        driver.execute("PRAGMA synchronous=NORMAL")  # outside any transaction; see driver_write for the sync
        driver.execute("PRAGMA busy_timeout=0")  # begin_immediate waits for the write lock, in shorter steps
        with self._lazy_lock:
            self._lazy_all.append(pooled)
        return pooled

    def _drop_lazy_connection(self, pooled: PoolProxiedConnection) -> None:
        with self._lazy_lock:
            if pooled in self._lazy_all:
                self._lazy_all.remove(pooled)
        with suppress(Exception):
            pooled.invalidate()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.guard(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Turn the driver's lock, connection and corruption errors into StoreError with a next step."""
        try:
            yield
        except (DatabaseError, sqlite3.DatabaseError) as exc:
            # SQLAlchemy wraps the driver's error; statements run on the driver's cursor (bulk paths) raise it bare.
            reason = exc.orig if isinstance(exc, DatabaseError) else exc
            if self.backend.is_busy(reason):
                raise StoreBusy(
                    f"{self.label}: the database is busy: another newsletter command kept it locked for "
                    f"{self.busy_timeout_ms / 1000:g} s; wait for it to finish and run this again"
                ) from None
            raise StoreError(f"{self.label}: cannot use the database ({_first_line(reason)})") from None

    def schema_version(self) -> int:
        with self.read() as conn:
            return schema_version(conn)


def schema_version(conn: Connection) -> int:
    """The version written in `meta` (what releases before Alembic read to refuse a newer file)."""
    if not conn.dialect.has_table(conn, "meta"):
        return 0
    value = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
    return int(value) if value is not None else 0


def set_meta(conn: Connection, key: str, value: str) -> None:
    if conn.execute(select(meta.c.key).where(meta.c.key == key)).first():
        conn.execute(update(meta).where(meta.c.key == key).values(value=value))
    else:
        conn.execute(insert(meta).values(key=key, value=value))


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
    values = [dict(zip(names, row, strict=True)) for row in rows]
    for key in table.primary_key.columns:
        # A None id means "the database picks it" (SQLite's driver does so by itself); PostgreSQL needs it left out.
        if all(row[key.name] is None for row in values):
            for row in values:
                del row[key.name]
    conn.execute(insert(table), values)


def insert_with_ids(conn: Connection, table: Table, rows: list[dict[str, object]]) -> list[int]:
    """Insert rows (dicts of column values, without the id; all with the same keys) and return their new ids,
    in order. Only inside a write transaction (Database.write), which holds the write lock from its start.

    On SQLite the ids are the ones SQLite would pick (the largest so far, plus one, on), given explicitly, and
    the rows go through the driver's executemany with the columns' own conversions: SQLAlchemy's RETURNING
    path cost about a millisecond a batch of digests, and the sender waits for the write lock throughout.
    Elsewhere, RETURNING.
    """
    if not rows:
        return []
    if conn.dialect.name != "sqlite":
        return [int(row[0]) for row in conn.execute(
            insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)]
    names = list(rows[0])
    if any(row.keys() != rows[0].keys() for row in rows):
        raise ValueError(f"insert_with_ids: the rows for {table.name} do not all have the same columns")
    # Columns left out take their Python-side default, as SQLAlchemy's insert gives them.
    defaults = {c.name: c.default.arg for c in table.columns  # type: ignore[attr-defined]
                if c.name not in rows[0] and c.name != "id" and c.default is not None and c.default.is_scalar}
    converts = [_sqlite_conversion(table.c[name], conn.dialect) for name in [*names, *defaults]]
    columns = ", ".join(["id", *names, *defaults])
    marks = ", ".join("?" * (1 + len(names) + len(defaults)))
    driver = conn.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    first = int(driver.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table.name}").fetchone()[0])
    driver.executemany(f"INSERT INTO {table.name} ({columns}) VALUES ({marks})",
                       [(ident, *(convert(value) if convert and value is not None else value
                                  for value, convert in zip([*row.values(), *defaults.values()], converts,
                                                            strict=True)))
                        for ident, row in enumerate(rows, start=first)])
    return list(range(first, first + len(rows)))


_SQLITE_CONVERSIONS: dict[tuple[str, str], Callable[[Any], Any] | None] = {}


def _sqlite_conversion(column: Column[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    # SQLite's own type for the column (its DATETIME and DATE write text), as Prebuilt does; looked up once.
    key = (column.table.name, column.name)
    if key not in _SQLITE_CONVERSIONS:
        _SQLITE_CONVERSIONS[key] = column.type.dialect_impl(dialect).bind_processor(dialect)
    return _SQLITE_CONVERSIONS[key]


@dataclass(frozen=True, slots=True)
class DriverWrite:
    """A transaction open on a SQLite driver connection (Database.driver_write), for Prebuilt.run."""

    driver: sqlite3.Connection
    dialect: Dialect


class Prebuilt:
    """A statement built once and run for every message sent (the ledger's hot path).

    On SQLite its SQL is compiled once and run straight on the driver's cursor, as insert_rows
    does: for these one-row statements SQLAlchemy's per-execute work (parameters, events, result
    objects) cost several times what SQLite itself does. Elsewhere it runs through SQLAlchemy,
    where a round trip to the server dwarfs that work anyway. Constants and bound values pass
    through the column types' own conversions, so SQLite stores what SQLAlchemy would have.
    """

    def __init__(self, statement: Update) -> None:
        self.statement = statement
        self._sqlite: _DriverSql | None = None

    def run(self, conn: Connection | DriverWrite, params: Mapping[str, object]) -> tuple[int, list[tuple[Any, ...]]]:
        """Execute with `params` inside the caller's transaction: (rows changed, rows returned)."""
        if isinstance(conn, DriverWrite):
            return self._run_on_driver(conn.driver, conn.dialect, params)
        if conn.dialect.name != "sqlite":
            result = conn.execute(self.statement, dict(params))
            rows = [tuple(row) for row in result] if result.returns_rows else []
            return int(result.rowcount or 0), rows
        return self._run_on_driver(conn.connection.driver_connection, conn.dialect, params)  # type: ignore[arg-type]

    def _run_on_driver(self, driver: sqlite3.Connection, dialect: Dialect,
                       params: Mapping[str, object]) -> tuple[int, list[tuple[Any, ...]]]:
        driver_sql = self._sqlite or self._compile_for_sqlite(dialect)
        cursor = driver.cursor()
        try:
            cursor.execute(driver_sql.sql, driver_sql.values(params))
            rows = cursor.fetchall()  # before rowcount: SQLite counts RETURNING rows as they are read
            return cursor.rowcount, rows
        finally:
            cursor.close()

    def _compile_for_sqlite(self, dialect: Dialect) -> _DriverSql:
        compiled = self.statement.compile(dialect=dialect)
        slots = []
        for name in compiled.positiontup or ():
            bind = compiled.binds[name]
            if bind.expanding:  # an IN list rendered per execute: write it as a list of literal() values
                raise TypeError(f"a prebuilt statement cannot take the list parameter {name!r}")
            # The dialect's own type (SQLite's DATETIME writes text), not the generic one, which converts nothing.
            convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                slots.append(_Slot(bind.key, None, convert))
            else:
                slots.append(_Slot(None, convert(bind.value) if convert else bind.value, None))
        self._sqlite = _DriverSql(compiled.string, tuple(slots))
        return self._sqlite


@dataclass(frozen=True, slots=True)
class _Slot:
    """One `?` of a compiled statement: a caller's parameter (by name, with its type's conversion) or a constant."""

    name: str | None
    constant: object
    convert: Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _DriverSql:
    sql: str
    slots: tuple[_Slot, ...]

    def values(self, params: Mapping[str, object]) -> tuple[object, ...]:
        return tuple(slot.constant if slot.name is None
                     else slot.convert(params[slot.name]) if slot.convert else params[slot.name]
                     for slot in self.slots)


def _first_line(error: BaseException | None) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
