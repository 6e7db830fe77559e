"""Exceptions raised by newsletter; the CLI prints any NewsletterError as `error: ...`.

NewsletterError
├── ConfigError          config.yaml is missing, malformed or invalid
├── ProfileError         a subscribers/*.yaml file is malformed or invalid
├── PageFormatError      a page cannot be parsed (carries the file and line)
├── StoreError           the database is unusable (e.g. from a newer release)
├── DeliveryError        a mailer cannot connect, authenticate or send
└── UnknownSubscriber    a command named a subscriber that does not exist
"""

from __future__ import annotations

from pathlib import Path


class NewsletterError(Exception):
    """Base class for every error a user can act on."""


class ConfigError(NewsletterError):
    """config.yaml is missing, malformed or invalid."""


class ProfileError(NewsletterError):
    """A subscriber file is malformed or invalid."""


class PageFormatError(NewsletterError):
    """A page cannot be parsed; `path` and `line` say where."""

    def __init__(self, path: Path | str, line: int | None, problem: str) -> None:
        self.path = Path(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {problem}")


class StoreError(NewsletterError):
    """The database cannot be used as it is."""


class DeliveryError(NewsletterError):
    """A mailer could not connect, authenticate or send."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        self.transient = transient
        super().__init__(message)


class UnknownSubscriber(NewsletterError):
    """A command named a subscriber id with no subscribers/ID.yaml file."""
