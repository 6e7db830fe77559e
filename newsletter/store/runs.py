"""The run log: one row per digest run or ingest (started, finished, ok, a one-line summary), for `status`.

A row whose `finished_at` stays empty belongs to a process that died mid-run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update

from .schema import Database, from_db, runs, to_db


@dataclass(frozen=True, slots=True)
class RunRecord:
    kind: str
    started_at: datetime
    finished_at: datetime | None
    ok: bool | None
    summary: str


@dataclass(slots=True)
class RunEntry:
    """Filled in by the caller inside `RunLog.record`; written when the block ends."""

    ok: bool = True
    summary: str = ""


class RunLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    @contextmanager
    def record(self, kind: str, started: datetime,
               clock: Callable[[], datetime] | None = None) -> Iterator[RunEntry]:
        """Log a run around a block; an exception marks it failed with the error as its summary.

        The run ends at `clock()`, or at `started` for callers that run at one fixed moment.
        """
        with self._db.write() as conn:
            inserted = conn.execute(insert(runs).values(kind=kind, started_at=to_db(started)))
            run_id = inserted.inserted_primary_key[0]  # type: ignore[index]
        entry = RunEntry()
        try:
            yield entry
        except Exception as exc:
            entry.ok, entry.summary = False, f"{type(exc).__name__}: {exc}"
            raise
        finally:
            with self._db.write() as conn:
                conn.execute(update(runs).where(runs.c.id == run_id).values(
                    finished_at=to_db(clock() if clock is not None else started), ok=entry.ok,
                    summary=entry.summary[:500]))

    def add(self, kind: str, started: datetime, finished: datetime, *, ok: bool, summary: str) -> None:
        """Log a run that is over (e.g. an inbox poll that found pages)."""
        with self._db.write() as conn:
            conn.execute(insert(runs).values(kind=kind, started_at=to_db(started), finished_at=to_db(finished), ok=ok,
                                             summary=summary[:500]))

    def recent(self, limit: int = 10) -> list[RunRecord]:
        """The newest runs first."""
        with self._db.read() as conn:
            rows = conn.execute(select(runs).order_by(runs.c.id.desc()).limit(limit))
            return [RunRecord(r.kind, from_db(r.started_at), from_db(r.finished_at) if r.finished_at else None,
                              r.ok, r.summary) for r in rows]
