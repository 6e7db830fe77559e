"""Which papers are new to each subscriber, ranked into the Digest they would get now.

Reads the store (papers, ledger) and subscribers; writes nothing. `digest`,
`preview` and `subscribers` all plan through `plan_digests`, so a preview shows
exactly what a run would send at the same moment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .models import Digest, Paper, Subscriber
from .rank import Profile, Ranker, build_profile
from .store import Store

# The ranker's reference set (the IDF today) is the newest papers, whoever is in the run,
# so `preview alice` ranks exactly as `digest` will.
REFERENCE_PAPERS = 2000

RankerFactory = Callable[[Sequence[Paper]], Ranker]


@dataclass(frozen=True, slots=True)
class DigestPolicy:
    """The config's `digest` section as planning and delivery use it."""

    max_papers: int = 10
    lookback_days: int = 7
    min_score: float = 0.05
    send_empty: bool = False
    diversity: float = 0.0

    def wants_email(self, digest: Digest) -> bool:
        return bool(digest.papers) or self.send_empty


@dataclass(frozen=True, slots=True)
class Window:
    """Which papers are new to a subscriber: those after their last digest, or within the lookback."""

    since: datetime  # the last digest, or now minus lookback_days; shown as "new since"
    after_batch: int | None  # the last digest's newest ingest batch; None for a subscriber who never had one

    def holds(self, paper: Paper) -> bool:
        if self.after_batch is not None:
            return paper.ingest_batch > self.after_batch
        return paper.first_seen > self.since


def plan_digests(store: Store, make_ranker: RankerFactory, policy: DigestPolicy,
                 subscribers: Sequence[Subscriber], now: datetime) -> tuple[Digest, ...]:
    """The digest each subscriber would get now, in the order given."""
    if not subscribers:
        return ()
    through = store.papers.newest_batch()  # papers committed after this wait for the next run
    windows = {s.id: window_for(store, policy, s, now) for s in subscribers}
    corpus = papers_in_play(store, list(windows.values()), through)
    ranker = make_ranker(store.papers.recent(until=now, limit=REFERENCE_PAPERS))
    profiles = {s.id: profile_of(store, s) for s in subscribers}
    ranker.prepare(list(profiles.values()), corpus)
    return tuple(
        digest_for(store, ranker, policy, corpus, s, profiles[s.id], windows[s.id], through, now)
        for s in subscribers
    )


def window_for(store: Store, policy: DigestPolicy, subscriber: Subscriber, now: datetime) -> Window:
    last = store.ledger.last_closed_window(subscriber.id)
    if last is not None:
        return Window(last.ended_at, last.through_batch)
    return Window(now - timedelta(days=policy.lookback_days), None)


def papers_in_play(store: Store, windows: Sequence[Window], through: int) -> list[Paper]:
    """Every paper some window holds, loaded in one query."""
    after = [w.after_batch for w in windows if w.after_batch is not None]
    since = [w.since for w in windows if w.after_batch is None]
    return store.papers.in_play(through, after_batch=min(after, default=None), since=min(since, default=None))


def profile_of(store: Store, subscriber: Subscriber) -> Profile:
    """The subscriber's file plus their "more / less like this" votes, as the ranker reads them."""
    votes = store.votes.for_subscriber(subscriber.id)
    voted = {p.id: p for p in store.papers.get([v.paper_id for v in votes])} if votes else {}
    more = [voted[v.paper_id] for v in votes if v.direction == "more" and v.paper_id in voted]
    less = [voted[v.paper_id] for v in votes if v.direction == "less" and v.paper_id in voted]
    return build_profile(subscriber, [store.papers.find_by_title(title) for title in subscriber.liked],
                         voted_up=more, voted_down=less)


def digest_for(store: Store, ranker: Ranker, policy: DigestPolicy, corpus: Sequence[Paper], subscriber: Subscriber,
               profile: Profile, window: Window, through: int, now: datetime) -> Digest:
    already_sent = store.ledger.delivered_paper_ids(subscriber.id)
    candidates = [p for p in corpus if window.holds(p) and p.id not in already_sent]
    ranking = ranker.rank(profile, candidates, max_papers=subscriber.max_papers or policy.max_papers,
                          min_score=policy.min_score, diversity=policy.diversity)
    return Digest(subscriber=subscriber, papers=ranking.chosen, issued_at=now, window_start=window.since,
                  window_end=now, through_batch=through, candidate_count=ranking.candidate_count)
