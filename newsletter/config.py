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
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .models import WEEKDAYS, Schedule
from .validation import (
    CONFIG_LIMITS,
    check_clock,
    check_email,
    check_timezone,
    describe_validation_error,
    read_yaml_mapping,
)

DEFAULT_CONFIG = Path("config.yaml")
SECRET_KEY_ENV = "NEWSLETTER_SECRET_KEY"


# YAML has no path type: a path field takes the string as written (strict mode would refuse it).
FilePath = Annotated[Path, Field(strict=False)]
# Database URLs `store` accepts besides a plain path (store/backends.py opens them).
STORE_URL_SCHEMES = ("sqlite://", "postgresql://", "postgresql+")


class _Strict(BaseModel):
    # strict: `max_papers: true` or `min_score: "0.1"` is a mistake to report, not a value to coerce.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PagesSettings(_Strict):
    inbox: FilePath = Path("var/inbox")
    processed: FilePath = Path("var/processed")
    quarantine: FilePath = Path("var/quarantine")
    # How often the daemon looks in the inbox.
    poll_seconds: int = Field(default=60, ge=1, le=86_400)


# "90s", "30m", "1h", "1d" or a sum such as "1h30m".
INTERVAL = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
MIN_INTERVAL = timedelta(minutes=1)  # be polite to the sites we read


def parse_interval(text: str) -> timedelta:
    """`1h30m` -> 90 minutes; ValueError with the expected shape otherwise."""
    match = INTERVAL.match(text.strip().lower())
    if not text.strip() or match is None:
        raise ValueError('must look like "30m", "1h", "1d" or "1h30m"')
    parts = {unit: int(value or 0) for unit, value in match.groupdict().items()}
    interval = timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    if interval < MIN_INTERVAL:
        raise ValueError("must be at least 1m: fetching a site more often than once a minute is rude")
    return interval


class UrlSourceSettings(_Strict):
    url: str
    every: str = "1h"

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError('must be an http(s) URL such as "https://example.org/papers.html"')
        return value.strip()

    @field_validator("every")
    @classmethod
    def _interval(cls, value: str) -> str:
        parse_interval(value)
        return value

    @property
    def interval(self) -> timedelta:
        return parse_interval(self.every)


class SourcesSettings(_Strict):
    """Pages fetched from URLs; `sources:` may also be just the list of URLs."""

    urls: list[UrlSourceSettings] = []
    max_bytes: int = Field(default=10_000_000, ge=1_000, le=1_000_000_000)  # a body past this is refused
    timeout: float = Field(default=30.0, gt=0, le=600)  # seconds per connect or read
    retries: int = Field(default=2, ge=0, le=10)  # more tries after a 5xx, a timeout or a dropped connection
    retry_backoff: float = Field(default=1.0, ge=0, le=60)  # seconds before the first retry, doubled each time
    max_redirects: int = Field(default=5, ge=0, le=20)

    @model_validator(mode="before")
    @classmethod
    def _list_is_urls(cls, data: Any) -> Any:
        if isinstance(data, list):
            return {"urls": data}
        if not isinstance(data, dict):
            raise ValueError("must be a list of {url: ..., every: 1h} entries, or a mapping with urls: and limits")
        return data

    @field_validator("urls")
    @classmethod
    def _distinct(cls, value: list[UrlSourceSettings]) -> list[UrlSourceSettings]:
        seen: set[str] = set()
        for source in value:
            if source.url in seen:
                raise ValueError(f"must list each URL once ({source.url} is there twice)")
            seen.add(source.url)
        return value


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
    # Hard failures (5xx) in a row after which a subscriber is `bounced`: suppressed until reset.
    bounce_limit: int = Field(default=3, ge=1, le=100)
    # How long a worker's claim on a queued digest holds without progress; each send renews it. A worker
    # killed mid-batch leaves its claims to others once this has passed.
    lease_seconds: float = Field(default=300.0, ge=1, le=86_400)
    # Queued digests a worker claims at a time: small, so a slow batch never holds many for long.
    claim_batch: int = Field(default=20, ge=1, le=1000)
    # A run with at least this many digests to make ranks and renders them in a process of its own while
    # this one sends (starting it costs about 2 s); 0 keeps them in a thread.
    producer_process_from: int = Field(default=500, ge=0)


