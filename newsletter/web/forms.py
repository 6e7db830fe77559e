"""The preference form: raw fields in, a changed Subscriber or per-field errors out. Pure.

Validation is the subscriber file's own (subscribers/files.py `field_errors`), so
the page refuses exactly what a hand-written file would; the length caps here only
stop a huge field before it is split into entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ..models import Schedule, Subscriber
from ..subscribers.edits import clean
from ..subscribers.files import MAX_ENTRIES, MAX_PHRASE, SCHEDULE_FIELDS, check_schedule, field_errors, schedule_fields

# A list field is at most MAX_ENTRIES lines of MAX_PHRASE characters.
MAX_LIST_FIELD = MAX_ENTRIES * (MAX_PHRASE + 2)
MAX_SHORT_FIELD = 200


@dataclass(frozen=True, slots=True)
class FormResult:
    subscriber: Subscriber
    errors: dict[str, str] = field(default_factory=dict)  # field name -> message shown next to it
    values: dict[str, str] = field(default_factory=dict)  # what the person typed, to show back


def lines(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(c for c in (clean(line) for line in text.splitlines()) if c))


def schedule_values(schedule: Schedule) -> dict[str, str]:
    """A schedule as the form shows it: every field filled, `day` too (its select always has a value)."""
    return {"day": "mon"} | schedule_fields(schedule)


def read_preferences(current: Subscriber, form: Mapping[str, str], default_schedule: Schedule) -> FormResult:
    """`current` with topics, exclude, max papers and schedule from the form, or the errors to show per field.

    A schedule field the form leaves out keeps its value; the schedule is checked by
    the file's rules and, equal to `default_schedule`, is not written to the file.
    """
    values = {name: form.get(name, "") for name in ("topics", "exclude", "max_papers")}
    values |= {name: form.get(name, shown)[:MAX_SHORT_FIELD]
               for name, shown in schedule_values(current.schedule).items()}
    errors: dict[str, str] = {}
    for name in ("topics", "exclude"):
        if len(values[name]) > MAX_LIST_FIELD:
            errors[name] = f"too long: at most {MAX_ENTRIES} lines of {MAX_PHRASE} characters"
    max_text = values["max_papers"].strip()
    max_papers: int | None = None
    if len(max_text) > MAX_SHORT_FIELD or (max_text and not max_text.isdigit()):
        errors["max_papers"] = "must be a whole number from 1 to 100, or empty for the default"
    elif max_text:
        max_papers = int(max_text)
    # The day select always sends a value; it counts only for a weekly schedule.
    typed = {name: values[name] for name in SCHEDULE_FIELDS if name != "day" or values["frequency"] == "weekly"}
    schedule, schedule_errors = check_schedule(typed, default_schedule)
    errors |= schedule_errors
    if errors or schedule is None:
        return FormResult(current, errors, values)
    changed = replace(current, topics=lines(values["topics"]), exclude=lines(values["exclude"]),
                      max_papers=max_papers, schedule=schedule)
    return FormResult(changed, field_errors(changed), values)
