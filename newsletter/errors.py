"""Exceptions raised by newsletter; the CLI prints any NewsletterError as `error: ...` and exits 1.

NewsletterError              anything a user can act on; anything else is a bug
├── ConfigError              config.yaml is missing, malformed or invalid
├── ProfileError             a subscribers/*.yaml file is malformed or invalid
│   ├── UnknownSubscriber    a command named a subscriber that does not exist
│   └── EditConflict         a subscriber file changed between reading it and writing an edit
├── PageFormatError          a page cannot be parsed (carries the file or URL, and the line)
├── SourceError              a page cannot be read or fetched (permissions, a folder, a broken link)
├── StoreError               the database is unusable (e.g. from a newer release)
│   ├── StoreBusy            another process holds the database longer than we wait
│   └── RunLocked            another run holds the lock this command needs
├── TemplateError            a digest template cannot be compiled or rendered
├── ModelUnavailable         the embedding model is missing, corrupted or cannot run (ranking falls back to TF-IDF)
├── DeliveryError            a mailer cannot connect, authenticate or send
│   └── ServerUnavailable    the mail server is down or stalled: stop the run, serve the rest next time
└── BadToken                 a signed link was altered, truncated, signed with another key or for another purpose
"""

from __future__ import annotations

from pathlib import Path


class NewsletterError(Exception):
    """Base class for every error a user can act on."""


class ConfigError(NewsletterError):
    """config.yaml is missing, malformed or invalid."""


class ProfileError(NewsletterError):
    """A subscriber file is malformed or invalid."""


class UnknownSubscriber(ProfileError):
    """A command named a subscriber id with no subscriber file."""


class EditConflict(ProfileError):
    """A subscriber file changed (by hand, the CLI or the web app) after the edit being saved was read."""


class PageFormatError(NewsletterError):
    """A page cannot be parsed; `origin` (a file path or a URL) and `line` say where."""

    def __init__(self, origin: Path | str, line: int | None, problem: str) -> None:
        # Kept as written: Path() would fold a URL's "//" and name a page that does not exist.
        self.origin = str(origin)
        self.line = line
        self.problem = problem
        where = f"{self.origin}:{line}" if line is not None else self.origin
        super().__init__(f"{where}: {problem}")

    @property
    def path(self) -> Path:
        """The origin as a path, for a page that came from a file."""
        return Path(self.origin)


class SourceError(NewsletterError):
    """A page cannot be read or fetched; `where` names the file or URL."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


class StoreError(NewsletterError):
    """The database cannot be used as it is."""


class StoreBusy(StoreError):
    """Another process kept the database locked for longer than we wait."""


class RunLocked(StoreError):
    """Another run holds the lock this command needs."""


class TemplateError(NewsletterError):
    """A digest template cannot be compiled or rendered (bad MJML, unknown variable)."""


class ModelUnavailable(NewsletterError):
    """The embedding model or its tokenizer is missing, fails its sha256 check, or cannot be run."""


class DeliveryError(NewsletterError):
    """A mailer could not connect, authenticate or send."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        self.transient = transient
        super().__init__(message)


class ServerUnavailable(DeliveryError):
    """The mail server is down or stalled; the run stops and the next run serves who is left."""


class ProducerFailed(NewsletterError):
    """The process preparing a run's digests stopped before it was done: what it stored is queued, the rest
    is planned again by the next run."""


class BadToken(NewsletterError):
    """A link token was tampered with, truncated, signed with another key or for another purpose."""
