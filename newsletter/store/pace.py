"""The send pace shared by every worker on one database: reads and writes the one `send_pace` row.

`smtp.max_per_second` is a limit of the relay, so it holds for all workers together. Each
send books the next free moment in a short write transaction (on PostgreSQL the row is
locked `FOR UPDATE`; on SQLite the write transaction holds the database) and sleeps
outside it until its moment. Moments are wall-clock seconds: workers on several machines
share them, so their clocks must agree to well under one send interval (NTP does).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import select, update

from .schema import PACE_ROW, Database, send_pace


class SharedPacer:
    """Spaces sends at least 1/per_second apart across every process on the database; `wait()` before each."""

    def __init__(self, db: Database, per_second: float | None, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self._db = db
        self._clock, self._sleep = clock, sleep

    def wait(self) -> None:
        if not self.interval:
            return
        start, now = self.book()
        if start > now:
            self._sleep(start - now)

    def book(self) -> tuple[float, float]:
        """Take the next free moment; (that moment, now)."""
        with self._db.write() as conn:
            booked = conn.execute(select(send_pace.c.next_at).where(send_pace.c.name == PACE_ROW)
                                  .with_for_update()).scalar_one()
            now = self._clock()
            start = max(now, float(booked))
            conn.execute(update(send_pace).where(send_pace.c.name == PACE_ROW).values(next_at=start + self.interval))
        return start, now
