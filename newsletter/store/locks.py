"""Named locks between processes that share one database: one digest run, one ingest at a time.

`RunLock` is the interface; `FileLock` implements it for SQLite with `flock` on a
file beside the database, named from the database's resolved path, so the same
file reached through a symlink or a relative path is still one lock. `AdvisoryLock`
implements it for PostgreSQL with session advisory locks: held by one connection
for the length of the block, and released by the server if the process dies.
"""

from __future__ import annotations

import fcntl
import os
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.engine import Engine

from ..errors import RunLocked

# First half of every advisory lock key this program takes: its own corner of the database's lock space.
ADVISORY_NAMESPACE = 0x6E6C  # "nl"


class RunLock(Protocol):
    """A lock held for the length of a `with` block, shared by every process on one database."""

    def hold(self, name: str, *, wait: bool = False,
             on_wait: Callable[[str], None] | None = None) -> AbstractContextManager[None]:
        """Hold lock `name`; when another process has it, raise RunLocked, or with `wait` tell
        `on_wait` once and block until it is free."""
        ...


class FileLock:
    """`flock` on `<database>.<name>.lock`, beside the resolved database file."""

    def __init__(self, database: Path) -> None:
        self.database = Path(os.path.realpath(database))

    def path_for(self, name: str) -> Path:
        return self.database.with_name(f"{self.database.name}.{name}.lock")

    @contextmanager
    def hold(self, name: str, *, wait: bool = False,
             on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        path = self.path_for(name)
        with open(path, "a") as handle:
            if not _try_lock(handle.fileno()):
                if not wait:
                    raise RunLocked(f"another newsletter {name} is running on {self.database} "
                                    f"(it holds {path}); wait for it to finish and try again")
                if on_wait is not None:
                    on_wait(f"waiting for another newsletter {name} on {self.database} to finish...")
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class AdvisoryLock:
    """`pg_advisory_lock(namespace, crc32(name))` on a connection of its own, for the length of the block."""

    def __init__(self, engine: Engine, namespace: int, label: str) -> None:
        self.engine = engine
        self.namespace = namespace
        self.label = label

    @contextmanager
    def hold(self, name: str, *, wait: bool = False,
             on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        key = {"space": self.namespace, "key": advisory_key(name)}
        with self.engine.connect() as conn:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:space, :key)"), key).scalar_one()
            conn.commit()  # a session lock: no transaction stays open while the block runs
            if not got:
                if not wait:
                    raise RunLocked(f"another newsletter {name} is running on {self.label} "
                                    "(it holds the database's advisory lock); wait for it to finish and try again")
                if on_wait is not None:
                    on_wait(f"waiting for another newsletter {name} on {self.label} to finish...")
                # Waiting for a whole run is expected here: lift this session's lock_timeout while we do.
                conn.execute(text("SET lock_timeout = 0"))
                conn.execute(text("SELECT pg_advisory_lock(:space, :key)"), key)
                conn.execute(text("RESET lock_timeout"))
                conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:space, :key)"), key)
                conn.commit()


def advisory_key(name: str) -> int:
    """The second half of an advisory lock key: a stable signed 32-bit number for a lock name."""
    value = zlib.crc32(name.encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
