"""What differs between SQLite and PostgreSQL: the URL, connecting, the write lock, busy errors, run locks.

SQLite is the embedded default: a private file, WAL, and `BEGIN IMMEDIATE` so every write
transaction holds the single write lock from its start. PostgreSQL gets the same guarantee from
a transaction-level advisory lock taken at the start of every write transaction (the equivalent
of BEGIN IMMEDIATE: the store's check-then-insert steps never interleave), sessions in UTC, and
`lock_timeout` as the busy timeout. Run locks are `flock` files beside SQLite and session
advisory locks on PostgreSQL (locks.py).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError

from ..errors import StoreError
from .locks import ADVISORY_NAMESPACE, AdvisoryLock, FileLock, RunLock, advisory_key

log = logging.getLogger(__name__)

# How much of the database file SQLite maps into memory (address space, not resident memory).
MMAP_BYTES = 256 * 1024 * 1024
# How long a write waits for another process's write transaction before giving up.
BUSY_TIMEOUT_MS = 30_000
# The environment variable that holds the PostgreSQL password (libpq's PGPASSWORD and ~/.pgpass work too).
PASSWORD_ENV = "NEWSLETTER_DB_PASSWORD"
POSTGRES_SCHEMES = ("postgresql://", "postgresql+psycopg://", "postgres://")


class Backend(Protocol):
    label: str  # how errors name the database (a path, or the URL without its password)
    path: Path | None  # the SQLite file; None for a server database

    def create_engine(self) -> Engine: ...

    def take_write_lock(self, conn: Connection) -> None:
        """Called first in every write transaction."""

    def is_busy(self, reason: BaseException | None) -> bool:
        """Whether the driver's error means another writer held the lock past the busy timeout."""

    def run_lock(self, engine: Engine) -> RunLock: ...

    def sync_lazily(self, conn: Connection) -> AbstractContextManager[None]:
        """Around one write transaction on `conn`: let its commit skip waiting for the disk (Database.write)."""

    def sync_committed(self) -> None:
        """Wait until every commit so far is on disk (after commits that skipped it: Database.write)."""

    def foreign_keys_off(self, conn: Connection) -> AbstractContextManager[None]:
        """Around one write transaction on `conn` that rebuilds tables (schema upgrades only)."""


def is_server_url(target: Path | str) -> bool:
    return str(target).startswith(POSTGRES_SCHEMES)


def backend_for(target: Path | str, busy_timeout_ms: int) -> Backend:
    """The backend a store URL names: `postgresql+psycopg://...`, `sqlite:///path` or a plain path."""
    if is_server_url(target):
        return PostgresBackend(str(target), busy_timeout_ms)
    return SqliteBackend(sqlite_path(target), busy_timeout_ms)


def sqlite_path(url: str | Path) -> Path:
    """The file a SQLite store URL names; other schemes are refused with what is supported."""
    text = str(url)
    if text.startswith("sqlite:///"):
        text = text.removeprefix("sqlite:///")
        if not text:
            raise StoreError("store: 'sqlite:///' names no file; use sqlite:///path/to/newsletter.sqlite3")
        # sqlite:////abs/path keeps its leading slash; sqlite:///rel/path is relative.
        return Path(text)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise StoreError(f"store: {scheme!r} databases are not supported; use a file path, "
                         "sqlite:///path/to/newsletter.sqlite3 or postgresql+psycopg://user@host/database")
    return Path(text)


