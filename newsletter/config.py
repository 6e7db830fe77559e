"""Reads and validates config.yaml (never writes it); every error names the file, the key and the fix.

Relative paths in the config are resolved against the config file's folder, so
`newsletter --config /etc/newsletter/config.yaml` works from any directory.
Validation is strict: a quoted number or `yes` where a boolean belongs is an error,
not a guess. The file is read within `CONFIG_LIMITS` (see validation.py).
Secrets never live in the file: the SMTP password and the signing key come from
environment variables named here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError
from .text import quoted
from .validation import CONFIG_LIMITS, check_email, describe_validation_error, read_yaml_mapping

DEFAULT_CONFIG = Path("config.yaml")
SECRET_KEY_ENV = "NEWSLETTER_SECRET_KEY"


# YAML has no path type: a path field takes the string as written (strict mode would refuse it).
FilePath = Annotated[Path, Field(strict=False)]
# Database URLs `store` accepts besides a plain path; PostgreSQL is validated now and served by a later store.
STORE_URL_SCHEMES = ("sqlite://", "postgresql://", "postgresql+")


class _Strict(BaseModel):
    # strict: `max_papers: true` or `min_score: "0.1"` is a mistake to report, not a value to coerce.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PagesSettings(_Strict):
    inbox: FilePath = Path("var/inbox")
    processed: FilePath = Path("var/processed")
    quarantine: FilePath = Path("var/quarantine")


class SenderSettings(_Strict):
    name: str = "Paper Digest"
    address: str = "digest@localhost"

    @field_validator("address")
    @classmethod
    def _plain_address(cls, value: str) -> str:
        return check_email(value)


class DeliverySettings(_Strict):
    method: Literal["outbox", "smtp"] = "outbox"
    outbox: FilePath = Path("var/outbox")


class SmtpSettings(_Strict):
    host: str = "localhost"
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["none", "starttls", "ssl"] = "starttls"
    username: str | None = None
    password_env: str = "NEWSLETTER_SMTP_PASSWORD"
    timeout: float = Field(default=30.0, gt=0)
    ca_file: FilePath | None = None  # a private CA for a self-hosted relay
    retries: int = Field(default=2, ge=0, le=10)

    def password(self) -> str | None:
        """The password from the environment, or None when no username is set."""
        if self.username is None:
            return None
        value = os.environ.get(self.password_env)
        if value is None:
            raise ConfigError(
                f"smtp.username is set but the environment variable {self.password_env} "
                "(smtp.password_env) is not: export it with the SMTP password"
            )
        return value


class DigestSettings(_Strict):
    max_papers: int = Field(default=10, ge=1, le=100)
    lookback_days: int = Field(default=7, ge=1, le=365)
    # Below this score a paper is not worth an email. With the default (hybrid) ranker scores are
    # calibrated per subscriber: 0.05 is about 0.3 standard deviations above a typical recent paper,
    # 0.5 two. With the TF-IDF fallback it is a cosine similarity.
    min_score: float = Field(default=0.05, ge=0.0, le=1.0)
    # How much a digest trades relevance for variety (MMR): 0 ranks by score alone, 1 mostly by novelty.
    # Near-duplicate papers never both appear, whatever the strength.
    diversity: float = Field(default=0.2, ge=0.0, le=1.0)
    # Send an email saying "nothing today" instead of skipping the subscriber.
    send_empty: bool = False
    # Where a title links when the page gave no URL for the paper; {query} is the quoted title.
    search_url: str = "https://arxiv.org/search/?searchtype=title&query={query}"

    @field_validator("search_url")
    @classmethod
    def _has_placeholder(cls, value: str) -> str:
        if "{query}" not in value:
            raise ValueError('must contain "{query}", where the paper title goes')
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value


class Settings(_Strict):
    store: str = "var/newsletter.sqlite3"  # a file path or a database URL (sqlite:///path)
    pages: PagesSettings = PagesSettings()
    subscribers: FilePath = Path("subscribers")
    templates: FilePath | None = None  # None: the templates shipped with newsletter
    sender: SenderSettings = SenderSettings()
    base_url: str = "http://localhost:8000"
    list_id: str = "digest.newsletter.localhost"
    delivery: DeliverySettings = DeliverySettings()
    smtp: SmtpSettings = SmtpSettings()
    digest: DigestSettings = DigestSettings()

    @field_validator("base_url")
    @classmethod
    def _is_http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError('must be an http(s) URL such as "https://digest.example.org"')
        return value.rstrip("/")

    @field_validator("store")
    @classmethod
    def _path_or_database_url(cls, value: str) -> str:
        if not value.strip():
            raise ValueError('must be a file path such as "var/newsletter.sqlite3" or a URL such as "sqlite:///path"')
        if "://" in value and not value.startswith(STORE_URL_SCHEMES):
            raise ValueError("must be a file path or a database URL starting with sqlite:/// "
                             "(or postgresql://)")
        if value.startswith("sqlite://") and not _sqlite_file(value):
            raise ValueError('needs a file after sqlite:/// such as "sqlite:///var/newsletter.sqlite3" '
                             "(an in-memory database would forget everything after each command)")
        return value


def _sqlite_file(url: str) -> str:
    """The file part of a sqlite:/// URL (sqlite:////abs/path is absolute, sqlite:///rel/path is relative)."""
    rest = url.removeprefix("sqlite://")
    if not rest.startswith("/"):  # sqlite://host/... names no file SQLite could open
        return ""
    file = rest.removeprefix("/").partition("?")[0]
    return "" if file == ":memory:" else file


