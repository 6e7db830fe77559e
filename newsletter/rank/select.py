"""Choosing a subscriber's papers from any ranker's scores. Pure; reads and writes nothing.

The rule, the same for every ranker: liked papers are never recommended back,
a paper holding an `exclude` phrase (as whole words) is out, then the best
`max_papers` of those scoring at least `min_score` (and above zero), ties by
paper id so a run is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..models import Paper, ScoredPaper
from .base import Ranker, Ranking, S
from .profile import Profile
from .topics import spellings
from .words import tokenize

if TYPE_CHECKING:
    import numpy as np


class Exclusions:
    """Matches exclude phrases against papers' words; each paper's words are cached by id for the run."""

    def __init__(self) -> None:
        self._words: dict[int, str] = {}

    def split(self, papers: Sequence[Paper], phrases: Sequence[str]) -> tuple[list[Paper], int]:
        """The papers no phrase matches, in order, and how many were excluded."""
        patterns = phrase_patterns(phrases)
        if not patterns:
            return list(papers), 0
        kept = [p for p in papers if not any(pattern in self._words_of(p) for pattern in patterns)]
        return kept, len(papers) - len(kept)

    def _words_of(self, paper: Paper) -> str:
        if paper.id not in self._words:
            self._words[paper.id] = f" {' '.join(tokenize(paper.title + ' ' + paper.abstract))} "
        return self._words[paper.id]


def phrase_patterns(phrases: Sequence[str]) -> list[str]:
    # " word word " so a phrase only matches whole words, after the same plural folding as the text;
    # every spelling of the phrase ("LLM" also excludes "large language models").
    variants = [v for phrase in phrases for v in spellings(phrase)]
    return list(dict.fromkeys(f" {' '.join(words)} " for words in map(tokenize, variants) if words))


def choose(papers: Sequence[Paper], totals: Sequence[float] | np.ndarray, *,
           max_papers: int, min_score: float, eligible: Sequence[bool] | np.ndarray | None = None) -> list[int]:
    """Rows of `papers` to send, best first: top `max_papers`, at least `min_score` and above zero.

    `eligible` (when a ranker's scores carry it) marks papers with enough evidence to be sent at all.
    """
    order = sorted(range(len(papers)), key=lambda i: (-totals[i], papers[i].id))
    return [i for i in order[:max_papers]
            if totals[i] >= min_score and totals[i] > 0 and (eligible is None or eligible[i])]


def rank_with(ranker: Ranker[S], exclusions: Exclusions, profile: Profile, candidates: Sequence[Paper], *,
              max_papers: int, min_score: float) -> Ranking:
    """`Ranker.rank` for any ranker: filter, score the rest once, choose, explain the chosen."""
    pool = [p for p in candidates if p.id not in profile.seen_ids]
    kept, excluded = exclusions.split(pool, profile.exclude)
    if not kept or not profile.entries:
        return Ranking((), len(kept), excluded)
    scores = ranker.score(profile, kept)
    chosen = tuple(
        ScoredPaper(kept[i], round(float(scores.total[i]), 6), ranker.explain(profile, scores, i))
        for i in choose(kept, scores.total, max_papers=max_papers, min_score=min_score,
                        eligible=getattr(scores, "eligible", None))
    )
    return Ranking(chosen, len(kept), excluded)
