"""Domain types passed between the pipeline stages; plain frozen dataclasses, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from datetime import time as dtime
from enum import StrEnum
from pathlib import Path
from typing import Literal

LinkKind = Literal["paper", "code", "project", "model", "data"]
SubscriberStatus = Literal["active", "paused", "unsubscribed"]
VoteDirection = Literal["more", "less"]
Frequency = Literal["daily", "weekdays", "weekly"]
# What a run did for one subscriber, as `newsletter digest` prints it.
Outcome = Literal["sent", "failed", "not sent", "nothing new", "would send", "paused", "unsubscribed", "error",
                  "deferred", "already done", "bounced", "queued"]  # queued: planned, for a worker to send
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class DeliveryStatus(StrEnum):
    """Where a digest's delivery stands; store/ledger.py owns every transition.

    queued -> sending -> sent | deferred | failed; deferred -> sending again when due.
    A message is stored (bytes and Message-ID) before it is queued, so whatever a crash
    interrupts is sent again, byte for byte, by the next run: at least once.
    """

    QUEUED = "queued"  # rendered and stored; not yet handed to the mailer
    SENDING = "sending"  # handed to the mailer; still `sending` after a crash means "maybe sent": sent again
    SENT = "sent"  # the server (or the outbox) accepted it
    DEFERRED = "deferred"  # a 4xx or a lost connection: tried again at `next_attempt_at`
    FAILED = "failed"  # refused for good (5xx, or out of attempts); its papers come round again



@dataclass(frozen=True, slots=True)
class Schedule:
    """When a subscriber's digest goes out: at `time` local to `timezone`, on the days `frequency` names."""

    frequency: Frequency = "daily"
    time: dtime = dtime(7, 0)
    timezone: str = "UTC"  # an IANA name, checked when the file is read
    day: int = 0  # weekly only: 0 = Monday .. 6 = Sunday

    def describe(self) -> str:
        when = {"daily": "daily", "weekdays": "on weekdays", "weekly": f"every {WEEKDAYS[self.day]}"}[self.frequency]
        clock = self.time.isoformat(timespec="seconds" if self.time.second else "minutes")
        return f"{when} at {clock} {self.timezone}"


@dataclass(frozen=True, slots=True)
class Link:
    """A URL found in an abstract, classified so the email can label it."""

    url: str
    kind: LinkKind


@dataclass(frozen=True, slots=True)
class ParsedPaper:
    """One title/abstract pair as it stands on a page."""

    title: str
    abstract: str
    line: int  # 1-based line of the title in the page file
    position: int  # 1-based order of the paper on the page
    links: tuple[Link, ...] = ()


@dataclass(frozen=True, slots=True)
class Page:
    """A parsed page: its date (year resolved) and its papers, in order."""

    name: str
    sha256: str
    date: date
    papers: tuple[ParsedPaper, ...]


@dataclass(frozen=True, slots=True)
class PageOutcome:
    """What storing one page changed."""

    already_ingested: bool
    new_papers: int
    duplicates: int  # entries that matched a paper stored before (or earlier on the same page)


@dataclass(frozen=True, slots=True)
class Sighting:
    """Where a paper was seen: which page, its date and the paper's position on it."""

    page_name: str
    page_date: date
    position: int


@dataclass(frozen=True, slots=True)
class Paper:
    """A distinct paper as stored; `first_seen` is when this install first ingested it."""

    id: int
    title: str
    abstract: str
    first_seen: datetime
    links: tuple[Link, ...] = ()
    sightings: tuple[Sighting, ...] = ()
    ingest_batch: int = 0  # the ingest that stored it; digest windows count in batches (store/schema.py)

    @property
    def url(self) -> str | None:
        """The paper's own URL when its page gave one (e.g. an arXiv link)."""
        return next((link.url for link in self.links if link.kind == "paper"), None)

    @property
    def code_links(self) -> tuple[Link, ...]:
        """Links to code, project pages, models and data, in page order."""
        return tuple(link for link in self.links if link.kind != "paper")


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A validated subscribers/ID.yaml."""

    id: str
    email: str
    name: str
    topics: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    liked: tuple[str, ...] = ()
    max_papers: int | None = None
    status: SubscriberStatus = "active"
    source: Path | None = None
    schedule: Schedule = field(default_factory=Schedule)

    def __reduce__(self) -> tuple[type[Subscriber], tuple[object, ...]]:
        # Pickled as its fields: a producer process is handed thousands, and the default way (a state
        # dict per object) took twice as long to read back.
        return (Subscriber, tuple(getattr(self, name) for name in _SUBSCRIBER_FIELDS))


_SUBSCRIBER_FIELDS = tuple(f.name for f in fields(Subscriber))


@dataclass(frozen=True, slots=True)
class Vote:
    """A subscriber's "more / less like this" about one paper; the newest vote per paper counts."""

    subscriber_id: str
    paper_id: int
    title: str
    direction: VoteDirection
    voted_at: datetime


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a paper was chosen: the profile entries it matched and the terms that carried it."""

    topics: tuple[str, ...] = ()
    liked: tuple[str, ...] = ()
    terms: tuple[str, ...] = ()
    voted: tuple[str, ...] = ()  # papers the subscriber asked for "more like this" of

    def summary(self) -> str:
        """One human sentence, used by both the HTML and the text part."""
        parts = []
        if self.voted:
            parts.append("because you liked " + ", ".join(f"“{t}”" for t in self.voted))
        if self.topics:
            parts.append("matches your topics " + ", ".join(f"“{t}”" for t in self.topics))
        if self.liked:
            parts.append("is similar to " + ", ".join(f"“{t}”" for t in self.liked))
        if self.terms:
            parts.append("key terms: " + ", ".join(self.terms))
        if not parts:
            return "Chosen as the closest match to your profile."
        text = "; ".join(parts)
        return text[0].upper() + text[1:] + "."


@dataclass(frozen=True, slots=True)
class ScoredPaper:
    paper: Paper
    score: float
    reason: Reason = field(default_factory=Reason)


@dataclass(frozen=True, slots=True)
class Digest:
    """What one subscriber gets in one issue: papers in rank order, best first."""

    subscriber: Subscriber
    papers: tuple[ScoredPaper, ...]
    issued_at: datetime
    window_start: datetime  # shown as "new since": the previous digest, or the lookback for a first one
    window_end: datetime  # when this digest was planned
    through_batch: int  # the newest ingest batch in play; the next digest starts after it
    candidate_count: int  # how many papers were considered before the cut
    slot: date | None = None  # the subscriber's local date this digest is for (None: a preview)
    late: bool = False  # sent well after its slot (the service was down): the intro says so


@dataclass(frozen=True, slots=True)
class PaperVoteLinks:
    """Signed "more / less like this" URLs for one paper in one subscriber's email."""

    more: str
    less: str


@dataclass(frozen=True, slots=True)
class SubscriberLinks:
    """Signed, per-subscriber URLs placed in every email."""

    manage: str
    unsubscribe: str  # the page a person opens
    one_click: str  # the RFC 8058 POST target for List-Unsubscribe
    unsubscribe_mailto: str
    view: str = ""  # "view in browser"; empty where no message id is known
    votes: Mapping[int, PaperVoteLinks] = field(default_factory=dict)  # by paper id


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    preheader: str
    html: str
    text: str
