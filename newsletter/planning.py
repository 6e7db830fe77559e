"""Which papers are new to each subscriber, ranked into the Digest they would get now.

Reads the store (papers, ledger) and subscribers; writes nothing. `digest`,
`preview` and `subscribers` all plan through `plan_digests`, so a preview shows
exactly what a run would send at the same moment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from threadpoolctl import threadpool_limits

from .models import Digest, Paper, Subscriber
from .rank import Profile, Ranker, build_profile
from .rank.batch import BLOCK, RankRequest, rank_many
from .stage_clock import StageClock
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
    return tuple(iter_digests(store, make_ranker, policy, subscribers, now))


def iter_digests(store: Store, make_ranker: RankerFactory, policy: DigestPolicy,
                 subscribers: Sequence[Subscriber], now: datetime, clock: StageClock | None = None) -> Iterator[Digest]:
    """`plan_digests` one digest at a time, so a run can store and send the first while it ranks the rest;
    `clock` adds up the time spent ranking."""
    if not subscribers:
        return
    # One BLAS thread: a run's matrices are small (a block of 512 subscribers x a day's papers), and the
    # producer shares the machine with its own sending threads (and often the mail server): OpenBLAS's
    # second thread then spins waiting for a core, and a 1,000-subscriber run took 4 s more CPU with it.
    with threadpool_limits(limits=1, user_api="blas"):
        yield from _ranked_digests(store, make_ranker, policy, subscribers, now, clock or StageClock())


def _ranked_digests(store: Store, make_ranker: RankerFactory, policy: DigestPolicy,
                    subscribers: Sequence[Subscriber], now: datetime, clock: StageClock) -> Iterator[Digest]:
    through = store.papers.newest_batch()  # papers committed after this wait for the next run
    windows = windows_for(store, policy, subscribers, now)
    corpus = papers_in_play(store, list(windows.values()), through)
    # What each subscriber already has among this run's papers: one query for the run, not one each.
    sent = store.ledger.delivered_paper_ids_among([s.id for s in subscribers],
                                                  min((p.id for p in corpus), default=0)) if corpus else {}
    ranker = make_ranker(reference_papers(store, now))
    # Everyone at once, a block at a time: each block's papers are scored for all its subscribers as matrix
    # products (rank/batch.py), and its digests go on their way before the next block is ranked. Each
    # block's profiles are read (votes, liked papers) and prepared (vectorised, their phrase vectors read)
    # with it, not all before the first: for 10,000 subscribers that took 1.6 s before anything could be sent.
    in_window = _papers_by_window(corpus)
    with clock.timing("rank"):
        ranker.prepare([], corpus)  # the papers once; each block's profiles below
    for block in _blocks(subscribers):
        profiles = profiles_of(store, block)
        requests = [RankRequest(profiles[s.id], candidates_for(in_window(windows[s.id]), sent.get(s.id)),
                                s.max_papers or policy.max_papers) for s in block]
        with clock.timing("rank"):
            ranker.prepare(list(profiles.values()), [])
            rankings = rank_many(ranker, corpus, requests, min_score=policy.min_score, diversity=policy.diversity)
        for s, ranking in zip(block, rankings, strict=True):
            yield Digest(subscriber=s, papers=ranking.chosen, issued_at=now, window_start=windows[s.id].since,
                         window_end=now, through_batch=through, candidate_count=ranking.candidate_count)


# The first block is small, so the first digests are stored (and sent) a few hundred milliseconds into the
# ranking rather than after a whole block; each next block is twice the last, up to BLOCK, so that ranking
# a block takes about as long as sending the one before it (with one jump from 64 to BLOCK the senders
# ran dry for 0.3 s of a 10,000-subscriber run). A subscriber's picks do not depend on who shares their
# block (scores may differ in the sixth decimal: sums run in another order).
FIRST_BLOCK = 64


def _blocks(subscribers: Sequence[Subscriber]) -> Iterator[Sequence[Subscriber]]:
    start, size = 0, FIRST_BLOCK
    while start < len(subscribers):
        yield subscribers[start : start + size]
        start += size
        size = min(size * 2, BLOCK)


def prepare_ranking(store: Store, make_ranker: RankerFactory, subscribers: Sequence[Subscriber],
                    now: datetime) -> None:
    """Do ahead what a run's ranking does first for these subscribers: embed (and store) their topic phrases
    and liked papers, so the run that sends their digests reads the vectors instead of making them."""
    ranker = make_ranker(reference_papers(store, now))
    ranker.prepare(list(profiles_of(store, subscribers).values()), [])


def reference_papers(store: Store, now: datetime) -> list[Paper]:
    """What a run's ranker is fitted on: the recent papers, whoever is in the run."""
    return store.papers.recent(until=now, limit=REFERENCE_PAPERS)


