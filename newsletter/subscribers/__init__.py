"""Where subscribers live: the SubscriberRepository contract, subscriber ids, and the YAML-folder backend.

Reads and writes nothing itself; `files.FileSubscribers` reads and writes
subscribers/ID.yaml. The preference centre and a SQL backend (later) implement
the same contract, so callers never build a subscriber's path themselves.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..errors import ProfileError, UnknownSubscriber
from ..models import Schedule, Subscriber, SubscriberStatus
from ..text import quoted

# No dots: an id never spells `..`, a hidden file or a second extension, so it is safe in any path.
SUBSCRIBER_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
ID_RULE = "1-64 lower-case letters, digits, '_' or '-', starting with a letter or digit"


def is_subscriber_id(value: str) -> bool:
    return SUBSCRIBER_ID.fullmatch(value) is not None


def check_subscriber_id(value: str) -> str:
    """`value` if it is a valid subscriber id; UnknownSubscriber (before any path is built) if not."""
    if not is_subscriber_id(value):
        raise UnknownSubscriber(f"{quoted(value, 40)} is not a subscriber id: an id is {ID_RULE} (e.g. alice)")
    return value


# The version of a subscriber that does not exist: `save(s, expected_version=ABSENT)` only creates.
ABSENT = ""


@dataclass(frozen=True, slots=True)
class Versioned:
    """A subscriber and the version of the stored record it came from (for compare-and-swap writes)."""

    subscriber: Subscriber
    version: str


@dataclass(frozen=True, slots=True)
class LoadedSubscribers:
    """Every subscriber that loaded, and one error per subscriber that did not."""

    subscribers: tuple[Subscriber, ...]
    errors: tuple[ProfileError, ...]


class SubscriberRepository(Protocol):
    """Read and write subscribers; every method checks the id first.

    Reads: `load_all` never raises for one bad subscriber (it is in `errors`); `get`
    raises UnknownSubscriber or ProfileError. Writes validate as loading does, so a
    saved subscriber always loads back equal. A missing store of subscribers is a
    ConfigError from any method.
    """

    # config.yaml's `schedule`: what a subscriber without one of their own follows (and is never written).
    default_schedule: Schedule

    @property
    def location(self) -> str:
        """Where the subscribers are kept, for messages such as "no subscribers in <location>"."""
        ...

    def load_all(self) -> LoadedSubscribers: ...

    def count(self) -> int:
        """How many subscribers there are, good or bad, without reading them: cheap, for sizing a run."""
        ...

    def get(self, subscriber_id: str) -> Subscriber: ...

    def read(self, subscriber_id: str) -> Versioned:
        """The subscriber and its version, for a later `save(..., expected_version=...)`."""
        ...

    def save(self, subscriber: Subscriber, *, expected_version: str | None = None) -> Subscriber:
        """Create or replace the subscriber; returns it as `get` will now return it.

        With `expected_version`, EditConflict unless the record is still that version
        (ABSENT: only create)."""
        ...

    def update(self, subscriber_id: str, change: Callable[[Subscriber], Subscriber], *,
               expected_version: str | None = None) -> Subscriber:
        """Apply `change` to the subscriber as stored now and save it, with no other writer in between."""
        ...

    def set_status(self, subscriber_id: str, status: SubscriberStatus) -> Subscriber: ...

    def remove(self, subscriber_id: str) -> None: ...


# files.py uses the names above, so it is imported once they exist.
from .files import FileSubscribers, fingerprint, load_one, load_subscriber_file, load_subscribers  # noqa: E402

__all__ = [
    "ABSENT",
    "ID_RULE",
    "SUBSCRIBER_ID",
    "FileSubscribers",
    "LoadedSubscribers",
    "SubscriberRepository",
    "Versioned",
    "check_subscriber_id",
    "fingerprint",
    "is_subscriber_id",
    "load_one",
    "load_subscriber_file",
    "load_subscribers",
]
