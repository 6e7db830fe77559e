"""Named locks between processes that share one database: one digest run, one ingest at a time.

`RunLock` is the interface; `FileLock` implements it for SQLite with `flock` on a
file beside the database, named from the database's resolved path, so the same
file reached through a symlink or a relative path is still one lock. A server
database implements the same interface with its own advisory locks.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

from ..errors import RunLocked


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


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
