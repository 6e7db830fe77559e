"""The state of each URL source: validators for the next conditional request, the last outcome and error, when next.

Reads and writes the `source_state` table only. The fetcher decides what a
fetch means; this module keeps it, one short write per fetch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import select

from .backends import dialect_insert
from .schema import Database, from_db, source_state, to_db


@dataclass(frozen=True, slots=True)
class SourceState:
    """What is known about one URL; a URL never fetched has `SourceState(url)`."""

    url: str
    final_url: str = ""
    etag: str | None = None
    last_modified: str | None = None
    sha256: str | None = None
    last_fetch_at: datetime | None = None
    last_success_at: datetime | None = None
    last_outcome: str = ""
    last_error: str = ""
    body_error: str = ""
    failures: int = 0
    next_try_at: datetime | None = None

    def due(self, now: datetime) -> bool:
        return self.next_try_at is None or self.next_try_at <= now


TIMES = ("last_fetch_at", "last_success_at", "next_try_at")


class SourceStates:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, url: str) -> SourceState:
        with self._db.read() as conn:
            row = conn.execute(select(source_state).where(source_state.c.url == url)).mappings().first()
        return _from_row(row) if row is not None else SourceState(url)

    def all(self) -> list[SourceState]:
        """Every URL ever fetched, by URL (including ones since removed from config.yaml)."""
        with self._db.read() as conn:
            rows = conn.execute(select(source_state).order_by(source_state.c.url)).mappings().all()
        return [_from_row(row) for row in rows]

    def save(self, state: SourceState) -> None:
        values = {f.name: getattr(state, f.name) for f in fields(SourceState)}
        for name in TIMES:
            if values[name] is not None:
                values[name] = to_db(values[name])
        with self._db.write() as conn:
            statement = dialect_insert(conn, source_state).values(**values)
            conn.execute(statement.on_conflict_do_update(
                index_elements=[source_state.c.url],
                set_={name: statement.excluded[name] for name in values if name != "url"}))


def _from_row(row: Any) -> SourceState:
    values = dict(row)
    for name in TIMES:
        if values[name] is not None:
            values[name] = from_db(values[name])
    return SourceState(**values)
