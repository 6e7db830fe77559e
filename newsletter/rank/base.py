"""The Ranker protocol and the values that cross it (Scores, Ranking). Pure; nothing is scored here.

A ranker is fitted on a reference set of papers, prepares a run's papers and
profile entries in batches, scores papers against a profile and explains a
chosen paper. Choosing (rank/select.py) and naming the matched entries
(rank/explain.py) are shared by every ranker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from ..models import Paper, Reason, ScoredPaper
from .profile import Profile

if TYPE_CHECKING:  # numpy stays out of `import newsletter.rank`; only rankers need it at run time
    import numpy as np


@dataclass(frozen=True, slots=True)
class Scores:
    """What every ranker's `score` returns; a ranker may subclass it to carry what `explain` needs."""

    total: np.ndarray  # one score per paper, higher is better
    per_entry: np.ndarray  # papers x profile entries (Profile.entries order): similarity to each

    def pairwise(self, rows: Sequence[int]) -> np.ndarray | None:
        """Cosine between the papers at `rows` (for diversity and near-duplicates); None if unknown."""
        return None


@dataclass(frozen=True, slots=True)
class Ranking:
    """One subscriber's chosen papers, best first, and how many papers were in play."""

    chosen: tuple[ScoredPaper, ...]
    candidate_count: int  # papers considered, after removing excluded and liked ones
    excluded: int  # papers pushed out by an `exclude` phrase


S = TypeVar("S", bound=Scores)


class Ranker(Protocol[S]):
    """Scores papers against a profile; `S` is the ranker's own Scores (what its `explain` reads)."""

    @property
    def model_id(self) -> str:
        """Names the model and its version ("tfidf-v1"), so stored vectors can be keyed by it."""
        ...

    def fit(self, reference: Sequence[Paper]) -> None:
        """Learn from a reference set that does not depend on who is in the run (an IDF, a calibration)."""
        ...

    def prepare(self, profiles: Sequence[Profile], papers: Sequence[Paper]) -> None:
        """Vectorise a run's profile entries and papers in batches, before any `score`."""
        ...

    def score(self, profile: Profile, papers: Sequence[Paper]) -> S:
        """Similarity of every paper to each profile entry and to the profile as a whole."""
        ...

    def explain(self, profile: Profile, scores: S, row: int) -> Reason:
        """Why `papers[row]` of the `score` call that gave `scores` matches the profile."""
        ...

    def rank(self, profile: Profile, candidates: Sequence[Paper], *, max_papers: int, min_score: float,
             diversity: float = 0.0) -> Ranking:
        """Top `max_papers` candidates scoring at least `min_score`, best first (rank/select.py's rule)."""
        ...
