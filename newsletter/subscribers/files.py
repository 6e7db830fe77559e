"""Reads and writes subscribers/ID.yaml (or ID.yml): the YAML-folder SubscriberRepository.

Files are validated strictly every time they are read; a bad file is reported with its
path, the field and the fix, and never stops the other subscribers from loading.
Writes go through `save`, `update`, `set_status` and `remove` only: round-trip
(the person's comments, key order and quoting stay; see roundtrip.py), atomic
(temporary file + rename), mode 0600 (the files hold personal data), checked to
load back to the same Subscriber, one writer at a time (`flock` on the folder),
and compare-and-swap on the file's fingerprint when the caller says which
version it read (`read` -> `expected_version`), so a hand edit is never lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ..errors import ConfigError, EditConflict, ProfileError, UnknownSubscriber
from ..models import WEEKDAYS, Schedule, Subscriber, SubscriberStatus
from ..text import shorten
from ..validation import (
    SUBSCRIBER_LIMITS,
    check_clock,
    check_email,
    check_timezone,
    describe_validation_error,
    explain_error,
    parse_yaml_mapping,
    read_yaml_text,
)
from . import ABSENT, ID_RULE, LoadedSubscribers, SubscriberRepository, Versioned, check_subscriber_id, is_subscriber_id
from .roundtrip import merge

# `.yaml` first: a new subscriber's file gets that suffix.
SUFFIXES = (".yaml", ".yml")
# Length limits, the same for a hand-written file, the CLI and the web form: a topic is a phrase,
# a liked entry is a paper title, and no list needs more entries than a person can read.
MAX_NAME = 100
MAX_PHRASE = 200
MAX_TITLE = 500
MAX_ENTRIES = 100
# The fields in the order a written file lists them.
FIELDS = ("email", "name", "topics", "exclude", "liked", "max_papers", "status", "schedule")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class ScheduleFile(BaseModel):
    """A file's `schedule`; every key is optional and falls back to config.yaml's `schedule`."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    frequency: Literal["daily", "weekdays", "weekly"] | None = None
    day: Weekday | None = None
    time: str | None = None
    timezone: str | None = None

    @field_validator("time")
    @classmethod
    def _clock(cls, value: str | None) -> str | None:
        return None if value is None else check_clock(value).isoformat(timespec="seconds").removesuffix(":00")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)

    @model_validator(mode="after")
    def _day_only_when_weekly(self) -> ScheduleFile:
        if self.day is not None and self.frequency not in ("weekly", None):
            raise ValueError(f"`day` only applies to frequency: weekly; remove it or set frequency: weekly "
                             f"(this one is {self.frequency})")
        return self

    def resolve(self, default: Schedule) -> Schedule:
        return Schedule(
            frequency=self.frequency or default.frequency,
            time=check_clock(self.time) if self.time is not None else default.time,
            timezone=self.timezone or default.timezone,
            day=WEEKDAYS.index(self.day) if self.day is not None else default.day,
        )


