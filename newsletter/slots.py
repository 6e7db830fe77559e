"""When a subscriber's digests are due: a Schedule and a moment -> slots (pure; reads and writes nothing).

A slot is one local date on which the schedule sends, and the UTC instant its
local time falls on that date. Every sending date has exactly one slot, so a
daylight-saving change neither skips nor doubles a send:
- a time that does not exist that day (02:30 when clocks jump from 02:00 to 03:00)
  goes out when the clocks have jumped, at the same distance past the change (03:30);
- a time that happens twice (01:30 when clocks fall back from 02:00 to 01:00)
  goes out the first time only.
Both follow from resolving the wall time with `fold=0` (PEP 495), which zoneinfo
maps to the offset in force before the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from .models import Schedule

# The longest gap between two slots is a week; look one day further either side.
_SEARCH_DAYS = 8


@dataclass(frozen=True, slots=True, order=True)
class Slot:
    """One digest's due moment: `at` (UTC) and the subscriber's local date it belongs to."""

    at: datetime
    local_date: date

    def local(self, timezone: str) -> datetime:
        """`at` on the subscriber's clock, for messages and the email's Date."""
        return self.at.astimezone(ZoneInfo(timezone))


def sends_on(schedule: Schedule, day: date) -> bool:
    """Whether the schedule has a slot on this local date."""
    if schedule.frequency == "weekdays":
        return day.weekday() < 5
    if schedule.frequency == "weekly":
        return day.weekday() == schedule.day
    return True


def slot_on(schedule: Schedule, day: date) -> Slot | None:
    """The slot on local date `day`, or None when the schedule does not send that day."""
    if not sends_on(schedule, day):
        return None
    wall = datetime.combine(day, schedule.time, tzinfo=ZoneInfo(schedule.timezone))  # fold=0: see the docstring
    return Slot(wall.astimezone(UTC), day)


@lru_cache(maxsize=4096)
def current_slot(schedule: Schedule, moment: datetime) -> Slot:
    """The latest slot at or before `moment`: the one a digest run at `moment` serves.

    Memoised: a run asks it for every subscriber at one moment, and most share a few schedules
    (10,000 subscribers took 0.3 s, each trying 17 days)."""
    return max(s for s in _around(schedule, moment) if s.at <= moment)


def next_slot(schedule: Schedule, moment: datetime) -> Slot:
    """The first slot strictly after `moment`."""
    return min(s for s in _around(schedule, moment) if s.at > moment)


def describe_next(schedule: Schedule, moment: datetime) -> str:
    """The next slot after `moment` for people: "Wed 02 Dec 2026, 07:30 Europe/Berlin (06:30 UTC)".

    The UTC time names its day when that differs from the local one; a UTC schedule shows it once.
    """
    slot = next_slot(schedule, moment)
    local = slot.local(schedule.timezone)
    shown = f"{local:%a %d %b %Y, %H:%M} {schedule.timezone}"
    if local.utcoffset() == timedelta(0) and schedule.timezone in ("UTC", "Etc/UTC"):
        return shown  # "(07:00 UTC)" again would say nothing
    utc = f"{slot.at:%H:%M} UTC" if slot.at.date() == local.date() else f"{slot.at:%a %d %b, %H:%M} UTC"
    return f"{shown} ({utc})"


def _around(schedule: Schedule, moment: datetime) -> list[Slot]:
    if moment.tzinfo is None:
        raise ValueError("moments must be timezone-aware")
    today = moment.astimezone(ZoneInfo(schedule.timezone)).date()
    days = (today + timedelta(days=offset) for offset in range(-_SEARCH_DAYS, _SEARCH_DAYS + 1))
    return [slot for day in days if (slot := slot_on(schedule, day)) is not None]
