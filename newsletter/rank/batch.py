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
from .select import DIVERSITY_POOL, Exclusions, phrase_patterns, pick

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
    rows: np.ndarray  # the kept candidates' rows of the batch's papers, in the candidates' order
    excluded: int


class _Papers:
    """The batch's papers by row, and what every subscriber of one `rank_many` call asks of them alike:
    the rows of a candidates list (subscribers of one window share it) and the rows holding exclude
    phrases. Kept for one call only, so nothing here can outlive the papers it describes."""

    def __init__(self, papers: Sequence[Paper], exclusions: Exclusions) -> None:
        self.papers = papers
        self.row_of = {p.id: row for row, p in enumerate(papers)}
        self.ids = np.fromiter((p.id for p in papers), dtype=np.int64, count=len(papers))
        self._exclusions = exclusions
        self._rows: dict[int, tuple[Sequence[Paper], np.ndarray | None]] = {}  # id(candidates) -> rows
        self._held: dict[tuple[str, ...], np.ndarray | None] = {}  # exclude phrases -> rows holding one
        self._indexed = False

    def rows(self, candidates: Sequence[Paper]) -> np.ndarray | None:
        """The candidates' rows, in order; None when one of them is not among the papers."""
        known = self._rows.get(id(candidates))
        if known is None or known[0] is not candidates:  # the list itself is kept, so its id is not reused
            rows = np.fromiter((self.row_of.get(p.id, -1) for p in candidates), dtype=np.int64, count=len(candidates))
            known = self._rows[id(candidates)] = (candidates, None if (rows < 0).any() else rows)
        return known[1]

    def unseen(self, rows: np.ndarray, seen: frozenset[int]) -> np.ndarray:
        """Per row: not one of the `seen` papers (liked or voted on)."""
        seen_rows = [self.row_of[i] for i in seen if i in self.row_of]
        return ~np.isin(rows, seen_rows) if seen_rows else np.ones(len(rows), dtype=bool)

    def holding(self, phrases: tuple[str, ...]) -> np.ndarray | None:
        """Per paper: holds one of the exclude phrases (select.Exclusions' rule); None when none can match."""
        if phrases not in self._held:
            patterns = phrase_patterns(phrases)
            held = None
            if patterns:
                if not self._indexed:
                    self._exclusions.index(self.papers)
                    self._indexed = True
                held = np.zeros(len(self.papers), dtype=bool)
                ids = set().union(*(self._exclusions.holding(pattern) for pattern in patterns))
                held[[self.row_of[i] for i in ids if i in self.row_of]] = True
            self._held[phrases] = held
        return self._held[phrases]


def rank_many(ranker: Ranker[Any], papers: Sequence[Paper], requests: Sequence[RankRequest], *,
              min_score: float, diversity: float = 0.0) -> list[Ranking]:
    """Each request's Ranking, in order; every candidate must be one of `papers` (scored once for all)."""
    # The ranker's own Exclusions when it has one: a run's blocks then read each paper's words once, not once each.
    exclusions: Exclusions = getattr(ranker, "exclusions", None) or Exclusions()
    table = _Papers(papers, exclusions)
    results: list[Ranking | None] = [None] * len(requests)
    pending: list[_Pending] = []
    score_many: ScoreMany | None = getattr(ranker, "score_many", None)
    for at, request in enumerate(requests):
        rows = table.rows(request.candidates) if score_many is not None else None
        if rows is None:  # ranked alone: a candidate outside the batch, or a ranker without score_many
            results[at] = _filter_alone(ranker, exclusions, request, min_score, diversity)
            continue
        keep = table.unseen(rows, request.profile.seen_ids)
        held = table.holding(request.profile.exclude)
        excluded = 0
        if held is not None:
            out = held[rows] & keep
            excluded = int(np.count_nonzero(out))
            keep &= ~out
        rows = rows[keep]
        if not len(rows) or not request.profile.entries:
            results[at] = Ranking((), len(rows), excluded)
        else:
            pending.append(_Pending(at, rows, excluded))
    for start in range(0, len(pending), BLOCK):
        block = pending[start:start + BLOCK]
        assert score_many is not None  # pending is empty otherwise
        batch = score_many([requests[p.at].profile for p in block], papers)
        for column, item in enumerate(block):
            request = requests[item.at]
            results[item.at] = (_alone(ranker, request, min_score, diversity) if batch is None else
                                _choose(ranker, batch, column, request, item, table, min_score, diversity))
    return [r for r in results if r is not None]


def _filter_alone(ranker: Ranker[Any], exclusions: Exclusions, request: RankRequest, min_score: float,
                  diversity: float) -> Ranking:
    """select.rank_with's filter on paper lists, then `Ranker.rank` for anyone left with candidates."""
    seen = request.profile.seen_ids  # a property that builds a set: once per request
    kept, excluded = exclusions.split([p for p in request.candidates if p.id not in seen], request.profile.exclude)
    if not kept or not request.profile.entries:
        return Ranking((), len(kept), excluded)
    return _alone(ranker, request, min_score, diversity)


def _alone(ranker: Ranker[Any], request: RankRequest, min_score: float, diversity: float) -> Ranking:
    return ranker.rank(request.profile, request.candidates, max_papers=request.max_papers, min_score=min_score,
                       diversity=diversity)


def _choose(ranker: Ranker[Any], batch: BatchScores, column: int, request: RankRequest, item: _Pending,
            table: _Papers, min_score: float, diversity: float) -> Ranking:
    """select.rank_with's choice, on rows of the batch: passing papers, best first (ties by id), then `pick`."""
    rows = item.rows
    totals = batch.total[rows, column]
    passing = (totals >= min_score) & (totals > 0)
    if batch.eligible is not None:
        passing &= batch.eligible[rows, column]
    rows, totals = rows[passing], totals[passing]
    limit = request.max_papers * DIVERSITY_POOL
    if len(rows) > limit:  # keep the best `limit` and anything tied with the last of them, then sort only those
        threshold = np.partition(totals, len(totals) - limit)[len(totals) - limit]
        rows, totals = rows[totals >= threshold], totals[totals >= threshold]
    head = rows[np.lexsort((table.ids[rows], -totals))][:limit]
    scores = batch.take(column, head)
    chosen = pick(ranker, request.profile, scores, [table.papers[r] for r in head.tolist()], range(len(head)),
                  max_papers=request.max_papers, diversity=diversity)
    return Ranking(chosen, len(item.rows), item.excluded)
