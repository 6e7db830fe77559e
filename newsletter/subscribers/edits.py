"""Changes a person asks for (add a topic, drop an exclude, like a paper, ...) applied to a Subscriber. Pure.

The CLI and the web app describe a change as an `Edit` and hand it to
`SubscriberRepository.update`, which applies it to the file as it stands and
validates the result with the same rules as a hand-written file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..errors import ProfileError
from ..models import WEEKDAYS, Schedule, Subscriber
from ..text import quoted
from .files import check_schedule, schedule_fields


def clean(phrase: str) -> str:
    """A phrase as a subscriber file stores it (runs of whitespace become one space)."""
    return " ".join(phrase.split())


@dataclass(frozen=True, slots=True)
class ScheduleChange:
    """New values for some schedule keys (text, as typed), or `to_default`: follow config.yaml's again."""

    frequency: str | None = None
    day: str | None = None
    time: str | None = None
    timezone: str | None = None
    to_default: bool = False

    def apply(self, subscriber: Subscriber, default: Schedule) -> Schedule:
        """The subscriber's schedule with these keys changed; ProfileError worded as for the file if invalid."""
        if self.to_default:
            if any(v is not None for v in (self.frequency, self.day, self.time, self.timezone)):
                raise ProfileError("going back to the default schedule cannot be combined with setting a part of it")
            return default
        fields = schedule_fields(subscriber.schedule)
        given = {"frequency": self.frequency, "day": self.day, "time": self.time, "timezone": self.timezone}
        fields.update({key: value for key, value in given.items() if value is not None})
        if fields["frequency"] == "weekly" and "day" not in fields:  # becoming weekly: keep the day it knows
            fields["day"] = WEEKDAYS[subscriber.schedule.day]
        elif fields["frequency"] != "weekly" and self.day is None:
            fields.pop("day", None)  # leaving weekly: the old day no longer applies
        schedule, errors = check_schedule(fields, default)
        if schedule is None:
            name, problem = next(iter(errors.items()))
            raise ProfileError(f"{subscriber.id}: schedule.{name}: {problem}")
        return schedule


@dataclass(frozen=True, slots=True)
class Edit:
    """What to change; an empty Edit changes nothing. `max_papers=0` means "back to the default"."""

    add_topics: tuple[str, ...] = ()
    remove_topics: tuple[str, ...] = ()
    add_exclude: tuple[str, ...] = ()
    remove_exclude: tuple[str, ...] = ()
    like: tuple[str, ...] = ()
    unlike: tuple[str, ...] = ()
    max_papers: int | None = None
    schedule: ScheduleChange | None = None

    def apply(self, subscriber: Subscriber, default_schedule: Schedule | None = None) -> Subscriber:
        """The subscriber with this edit made; ProfileError naming the entry when a removal finds nothing.

        `default_schedule` (config.yaml's) is what `ScheduleChange(to_default=True)` goes back to.
        """
        topics = _without(subscriber.topics, self.remove_topics, subscriber.id, "topic")
        exclude = _without(subscriber.exclude, self.remove_exclude, subscriber.id, "exclude phrase")
        liked = _without(subscriber.liked, self.unlike, subscriber.id, "liked paper")
        max_papers = subscriber.max_papers
        if self.max_papers is not None:
            max_papers = self.max_papers or None
        schedule = subscriber.schedule
        if self.schedule is not None:
            schedule = self.schedule.apply(subscriber, default_schedule or Schedule())
        return replace(subscriber, topics=_with(topics, self.add_topics), exclude=_with(exclude, self.add_exclude),
                       liked=_with(liked, self.like), max_papers=max_papers, schedule=schedule)


def _with(current: Sequence[str], added: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*current, *map(clean, added)]))


def _without(current: Sequence[str], removed: Sequence[str], subscriber_id: str, what: str) -> tuple[str, ...]:
    # Case-insensitive, as a person retyping a topic will not remember its capitals.
    gone = {clean(r).casefold() for r in removed}
    missing = gone - {c.casefold() for c in current}
    if missing:
        have = ", ".join(quoted(c, 60) for c in current) or "none"
        raise ProfileError(f"{subscriber_id} has no {what} {quoted(sorted(missing)[0], 60)} (has: {have})")
    return tuple(c for c in current if c.casefold() not in gone)