class SmtpSettings(_Strict):
    host: str = "localhost"
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["none", "starttls", "ssl"] = "starttls"
    username: str | None = None
    password_env: str = "NEWSLETTER_SMTP_PASSWORD"
    timeout: float = Field(default=30.0, gt=0)
    ca_file: FilePath | None = None  # a private CA for a self-hosted relay
    retries: int = Field(default=2, ge=0, le=10)
    # Runs that may try one message (4xx or a lost connection defers it, with growing waits) before it fails.
    max_attempts: int = Field(default=8, ge=1, le=50)
    # A cap on messages per second (a relay's or provider's limit); unset sends as fast as the server answers.
    max_per_second: float | None = Field(default=None, gt=0, le=10_000)
    # SMTP sessions sending side by side (a relay that accepts several); max_per_second caps them together.
    connections: int = Field(default=1, ge=1, le=10)

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


class WebSettings(_Strict):
    """`newsletter serve`: the preference centre and the operator's preview."""

    host: str = "127.0.0.1"  # loopback by default: put a TLS reverse proxy in front to serve base_url
    port: int = Field(default=8000, ge=0, le=65535)  # 0: any free port (tests)
    # The operator's /preview pages answer only on loopback, unless this variable holds a token
    # (then they answer to `Authorization: Bearer <token>` only, from anywhere).
    admin_token_env: str = "NEWSLETTER_ADMIN_TOKEN"
    # Vote and unsubscribe POSTs allowed per link per minute.
    rate_limit: int = Field(default=10, ge=1, le=1000)

    def admin_token(self) -> str | None:
        return os.environ.get(self.admin_token_env) or None


class DkimSettings(_Strict):
    """Optional DKIM signing: the key's public half is published as a TXT record at selector._domainkey.domain."""

    domain: str
    selector: str
    private_key_file: FilePath

    @field_validator("domain", "selector")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not value or not all(part and part.replace("-", "").isalnum() and part.isascii()
                                for part in value.split(".")):
            raise ValueError('must be DNS labels such as "example.org" or "digest2026"')
        return value.lower()


class ScheduleSettings(_Strict):
    """Defaults for every subscriber file's `schedule`, and how `newsletter run` keeps to them."""

    frequency: Literal["daily", "weekdays", "weekly"] = "daily"
    day: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "mon"  # for weekly
    time: str = "07:00"
    timezone: str = "UTC"
    # A digest whose slot passed while the daemon was down still goes out (once) within this many hours.
    grace_hours: int = Field(default=12, ge=1, le=24 * 7)
    # How often `newsletter run` rereads the subscriber files for added, edited or removed schedules.
    reconcile_seconds: int = Field(default=60, ge=1, le=86_400)

    @field_validator("time")
    @classmethod
    def _clock(cls, value: str) -> str:
        check_clock(value)
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_timezone(value)

    def default_schedule(self) -> Schedule:
        """The schedule of a subscriber file that sets none of its own."""
        return Schedule(self.frequency, check_clock(self.time), self.timezone, WEEKDAYS.index(self.day))


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
    web: WebSettings = WebSettings()
    sources: SourcesSettings = SourcesSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    dkim: DkimSettings | None = None

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> Settings:
        # One send can take up to a timeout per try, plus the retry on a fresh session; a lease shorter
        # than that runs out under a live worker, and another worker would send the same message again.
        floor = 2 * self.smtp.timeout
        if self.delivery.method == "smtp" and self.delivery.lease_seconds < floor:
            raise ValueError(
                f"delivery.lease_seconds ({self.delivery.lease_seconds:g}) must be at least twice smtp.timeout "
                f"({self.smtp.timeout:g} s), or a slow send outlives its claim and another worker sends it "
                f"again: set delivery.lease_seconds to {floor:g} or more, or lower smtp.timeout")
        return self

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