class SubscriberFile(BaseModel):
    """The keys of one subscriber file; strict, so `max_papers: true` or `status: on` is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    email: str
    name: str = ""
    topics: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    liked: list[str] = Field(default_factory=list)
    max_papers: Annotated[int, Field(ge=1, le=100)] | None = None
    status: Literal["active", "paused", "unsubscribed"] = "active"
    schedule: ScheduleFile | None = None

    @field_validator("email")
    @classmethod
    def _valid_email(cls, value: str) -> str:
        return check_email(value.strip())

    @field_validator("name")
    @classmethod
    def _one_line_name(cls, value: str) -> str:
        if "\n" in value or "\r" in value:
            raise ValueError("must be on one line")
        if len(value.strip()) > MAX_NAME:
            raise ValueError(f"must be at most {MAX_NAME} characters")
        return value.strip()

    @field_validator("topics", "exclude", "liked")
    @classmethod
    def _clean_phrases(cls, values: list[str], info: ValidationInfo) -> list[str]:
        cleaned = [" ".join(v.split()) for v in values]
        if any(not v for v in cleaned):
            raise ValueError("must not contain empty entries")
        longest = MAX_TITLE if info.field_name == "liked" else MAX_PHRASE
        if any(len(v) > longest for v in cleaned):
            raise ValueError(f"each entry must be at most {longest} characters")
        unique = list(dict.fromkeys(cleaned))  # drop repeats, keep order
        if len(unique) > MAX_ENTRIES:
            raise ValueError(f"must hold at most {MAX_ENTRIES} entries")
        return unique

    @model_validator(mode="after")
    def _has_profile(self) -> SubscriberFile:
        if self.status == "active" and not (self.topics or self.liked):
            raise ValueError(
                "an active subscriber needs at least one entry under `topics` or `liked`; "
                'add e.g. topics: ["graph neural networks"]'
            )
        return self


class FileSubscribers:
    """Subscribers kept as one YAML file each in `folder`; the file name without suffix is the id."""

    def __init__(self, folder: Path, default_schedule: Schedule | None = None) -> None:
        self.folder = folder
        # config.yaml's `schedule`, for files that set none (or only part) of their own.
        self.default_schedule = default_schedule or Schedule()

    @property
    def location(self) -> str:
        return str(self.folder)

    def load_all(self) -> LoadedSubscribers:
        """Every subscriber, sorted by id; a bad file (or a clash of ID.yaml and ID.yml) becomes an error."""
        subscribers: list[Subscriber] = []
        errors: list[ProfileError] = []
        for subscriber_id, paths in sorted(self._files_by_id().items()):
            try:
                subscribers.append(self._load(subscriber_id, paths))
            except ProfileError as exc:
                errors.append(exc)
        return LoadedSubscribers(tuple(subscribers), tuple(errors))

    def count(self) -> int:
        return len(self._files_by_id())

    def get(self, subscriber_id: str) -> Subscriber:
        """The subscriber `subscriber_id`; UnknownSubscriber if there is none, ProfileError if its file is bad."""
        check_subscriber_id(subscriber_id)
        paths = self._existing(subscriber_id)
        if not paths:
            raise self._unknown(subscriber_id)
        return self._load(subscriber_id, paths)

    def read(self, subscriber_id: str) -> Versioned:
        """The subscriber and the version (fingerprint) of the file it was read from, for `expected_version`."""
        check_subscriber_id(subscriber_id)
        path, text = self._current(subscriber_id)
        if text is None:
            raise self._unknown(subscriber_id)
        return Versioned(_from_text(path, text, self.default_schedule), fingerprint(text))

    def save(self, subscriber: Subscriber, *, expected_version: str | None = None) -> Subscriber:
        """Create or replace the subscriber's file, keeping the person's comments and key order.

        With `expected_version` (from `read`, or ABSENT for "must not exist yet") the
        write happens only if the file is still that version; EditConflict otherwise.
        Returns the subscriber as it now loads.
        """
        check_subscriber_id(subscriber.id)
        with self._locked():
            path, current = self._current(subscriber.id)
            _check_version(path, current, expected_version)
            return _write(path, current, subscriber, self.default_schedule)

    def update(self, subscriber_id: str, change: Callable[[Subscriber], Subscriber], *,
               expected_version: str | None = None) -> Subscriber:
        """Apply `change` to the subscriber as the file holds it now, under the folder's lock, and save.

        Reading inside the lock is what makes two editors (CLI and web app) never lose
        one another's change: the second one's `change` sees the first one's result.
        """
        check_subscriber_id(subscriber_id)
        with self._locked():
            path, current = self._current(subscriber_id)
            if current is None:
                raise self._unknown(subscriber_id)
            _check_version(path, current, expected_version)
            changed = change(_from_text(path, current, self.default_schedule))
            if changed.id != subscriber_id:
                raise ProfileError(f"{path}: an edit cannot change the subscriber id; add a new subscriber instead")
            return _write(path, current, changed, self.default_schedule)

    def set_status(self, subscriber_id: str, status: SubscriberStatus) -> Subscriber:
        return self.update(subscriber_id, lambda s: replace(s, status=status))

    def remove(self, subscriber_id: str) -> None:
        """Delete the subscriber's file (both, if ID.yaml and ID.yml clash); UnknownSubscriber if there is none."""
        check_subscriber_id(subscriber_id)
        with self._locked():
            paths = self._existing(subscriber_id)
            if not paths:
                raise UnknownSubscriber(f"no subscriber {subscriber_id!r} in {self.folder}")
            for path in paths:
                try:
                    path.unlink()
                except OSError as exc:
                    raise ProfileError(f"{path}: cannot be removed ({exc.strerror})") from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time in this folder, across processes: `flock` on the folder itself.

        Locking the folder (not a lock file) leaves nothing behind among the
        subscriber files, and it still works when a file is replaced by rename.
        """
        self._check_folder()
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _current(self, subscriber_id: str) -> tuple[Path, str | None]:
        """The subscriber's file and its text now (None when there is no file)."""
        paths = self._existing(subscriber_id)
        if len(paths) > 1:
            raise _clash(subscriber_id, paths)
        if not paths:
            return self.folder / f"{subscriber_id}{SUFFIXES[0]}", None
        return paths[0], read_yaml_text(paths[0], ProfileError, SUBSCRIBER_LIMITS)

    def _unknown(self, subscriber_id: str) -> UnknownSubscriber:
        known = sorted(sid for sid in self._files_by_id() if is_subscriber_id(sid))
        hint = f"; known: {', '.join(known[:20])}{', ...' if len(known) > 20 else ''}" if known else ""
        where = self.folder / f"{subscriber_id}{SUFFIXES[0]}"
        return UnknownSubscriber(f"no subscriber {subscriber_id!r} ({where} does not exist{hint})")

    def _load(self, subscriber_id: str, paths: list[Path]) -> Subscriber:
        if len(paths) > 1:
            raise _clash(subscriber_id, paths)
        return load_subscriber_file(paths[0], self.default_schedule)

    def _existing(self, subscriber_id: str) -> list[Path]:
        self._check_folder()
        candidates = (self.folder / f"{subscriber_id}{suffix}" for suffix in SUFFIXES)
        return [path for path in candidates if path.is_symlink() or path.exists()]

    def _files_by_id(self) -> dict[str, list[Path]]:
        self._check_folder()
        found: dict[str, list[Path]] = {}
        try:
            entries = sorted(self.folder.iterdir())
        except OSError as exc:
            raise ConfigError(f"subscribers folder {self.folder} cannot be read ({exc.strerror})") from None
        for path in entries:
            # Hidden files are editors' and save()'s temporary files, never subscribers.
            if path.suffix in SUFFIXES and not path.name.startswith("."):
                found.setdefault(path.stem, []).append(path)
        return found

    def _check_folder(self) -> None:
        if not self.folder.is_dir():
            raise ConfigError(
                f"subscribers folder {self.folder} does not exist (config key `subscribers`): create it, "
                "or set `subscribers:` in config.yaml to the folder that holds the ID.yaml files"
            )


