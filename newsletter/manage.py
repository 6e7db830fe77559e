"""What a person (CLI) or the preference centre does to one subscriber: add, edit, pause, resume, remove, show.

Reads and writes subscriber files through the SubscriberRepository (round-trip,
locked, validated) and reads/writes votes through the store; never the config.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from .errors import ProfileError
from .models import Paper, Subscriber, SubscriberStatus, Vote
from .pipeline import RunContext
from .store import DigestSummary
from .subscribers import ABSENT, check_subscriber_id
from .subscribers.edits import Edit, clean


def add_subscriber(ctx: RunContext, subscriber_id: str, *, email: str, name: str = "",
                   topics: tuple[str, ...] = ()) -> Subscriber:
    """Create subscribers/ID.yaml; EditConflict if the id is taken, ProfileError naming the field if invalid."""
    check_subscriber_id(subscriber_id)
    new = Subscriber(id=subscriber_id, email=email, name=name or subscriber_id,
                     topics=tuple(dict.fromkeys(map(clean, topics))))
    return ctx.subscribers.save(new, expected_version=ABSENT)


def edit_subscriber(ctx: RunContext, subscriber_id: str, edit: Edit, *,
                    expected_version: str | None = None) -> Subscriber:
    default = ctx.subscribers.default_schedule
    return ctx.subscribers.update(subscriber_id, lambda s: edit.apply(s, default), expected_version=expected_version)


def set_status(ctx: RunContext, subscriber_id: str, status: SubscriberStatus, *,
               expected_version: str | None = None, now: datetime | None = None) -> Subscriber:
    """Pause, resume or unsubscribe; leaving `active` also takes back digests already queued."""
    changed = ctx.subscribers.update(subscriber_id, lambda s: replace(s, status=status),
                                     expected_version=expected_version)
    if status != "active":
        ctx.store.ledger.withdraw(subscriber_id, f"the subscriber is {status}", now or datetime.now(UTC))
    return changed


def remove_subscriber(ctx: RunContext, subscriber_id: str, now: datetime | None = None) -> int:
    """Delete the subscriber's file, their queued digests and their votes; how many votes went with them."""
    ctx.subscribers.remove(subscriber_id)
    ctx.store.ledger.withdraw(subscriber_id, "the subscriber was removed", now or datetime.now(UTC))
    return ctx.store.votes.forget_subscriber(subscriber_id)


def record_vote(ctx: RunContext, subscriber_id: str, paper_id: int, direction: str, now: datetime) -> Vote:
    """A vote from a signed link; only for a subscriber who still exists."""
    ctx.subscribers.get(subscriber_id)
    if direction not in ("more", "less"):
        raise ProfileError(f"a vote is 'more' or 'less', not {direction!r}")
    return ctx.store.votes.record(subscriber_id, paper_id, direction, now)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class LikedPaper:
    """A `liked` entry and the stored paper it names, matched as the ranker matches it (None: none yet)."""

    title: str
    paper: Paper | None


def liked_papers(ctx: RunContext, titles: tuple[str, ...]) -> tuple[LikedPaper, ...]:
    # An unmatched title still counts for ranking, as text; a later page may bring its paper.
    return tuple(LikedPaper(title, ctx.store.papers.find_by_title(title)) for title in titles)


def like_paper(ctx: RunContext, subscriber_id: str, title: str) -> LikedPaper:
    """Add a liked paper by title (as typed, like `edit --like`); which stored paper it names, if any."""
    edit_subscriber(ctx, subscriber_id, Edit(like=(title,)))
    (liked,) = liked_papers(ctx, (clean(title),))
    return liked


@dataclass(frozen=True, slots=True)
class SubscriberDetails:
    subscriber: Subscriber
    version: str
    digests: tuple[DigestSummary, ...]
    votes: tuple[Vote, ...]
    liked: tuple[LikedPaper, ...] = ()


def subscriber_details(ctx: RunContext, subscriber_id: str, *, digests: int = 5) -> SubscriberDetails:
    """Profile, status, the last digests, the votes and the liked papers (with their matches) of one subscriber."""
    current = ctx.subscribers.read(subscriber_id)
    return SubscriberDetails(current.subscriber, current.version,
                             tuple(ctx.store.ledger.recent_digests(subscriber_id, digests)),
                             tuple(ctx.store.votes.for_subscriber(subscriber_id)),
                             liked_papers(ctx, current.subscriber.liked))