def reusing(make_ranker: RankerFactory, ranker: Ranker[Any], reference: Sequence[Paper]) -> RankerFactory:
    """`make_ranker`, except that for these very reference papers it hands back `ranker`, fitted already
    (a producer process fits it while it waits for its job); other papers get a ranker of their own."""
    fitted_on = [p.id for p in reference]

    def make(papers: Sequence[Paper]) -> Ranker[Any]:
        return ranker if [p.id for p in papers] == fitted_on else make_ranker(papers)

    return make


def windows_for(store: Store, policy: DigestPolicy, subscribers: Sequence[Subscriber],
                now: datetime) -> dict[str, Window]:
    """Each subscriber's window: after their last closed digest, or the lookback for a first digest."""
    closed = store.ledger.last_closed_windows([s.id for s in subscribers])
    first = Window(now - timedelta(days=policy.lookback_days), None)
    return {s.id: Window(closed[s.id].ended_at, closed[s.id].through_batch) if s.id in closed else first
            for s in subscribers}


def papers_in_play(store: Store, windows: Sequence[Window], through: int) -> list[Paper]:
    """Every paper some window holds, loaded in one query."""
    after = [w.after_batch for w in windows if w.after_batch is not None]
    since = [w.since for w in windows if w.after_batch is None]
    return store.papers.in_play(through, after_batch=min(after, default=None), since=min(since, default=None))


def profiles_of(store: Store, subscribers: Sequence[Subscriber]) -> dict[str, Profile]:
    """Each subscriber's file plus their "more / less like this" votes, as the ranker reads them.

    Read for the whole run at once: the votes in one query, each distinct liked title looked up once.
    """
    votes = store.votes.for_subscribers([s.id for s in subscribers])
    voted = {p.id: p for p in store.papers.get(sorted({v.paper_id for vs in votes.values() for v in vs}))}
    liked = store.papers.find_by_titles([title for s in subscribers for title in s.liked])
    profiles = {}
    for s in subscribers:
        more = [voted[v.paper_id] for v in votes[s.id] if v.direction == "more" and v.paper_id in voted]
        less = [voted[v.paper_id] for v in votes[s.id] if v.direction == "less" and v.paper_id in voted]
        profiles[s.id] = build_profile(s, [liked[title] for title in s.liked], voted_up=more, voted_down=less)
    return profiles


def candidates_for(in_window: Sequence[Paper], already_sent: set[int] | None) -> Sequence[Paper]:
    """The papers new to a subscriber: those of their window never sent to them or on their way."""
    return [p for p in in_window if p.id not in already_sent] if already_sent else in_window


def _papers_by_window(corpus: Sequence[Paper]) -> Callable[[Window], list[Paper]]:
    """The corpus's papers in a window, worked out once per distinct window: subscribers on the same
    schedule share one (their last digests closed at the same batch), so 10,000 of them are not
    10,000 passes over the day's papers."""
    cache: dict[Window, list[Paper]] = {}

    def in_window(window: Window) -> list[Paper]:
        if window not in cache:
            cache[window] = [p for p in corpus if window.holds(p)]
        return cache[window]

    return in_window