def _clash(subscriber_id: str, paths: list[Path]) -> ProfileError:
    return ProfileError(f"{' and '.join(map(str, paths))}: two files for subscriber {subscriber_id!r}; "
                        "keep one and delete the other")


def field_errors(subscriber: Subscriber) -> dict[str, str]:
    """The file's rules applied to `subscriber`: {field: problem}, empty when it would save.

    For forms, which show each problem next to its field; a rule about the whole
    profile (an active subscriber needs a topic) is reported on `topics`.
    """
    raw = {"email": subscriber.email, "name": subscriber.name, "topics": list(subscriber.topics),
           "exclude": list(subscriber.exclude), "liked": list(subscriber.liked),
           "max_papers": subscriber.max_papers, "status": subscriber.status}
    errors: dict[str, str] = {}
    try:
        SubscriberFile.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "topics"
            message = str(err["msg"]).removeprefix("Value error, ")
            errors.setdefault(name, message[0].lower() + message[1:] if message else "is not valid")
    return errors


# The schedule's keys in the order forms show them and errors are reported.
SCHEDULE_FIELDS = ("frequency", "day", "time", "timezone")


def check_schedule(fields: Mapping[str, str], default: Schedule) -> tuple[Schedule | None, dict[str, str]]:
    """A schedule typed into a form or given as CLI options, checked by the file's own rules (ScheduleFile).

    `fields` holds text for some of SCHEDULE_FIELDS (leave `day` out unless weekly);
    the rest fall back to `default`. Returns the schedule and no errors, or None and
    {field: problem} worded as for a file, e.g. "'Europe/Berln' is not a time zone;
    did you mean 'Europe/Berlin'?".
    """
    try:
        parsed = ScheduleFile.model_validate({key: value for key, value in fields.items() if key in SCHEDULE_FIELDS})
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for err in exc.errors():
            # The one rule about two keys (`day` only for weekly) is reported on `day`.
            name = str(err["loc"][0]) if err["loc"] else "day"
            errors.setdefault(name, explain_error(err, ScheduleFile))
        return None, errors
    return parsed.resolve(default), {}


