"""Reads and validates config.yaml; every error names the file, the key and the fix.

Relative paths in the config are resolved against the config file's folder, so
`newsletter --config /etc/newsletter/config.yaml` works from any directory.
Secrets never live in the file: the SMTP password and the signing key come from
environment variables named here.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError

DEFAULT_CONFIG = Path("config.yaml")
SECRET_KEY_ENV = "NEWSLETTER_SECRET_KEY"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class PagesSettings(_Strict):
    inbox: Path = Path("var/inbox")
    processed: Path = Path("var/processed")
    quarantine: Path = Path("var/quarantine")


class SenderSettings(_Strict):
    name: str = "Paper Digest"
    address: str = "digest@localhost"

    @field_validator("address")
    @classmethod
    def _looks_like_address(cls, value: str) -> str:
        if "@" not in value or any(c in value for c in " \r\n<>"):
            raise ValueError('must be a plain address such as "digest@example.org"')
        return value


class DeliverySettings(_Strict):
    method: Literal["outbox", "smtp"] = "outbox"
    outbox: Path = Path("var/outbox")


class SmtpSettings(_Strict):
    host: str = "localhost"
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["none", "starttls", "ssl"] = "starttls"
    username: str | None = None
    password_env: str = "NEWSLETTER_SMTP_PASSWORD"
    timeout: float = Field(default=30.0, gt=0)
    ca_file: Path | None = None  # a private CA for a self-hosted relay
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
    # Below this cosine similarity a paper is not worth an email.
    min_score: float = Field(default=0.05, ge=0.0, le=1.0)
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
    store: Path = Path("var/newsletter.sqlite3")
    pages: PagesSettings = PagesSettings()
    subscribers: Path = Path("subscribers")
    templates: Path | None = None  # None: the templates shipped with newsletter
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
    def store_path(self) -> Path:
        return self.resolve(self.settings.store)

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
    """Load config.yaml (default ./config.yaml); a missing default file means built-in defaults."""
    if path is None:
        if not DEFAULT_CONFIG.exists():
            return Config(Settings(), None)
        path = DEFAULT_CONFIG
    path = Path(path).resolve()
    data = read_yaml_mapping(path, ConfigError)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(path, exc, Settings)) from None
    return Config(settings, path)


def config_from_mapping(data: dict[str, Any], base: Path) -> Config:
    """Build a Config from a mapping, as if it were a file in `base` (used by tests and tools)."""
    path = base / "config.yaml"
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(path, exc, Settings)) from None
    return Config(settings, path)


def read_yaml_mapping(path: Path, error: type[Exception]) -> dict[str, Any]:
    """Parse a YAML file that must hold a mapping; syntax errors keep YAML's line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot be read ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{path}{where}: not valid YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{path}: must be a mapping of keys to values, got a {type(data).__name__}")
    return data


def describe_validation_error(path: Path, exc: ValidationError, model: type[BaseModel]) -> str:
    """Turn pydantic's errors into lines of `file: key: problem (fix)` a person can act on."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        lines.append(f"{path}: {key}: {_explain(err, model)}")
    return "\n".join(lines)


def _explain(err: Any, model: type[BaseModel]) -> str:
    kind = err["type"]
    got = err.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, err["loc"][:-1])
        close = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
        return f"unknown key{guess}{hint}. Remove it or fix its spelling"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"must be one of {expected}, got {got!r}"
    if kind == "missing":
        return "is required; add it"
    if kind == "value_error":
        return f"{err['msg'].removeprefix('Value error, ')}, got {got!r}"
    return f"{err['msg'].lower()}, got {got!r}"


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        field_info = getattr(current, "model_fields", {}).get(part)
        if field_info is None:
            return []
        current = field_info.annotation
    return sorted(getattr(current, "model_fields", {}))