def dialect_insert(conn: Connection, table: Any) -> sqlite.Insert | postgresql.Insert:
    """An INSERT that takes ON CONFLICT clauses (insert-or-ignore, upsert) in this connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


class SqliteBackend:
    def __init__(self, path: Path, busy_timeout_ms: int) -> None:
        self.path: Path | None = path
        self.file = path
        self.label = str(path)
        self.busy_timeout_ms = busy_timeout_ms

    def create_engine(self) -> Engine:
        _create_private_file(self.file)
        engine = create_engine(f"sqlite:///{self.file}")
        event.listen(engine, "connect", self._on_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine

    def take_write_lock(self, conn: Connection) -> None:
        """BEGIN IMMEDIATE (see _sqlite_begin) already took it."""

    def is_busy(self, reason: BaseException | None) -> bool:
        return isinstance(reason, sqlite3.OperationalError) and ("locked" in str(reason) or "busy" in str(reason))

    def run_lock(self, engine: Engine) -> RunLock:
        return FileLock(self.file)

    @contextmanager
    def sync_lazily(self, conn: Connection) -> Iterator[None]:
        # On the driver's connection, outside any transaction: SQLite refuses the change inside one.
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute("PRAGMA synchronous=NORMAL")
        try:
            yield
        finally:
            driver.execute("PRAGMA synchronous=FULL")

    def sync_committed(self) -> None:
        # Under WAL a commit is in the log file (-wal) until a checkpoint copies it into the database, which
        # syncs the database first; syncing the log is what synchronous=FULL does at every commit.
        for name in (f"{self.file}-wal", str(self.file)):
            try:
                fd = os.open(name, os.O_RDONLY)
            except FileNotFoundError:
                continue  # no log: everything was checkpointed into the database (and synced then)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            return

    @contextmanager
    def foreign_keys_off(self, conn: Connection) -> Iterator[None]:
        # Like sync_lazily: outside any transaction. The upgrade checks the keys itself (foreign_key_check).
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute("PRAGMA foreign_keys=OFF")
        try:
            yield
        finally:
            driver.execute("PRAGMA foreign_keys=ON")

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
        execute_when_unlocked(cursor, "PRAGMA journal_mode=WAL", self.busy_timeout_ms, first_pause=0.01,
                              longest_pause=0.01)


class PostgresBackend:
    """PostgreSQL through psycopg 3; the password comes from NEWSLETTER_DB_PASSWORD when the URL has none."""

    path: Path | None = None

    def __init__(self, url: str, busy_timeout_ms: int) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise StoreError(f"store: cannot read {url!r} as a database URL; "
                             "write it as postgresql+psycopg://user@host/database") from None
        parsed = parsed.set(drivername="postgresql+psycopg")
        if not parsed.database:
            raise StoreError("store: the PostgreSQL URL names no database; "
                             "write it as postgresql+psycopg://user@host/database")
        password = os.environ.get(PASSWORD_ENV)
        if parsed.password is None and password:
            parsed = parsed.set(password=password)
        self.url = parsed
        self.label = parsed.render_as_string(hide_password=True)
        self.busy_timeout_ms = busy_timeout_ms

    def create_engine(self) -> Engine:
        # Every session in UTC, so naive UTC parameters mean UTC against timestamptz columns;
        # lock_timeout bounds waiting for another writer as SQLite's busy_timeout does.
        options = f"-c timezone=UTC -c lock_timeout={int(self.busy_timeout_ms)}"
        return create_engine(self.url, connect_args={"options": options}, pool_pre_ping=True)

    def take_write_lock(self, conn: Connection) -> None:
        conn.execute(text("SELECT pg_advisory_xact_lock(:space, :key)"),
                     {"space": ADVISORY_NAMESPACE, "key": advisory_key("write")})

    def is_busy(self, reason: BaseException | None) -> bool:
        return getattr(reason, "sqlstate", None) == "55P03"  # lock_not_available: lock_timeout ran out

    def run_lock(self, engine: Engine) -> RunLock:
        return AdvisoryLock(engine, ADVISORY_NAMESPACE, self.label)

    def sync_lazily(self, conn: Connection) -> AbstractContextManager[None]:
        # Every commit waits for the server's disk: PostgreSQL's own synchronous_commit setting (per role
        # or database) is where an operator trades that away, for all of this store's commits at once.
        return nullcontext()

    def sync_committed(self) -> None:
        pass  # sync_lazily changes nothing here: every commit waited for the server's disk already

    def foreign_keys_off(self, conn: Connection) -> AbstractContextManager[None]:
        # PostgreSQL changes a table in place (ALTER TABLE): its foreign keys never need to be off.
        return nullcontext()


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


# SQLite's own busy handler sleeps 1, 2, 5, 10, ... ms between tries: a sender's one-row transaction that
# arrived while the producer committed a batch of digests (2-6 ms) slept 8 ms, 1.4 s of a 10,000-digest run.
# begin_immediate tries again after POLL_FIRST_SECONDS, growing to POLL_MAX_SECONDS (while another command
# holds the lock for long, about a thousand tries a second: 0.11 s of CPU over a 3 s wait).
POLL_FIRST_SECONDS = 0.0001
POLL_MAX_SECONDS = 0.001


def begin_immediate(driver: sqlite3.Connection, timeout_ms: int) -> None:
    """BEGIN IMMEDIATE on a connection with SQLite's busy handler off (busy_timeout 0), trying again soon after
    "database is locked" until `timeout_ms` have passed; then that error is raised (Database.guard says it)."""
    execute_when_unlocked(driver, "BEGIN IMMEDIATE", timeout_ms, first_pause=POLL_FIRST_SECONDS,
                          longest_pause=POLL_MAX_SECONDS)


def execute_when_unlocked(target: sqlite3.Connection | sqlite3.Cursor, sql: str, timeout_ms: int, *,
                          first_pause: float, longest_pause: float) -> None:
    """Execute `sql`, trying again while SQLite answers "locked" (pauses growing by half from `first_pause` to
    `longest_pause`) until `timeout_ms` have passed; then that error is raised."""
    deadline, pause = time.monotonic() + timeout_ms / 1000, first_pause
    while True:
        try:
            target.execute(sql)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 1.5, longest_pause)


def _sqlite_begin(conn: Connection) -> None:
    # IMMEDIATE takes the write lock at once (waiting busy_timeout for it); a deferred
    # transaction that later writes can fail at once with "database is locked".
    immediate = conn.get_execution_options().get("newsletter_write", False)
    # Straight on the driver's connection: through exec_driver_sql, SQLAlchemy's statement machinery
    # made BEGIN cost more than the rest of a one-row transaction (the sender runs one per message).
    # Its errors (a busy database) reach Database.guard bare, as those of the ledger's driver cursors do.
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