def schedule_fields(schedule: Schedule) -> dict[str, str]:
    """A schedule as a file (or a form) spells it; `day` only for a weekly one."""
    data = {"frequency": schedule.frequency, "time": schedule.time.isoformat(timespec="seconds").removesuffix(":00"),
            "timezone": schedule.timezone}
    return data | ({"day": WEEKDAYS[schedule.day]} if schedule.frequency == "weekly" else {})


def fingerprint(text: str) -> str:
    """A file's version for compare-and-swap: the SHA-256 of its text (ABSENT for no file)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_version(path: Path, current: str | None, expected: str | None) -> None:
    if expected is None:
        return
    actual = ABSENT if current is None else fingerprint(current)
    if actual == expected:
        return
    if expected == ABSENT:
        raise EditConflict(f"{path}: a subscriber with this id already exists; pick another id or edit that one")
    if current is None:
        raise EditConflict(f"{path}: the subscriber was removed after this edit began; nothing was written")
    raise EditConflict(f"{path}: the file changed after this edit began (edited by hand or by another "
                       "command); nothing was written. Load it again and redo the change")


def _file_data(path: Path, subscriber: Subscriber, default_schedule: Schedule,
               file_schedule: dict[str, Any] | None = None) -> dict[str, Any]:
    """The subscriber as a file's mapping, validated (and normalised) exactly as reading it would be."""
    raw: dict[str, Any] = {
        "email": subscriber.email, "name": subscriber.name, "topics": list(subscriber.topics),
        "exclude": list(subscriber.exclude), "liked": list(subscriber.liked),
        "max_papers": subscriber.max_papers, "status": subscriber.status,
        "schedule": _own_schedule(subscriber.schedule, default_schedule, file_schedule or {}),
    }
    try:
        parsed = SubscriberFile.model_validate(raw)
    except ValidationError as exc:
        raise ProfileError(describe_validation_error(path, exc, SubscriberFile)) from None
    values = parsed.model_dump()
    if values["schedule"] is not None:
        values["schedule"] = {key: value for key, value in values["schedule"].items() if value is not None}
    return {key: values[key] for key in FIELDS}


def _own_schedule(schedule: Schedule, default: Schedule, kept: dict[str, Any]) -> dict[str, str] | None:
    """The schedule keys a file should hold: those that differ from config.yaml's, and those the file
    already pinned to the same value. A key that follows config.yaml keeps following it (a file that set
    only `time` still takes a later change of config's `timezone`), and a key changed back to config's
    value leaves the file."""
    own, defaults = schedule_fields(schedule), schedule_fields(default)
    keys = {key: value for key, value in own.items() if value != defaults.get(key) or kept.get(key) == value}
    return keys or None


