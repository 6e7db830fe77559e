"""Choosing a subscriber's papers from any ranker's scores. Pure; reads and writes nothing.

The rule, the same for every ranker: liked papers are never recommended back,
a paper holding an `exclude` phrase (as whole words) is out, then the best
`max_papers` of those scoring at least `min_score` (and above zero), ties by
paper id so a run is reproducible.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from ..models import Paper, ScoredPaper
from .base import Ranker, Ranking, S
from .profile import Profile
from .topics import spellings
from .words import tokenize

# Papers this close (cosine) are one paper twice (a preprint and its revision, two listings): one is sent.
NEAR_DUPLICATE = 0.92
DIVERSITY_POOL = 3  # MMR chooses among this many times max_papers of the best papers


class Exclusions:
    """Matches exclude phrases against papers' words through an index of which papers use each word, built
    once per paper: a subscriber's excludes then cost a few set operations, not a pass over every paper."""

    def __init__(self) -> None:
        self._text: dict[int, str] = {}  # paper id -> " its words ", for phrases of several words
        self._papers_with: defaultdict[str, set[int]] = defaultdict(set)  # word -> ids of papers using it

    def split(self, papers: Sequence[Paper], phrases: Sequence[str]) -> tuple[list[Paper], int]:
        """The papers no phrase matches, in order, and how many were excluded."""
        patterns = phrase_patterns(phrases)
        if not patterns:
            return list(papers), 0
        self.index(papers)
        out: set[int] = set()
        for pattern in patterns:
            out |= self.holding(pattern)
        kept = [p for p in papers if p.id not in out]
        return kept, len(papers) - len(kept)

    def index(self, papers: Sequence[Paper]) -> None:
        """Learn the words of any of `papers` not indexed yet (a paper's words are read once per Exclusions)."""
        if {paper.id for paper in papers} <= self._text.keys():  # the usual case after the first subscriber
            return
        for paper in papers:
            if paper.id not in self._text:
                words = tokenize(paper.title + " " + paper.abstract)
                self._text[paper.id] = f" {' '.join(words)} "
                for word in set(words):
                    self._papers_with[word].add(paper.id)

    def holding(self, pattern: str) -> set[int]:
        """Ids of the indexed papers whose words hold `pattern` (" word word ")."""
        first, *rest = pattern.split()
        found = self._papers_with.get(first, set())
        if not rest:
            return found
        # Papers using every word of the phrase, then those where the words stand together.
        using_all = found.intersection(*(self._papers_with.get(word, set()) for word in rest))
        return {paper_id for paper_id in using_all if pattern in self._text[paper_id]}


def phrase_patterns(phrases: Sequence[str]) -> list[str]:
    # " word word " so a phrase only matches whole words, after the same plural folding as the text;
    # every spelling of the phrase ("LLM" also excludes "large language models").
    variants = [v for phrase in phrases for v in spellings(phrase)]
    return list(dict.fromkeys(f" {' '.join(words)} " for words in map(tokenize, variants) if words))


def passing(papers: Sequence[Paper], totals: Sequence[float] | np.ndarray, *,
            min_score: float, eligible: Sequence[bool] | np.ndarray | None = None) -> list[int]:
    """Every row that may be sent, best first, ties by paper id: at least `min_score` and above zero.

    `eligible` (when a ranker's scores carry it) marks papers with enough evidence to be sent at all.
    """
    order = sorted(range(len(papers)), key=lambda i: (-totals[i], papers[i].id))
    return [i for i in order if totals[i] >= min_score and totals[i] > 0 and (eligible is None or eligible[i])]


