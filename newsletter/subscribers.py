"""Reads and validates subscribers/ID.yaml files into Subscriber records.

A bad file is reported with its path, the field and the fix, and never stops the
other subscribers from being loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .config import describe_validation_error, read_yaml_mapping
from .errors import ProfileError, UnknownSubscriber
from .models import Subscriber

SUBSCRIBER_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
# Deliberately loose: the SMTP server is the real judge. This catches typos and header injection.
EMAIL = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")


class SubscriberFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    email: str
    name: str = ""
    topics: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    liked: list[str] = Field(default_factory=list)
    max_papers: int | None = Field(default=None, ge=1, le=100)
    status: Literal["active", "paused", "unsubscribed"] = "active"

    @field_validator("email")
    @classmethod
    def _valid_email(cls, value: str) -> str:
        value = value.strip()
        if not EMAIL.match(value):
            raise ValueError('must be an email address such as "alice@example.org"')
        return value

    @field_validator("name")
    @classmethod
    def _one_line_name(cls, value: str) -> str:
        if "\n" in value or "\r" in value:
            raise ValueError("must be on one line")
        return value.strip()

    @field_validator("topics", "exclude", "liked")
    @classmethod
    def _clean_phrases(cls, values: list[str]) -> list[str]:
        cleaned = [" ".join(v.split()) for v in values]
        if any(not v for v in cleaned):
            raise ValueError("must not contain empty entries")
        return list(dict.fromkeys(cleaned))  # drop repeats, keep order

    @model_validator(mode="after")
    def _has_profile(self) -> SubscriberFile:
        if self.status == "active" and not (self.topics or self.liked):
            raise ValueError(
                "an active subscriber needs at least one entry under `topics` or `liked`; "
                'add e.g. topics: ["graph neural networks"]'
            )
        return self


@dataclass(frozen=True, slots=True)
class LoadedSubscribers:
    subscribers: tuple[Subscriber, ...]
    errors: tuple[ProfileError, ...]


def subscriber_path(folder: Path, subscriber_id: str) -> Path:
    return folder / f"{subscriber_id}.yaml"


def load_subscriber_file(path: Path) -> Subscriber:
    """Load one subscriber file; raise ProfileError naming the file, field and fix."""
    subscriber_id = path.stem
    if not SUBSCRIBER_ID.match(subscriber_id):
        raise ProfileError(
            f"{path}: the file name is the subscriber id and must be lower-case letters, digits, "
            "'.', '_' or '-' (e.g. alice.yaml)"
        )
    data = read_yaml_mapping(path, ProfileError)
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
        source=path,
    )


def load_subscribers(folder: Path) -> LoadedSubscribers:
    """Load every *.yaml in `folder`, sorted by id; bad files become errors, not exceptions."""
    if not folder.is_dir():
        return LoadedSubscribers((), (ProfileError(f"{folder}: subscribers folder not found"),))
    subscribers: list[Subscriber] = []
    errors: list[ProfileError] = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            subscribers.append(load_subscriber_file(path))
        except ProfileError as exc:
            errors.append(exc)
    return LoadedSubscribers(tuple(subscribers), tuple(errors))


def load_one(folder: Path, subscriber_id: str) -> Subscriber:
    path = subscriber_path(folder, subscriber_id)
    if not path.exists():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        hint = f"; known: {', '.join(known)}" if known else ""
        raise UnknownSubscriber(f"no subscriber {subscriber_id!r} ({path} does not exist{hint})")
    return load_subscriber_file(path)