def _write(path: Path, current: str | None, subscriber: Subscriber, default_schedule: Schedule) -> Subscriber:
    """Write `subscriber` into `current` (round trip), check it reads back the same, and replace the file."""
    existing = _parse_or_none(path, current)
    file_schedule = existing.get("schedule")
    values = _file_data(path, subscriber, default_schedule,
                        {key: str(value) for key, value in file_schedule.items()} if isinstance(file_schedule, dict)
                        else None)
    # A value the file leaves out because it is the default stays left out.
    for key, default in (("name", subscriber.id), ("status", "active")):
        if values[key] == default and key not in existing:
            values[key] = None
    text = merge(current if existing else None, values, FIELDS)
    # The same checks a read makes, so nothing is written that would not load back.
    written = parse_yaml_mapping(text, path, ProfileError, SUBSCRIBER_LIMITS)
    wanted = {k: v for k, v in values.items() if v is not None}
    if {k: written[k] for k in FIELDS if k in written} != {k: v for k, v in wanted.items() if v != [] or k in written}:
        raise ProfileError(f"{path}: the edited file would not read back as written; nothing was written")
    # A hand edit takes no lock: look once more just before the rename, so the window in which
    # an editor's save could still be replaced is as short as it can be.
    _check_version(path, _text_now(path), ABSENT if current is None else fingerprint(current))
    _write_atomically(path, text)
    return _from_text(path, text, default_schedule)


def _text_now(path: Path) -> str | None:
    try:
        return read_yaml_text(path, ProfileError, SUBSCRIBER_LIMITS)
    except ProfileError:
        return None if not (path.exists() or path.is_symlink()) else ""


def _parse_or_none(path: Path, text: str | None) -> dict[str, Any]:
    """The file's mapping, or {} when there is none or it does not parse (then it is written afresh)."""
    if text is None:
        return {}
    try:
        return parse_yaml_mapping(text, path, ProfileError, SUBSCRIBER_LIMITS)
    except ProfileError:
        return {}


def _write_atomically(path: Path, text: str) -> None:
    # A reader (or a crash) sees the old file or the new one, never half of one; mkstemp makes it 0600.
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    except OSError as exc:
        raise ProfileError(f"{path}: cannot be written ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise ProfileError(f"{path}: cannot be written ({exc.strerror})") from None


def load_subscriber_file(path: Path, default_schedule: Schedule | None = None) -> Subscriber:
    """Load one subscriber file; raise ProfileError naming the file, field and fix."""
    return _from_text(path, read_yaml_text(path, ProfileError, SUBSCRIBER_LIMITS), default_schedule)


def _from_text(path: Path, text: str, default_schedule: Schedule | None = None) -> Subscriber:
    subscriber_id = path.stem
    if not is_subscriber_id(subscriber_id):
        raise ProfileError(
            f"{path.parent}/{shorten(path.name, 80)}: the file name is the subscriber id, which must be "
            f"{ID_RULE} (e.g. alice.yaml); rename the file"
        )
    data = parse_yaml_mapping(text, path, ProfileError, SUBSCRIBER_LIMITS)
    try:
        parsed = SubscriberFile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(describe_validation_error(path, exc, SubscriberFile)) from None
    return Subscriber(
        id=subscriber_id,
        email=parsed.email,
        name=parsed.name or subscriber_id,
        topics=tuple(parsed.topics),
        exclude=tuple(parsed.exclude),
        liked=tuple(parsed.liked),
        max_papers=parsed.max_papers,
        status=parsed.status,
        schedule=(parsed.schedule.resolve(default_schedule or Schedule()) if parsed.schedule is not None
                  else default_schedule or Schedule()),
        source=path,
    )


def load_subscribers(folder: Path) -> LoadedSubscribers:
    """Every subscriber in `folder` (same as `FileSubscribers(folder).load_all()`)."""
    repository: SubscriberRepository = FileSubscribers(folder)  # lets mypy hold FileSubscribers to the contract
    return repository.load_all()


def load_one(folder: Path, subscriber_id: str) -> Subscriber:
    """One subscriber from `folder` (same as `FileSubscribers(folder).get(subscriber_id)`)."""
    return FileSubscribers(folder).get(subscriber_id)