@dataclass(frozen=True, slots=True)
class Config:
    """Validated settings with every path made absolute."""

    settings: Settings
    path: Path | None  # the file it came from, None for the built-in defaults

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def resolve(self, value: Path) -> Path:
        return value if value.is_absolute() else (self.base_dir / value)

    @property
    def store_path(self) -> Path | None:
        """The SQLite file, resolved against the config's folder; None for a server database."""
        store = self.settings.store
        if "://" not in store:
            return self.resolve(Path(store))
        if store.startswith("sqlite://"):
            return self.resolve(Path(_sqlite_file(store)))
        return None

    @property
    def store_url(self) -> str:
        """The store as a database URL: `sqlite:///<absolute path>` for SQLite, the URL as written otherwise."""
        path = self.store_path
        if path is None:
            return self.settings.store
        query = self.settings.store.partition("?")[2] if self.settings.store.startswith("sqlite://") else ""
        return f"sqlite:///{path}" + (f"?{query}" if query else "")

    def require_store_path(self) -> Path:
        """The SQLite file, or ConfigError while only SQLite stores can be opened."""
        path = self.store_path
        if path is None:
            raise ConfigError(f"{self.path or 'config'}: store: {quoted(self.settings.store)} is not a SQLite "
                              "database, the only kind this release opens; set store to a file path")
        return path

    @property
    def inbox(self) -> Path:
        return self.resolve(self.settings.pages.inbox)

    @property
    def processed(self) -> Path:
        return self.resolve(self.settings.pages.processed)

    @property
    def quarantine(self) -> Path:
        return self.resolve(self.settings.pages.quarantine)

    @property
    def subscribers_dir(self) -> Path:
        return self.resolve(self.settings.subscribers)

    @property
    def outbox(self) -> Path:
        return self.resolve(self.settings.delivery.outbox)


def load_config(path: Path | str | None = None) -> Config:
    """Load config.yaml (default ./config.yaml); ConfigError when there is none, rather than guess a store."""
    if path is None:
        if not DEFAULT_CONFIG.exists():
            # Running with built-in defaults here would quietly create an empty database in this folder.
            raise ConfigError(f"no config.yaml found in the current folder ({Path.cwd()}): create one "
                              "(an empty config.yaml uses the defaults; see README, Configuration) "
                              "or point --config at one")
        path = DEFAULT_CONFIG
    path = Path(path).resolve()
    return _validated(read_yaml_mapping(path, ConfigError, CONFIG_LIMITS), path)


def config_from_mapping(data: dict[str, Any], base: Path) -> Config:
    """Build a Config from a mapping, as if it were a file in `base`; `config_from_mapping({}, base)` is the defaults.

    Used by tests and tools that want the defaults explicitly, without a file.
    """
    return _validated(data, base / "config.yaml")


def _validated(data: dict[str, Any], path: Path) -> Config:
    try:
        return Config(Settings.model_validate(data), path)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(path, exc, Settings)) from None