def diversify(order: Sequence[int], totals: Sequence[float] | np.ndarray, similarity: np.ndarray, *,
              max_papers: int, strength: float) -> list[int]:
    """Maximal marginal relevance over `order` (rows, best first); `similarity` is between those rows.

    Each pick maximises (1 - strength) * score - strength * (cosine to the closest paper already
    picked), ties to the better-ranked paper; a paper at NEAR_DUPLICATE or closer to a picked one is
    never picked, at any strength (between 0 and 1).
    """
    if not 0 <= strength <= 1:
        raise ValueError(f"diversify: strength must be between 0 and 1, got {strength!r}")
    kept_share = (1 - strength) * np.asarray(totals, dtype=np.float64)[np.asarray(order, dtype=np.int64)]
    # Row j of `columns` is column j of `similarity`: the cosines to a new pick are read as one contiguous row.
    columns = np.asarray(similarity, dtype=np.float64).T
    # Each pick's penalty on every row, worked out once: strength x cosine (as strength x the closest cosine:
    # with strength >= 0 the largest product is the product of the largest cosine, to the last bit), and an
    # infinite one on the pick itself and on its near-duplicates, which can then never be picked.
    penalties = np.where(columns < NEAR_DUPLICATE, strength * columns, np.inf)
    np.fill_diagonal(penalties, np.inf)
    penalty = np.zeros(len(order))  # each row's penalty from the picks so far (0 before any: cosines below 0 too)
    gains = kept_share.copy()
    picked: list[int] = []  # positions in `order`
    while len(picked) < max_papers and len(order):
        best = int(gains.argmax())  # the first of equal gains: the better-ranked paper
        if gains[best] == -np.inf:  # every row is picked or a near-duplicate of a pick
            break
        picked.append(best)
        np.maximum(penalty, penalties[best], out=penalty)
        np.subtract(kept_share, penalty, out=gains)
    return [order[j] for j in picked]


def rank_with(ranker: Ranker[S], exclusions: Exclusions, profile: Profile, candidates: Sequence[Paper], *,
              max_papers: int, min_score: float, diversity: float = 0.0) -> Ranking:
    """`Ranker.rank` for any ranker: filter, score the rest once, choose, explain the chosen."""
    pool = [p for p in candidates if p.id not in profile.seen_ids]
    kept, excluded = exclusions.split(pool, profile.exclude)
    if not kept or not profile.entries:
        return Ranking((), len(kept), excluded)
    scores = ranker.score(profile, kept)
    order = passing(kept, scores.total, min_score=min_score, eligible=getattr(scores, "eligible", None))
    # MMR looks a little past the digest's length: a diverse pick comes from the next best, not from the tail.
    head = order[: max_papers * DIVERSITY_POOL]
    return Ranking(pick(ranker, profile, scores, kept, head, max_papers=max_papers, diversity=diversity),
                   len(kept), excluded)


def pick(ranker: Ranker[S], profile: Profile, scores: S, papers: Sequence[Paper], head: Sequence[int], *,
         max_papers: int, diversity: float) -> tuple[ScoredPaper, ...]:
    """The diverse best of `head` (rows of `scores` and `papers`, best first), each with its reason.

    Only these few papers are explained: a reason costs more than a score.
    """
    similarity = scores.pairwise(head)
    if similarity is None:  # a ranker without vectors: at least the same title twice is one paper
        keys = [" ".join(tokenize(papers[i].title)) for i in head]
        similarity = np.array([[1.0 if a == b else 0.0 for b in keys] for a in keys]).reshape(len(head), len(head))
    rows = diversify(head, scores.total, similarity, max_papers=max_papers, strength=diversity)
    # A ranker that explains several papers at once (explain_many) does it for all the chosen in one call.
    explain_many = getattr(ranker, "explain_many", None)
    reasons = (explain_many(profile, scores, rows) if explain_many is not None
               else [ranker.explain(profile, scores, i) for i in rows])
    totals = np.asarray(scores.total)[np.asarray(rows, dtype=np.int64)].tolist()  # Python floats, as float() gives
    return tuple(ScoredPaper(papers[i], round(total, 6), reason) for i, total, reason in
                 zip(rows, totals, reasons, strict=True))
