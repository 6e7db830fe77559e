"""Ranking many subscribers over one day's papers at once. Pure; reads and writes nothing.

`rank_many` gives every subscriber the Ranking their own `Ranker.rank` call would
give, at a fraction of the cost: a ranker with `score_many` scores the day's
papers for a block of profiles as matrix products (scores do not depend on which
other papers are scored), each subscriber's candidates are then a selection of
rows, the best few are found with a partition instead of a sort, and only the
papers actually chosen are explained. Rankers without `score_many` are asked
one subscriber at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..models import Paper
from .base import Ranker, Ranking, Scores
from .profile import Profile
from .select import DIVERSITY_POOL, Exclusions, pick

# Profiles scored together: large enough for the products to be efficient, small enough that the
# papers x profiles x entries arrays of a block stay a few tens of megabytes.
BLOCK = 512


@dataclass(frozen=True, slots=True)
class RankRequest:
    """One subscriber's part of a batch: their profile, their candidates (papers of the batch), their limit."""

    profile: Profile
    candidates: Sequence[Paper]
    max_papers: int


class BatchScores(Protocol):
    """What `score_many` returns: scores of every paper for every profile of the block."""

    @property
    def total(self) -> np.ndarray: ...  # papers x profiles

    @property
    def eligible(self) -> np.ndarray | None: ...  # papers x profiles, or None when every paper may be sent

    def take(self, profile: int, rows: Sequence[int]) -> Scores:
        """The profile's Scores for the papers at `rows`, the same as `score` would give for them."""
        ...


ScoreMany = Callable[[Sequence[Profile], Sequence[Paper]], BatchScores | None]


@dataclass(slots=True)
class _Pending:
    at: int  # position in the requests
    kept: list[Paper]
    excluded: int


def rank_many(ranker: Ranker[Any], papers: Sequence[Paper], requests: Sequence[RankRequest], *,
              min_score: float, diversity: float = 0.0) -> list[Ranking]:
    """Each request's Ranking, in order; every candidate must be one of `papers` (scored once for all)."""
    exclusions = Exclusions()
    results: list[Ranking | None] = [None] * len(requests)
    index = {p.id: row for row, p in enumerate(papers)}
    pending: list[_Pending] = []
    score_many: ScoreMany | None = getattr(ranker, "score_many", None)
    for at, request in enumerate(requests):
        seen = request.profile.seen_ids  # a property that builds a set: once per request
        pool = [p for p in request.candidates if p.id not in seen]
        kept, excluded = exclusions.split(pool, request.profile.exclude)
        if not kept or not request.profile.entries:
            results[at] = Ranking((), len(kept), excluded)
        elif score_many is None or any(p.id not in index for p in kept):
            results[at] = _alone(ranker, request, min_score, diversity)
        else:
            pending.append(_Pending(at, kept, excluded))
    for start in range(0, len(pending), BLOCK):
        block = pending[start:start + BLOCK]
        assert score_many is not None  # pending is empty otherwise
        batch = score_many([requests[p.at].profile for p in block], papers)
        for column, item in enumerate(block):
            request = requests[item.at]
            results[item.at] = (_alone(ranker, request, min_score, diversity) if batch is None else
                                _choose(ranker, batch, column, request, item, papers, index, min_score, diversity))
    return [r for r in results if r is not None]


def _alone(ranker: Ranker[Any], request: RankRequest, min_score: float, diversity: float) -> Ranking:
    return ranker.rank(request.profile, request.candidates, max_papers=request.max_papers, min_score=min_score,
                       diversity=diversity)


def _choose(ranker: Ranker[Any], batch: BatchScores, column: int, request: RankRequest, item: _Pending,
            papers: Sequence[Paper], index: dict[int, int], min_score: float, diversity: float) -> Ranking:
    """select.rank_with's choice, on rows of the batch: passing papers, best first (ties by id), then `pick`."""
    rows = np.fromiter((index[p.id] for p in item.kept), dtype=np.int64, count=len(item.kept))
    totals = batch.total[rows, column]
    passing = (totals >= min_score) & (totals > 0)
    if batch.eligible is not None:
        passing &= batch.eligible[rows, column]
    rows, totals = rows[passing], totals[passing]
    limit = request.max_papers * DIVERSITY_POOL
    if len(rows) > limit:  # keep the best `limit` and anything tied with the last of them, then sort only those
        threshold = np.partition(totals, len(totals) - limit)[len(totals) - limit]
        rows, totals = rows[totals >= threshold], totals[totals >= threshold]
    ids = np.fromiter((papers[r].id for r in rows), dtype=np.int64, count=len(rows))
    head = rows[np.lexsort((ids, -totals))][:limit]
    scores = batch.take(column, head)
    chosen = pick(ranker, request.profile, scores, [papers[r] for r in head], range(len(head)),
                  max_papers=request.max_papers, diversity=diversity)
    return Ranking(chosen, len(item.kept), item.excluded)
