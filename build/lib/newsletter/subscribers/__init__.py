"""Where subscribers live: the SubscriberRepository contract, subscriber ids, and the YAML-folder backend.

Reads and writes nothing itself; `files.FileSubscribers` reads and writes
subscribers/ID.yaml. The preference centre and a SQL backend (later) implement
the same contract, so callers never build a subscriber's path themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from ..errors import ProfileError, UnknownSubscriber
from ..models import Subscriber, SubscriberStatus
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

    @property
    def location(self) -> str:
        """Where the subscribers are kept, for messages such as "no subscribers in <location>"."""
        ...

    def load_all(self) -> LoadedSubscribers: ...

    def get(self, subscriber_id: str) -> Subscriber: ...

    def save(self, subscriber: Subscriber) -> Subscriber:
        """Create or replace the subscriber; returns it as `get` will now return it."""
        ...

    def set_status(self, subscriber_id: str, status: SubscriberStatus) -> Subscriber: ...

    def remove(self, subscriber_id: str) -> None: ...


# files.py uses the names above, so it is imported once they exist.
from .files import FileSubscribers, load_one, load_subscriber_file, load_subscribers  # noqa: E402

__all__ = [
    "ID_RULE",
    "SUBSCRIBER_ID",
    "FileSubscribers",
    "LoadedSubscribers",
    "SubscriberRepository",
    "check_subscriber_id",
    "is_subscriber_id",
    "load_one",
    "load_subscriber_file",
    "load_subscribers",
]
