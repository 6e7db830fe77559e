"""Ranking papers for a subscriber: the Ranker protocol, profiles, and `fit_ranker` to make one.

Reads and writes nothing. The stages are: fit on reference papers, prepare a
run's papers and profiles, score, choose (rank/select.py, shared by every
ranker) and explain (rank/explain.py). The TF-IDF ranker (rank/tfidf.py) is
imported only when one is made, so importing this package does not load
scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..models import Paper
from .base import Ranker, Ranking, Scores
from .profile import Profile, build_profile, paper_text
from .words import fold_plural, tokenize

__all__ = [
    "DEFAULT_MODEL", "MODELS", "Profile", "Ranker", "Ranking", "Scores",
    "build_profile", "fit_ranker", "fold_plural", "paper_text", "tokenize",
]

DEFAULT_MODEL = "tfidf-v1"
MODELS = (DEFAULT_MODEL,)


def fit_ranker(reference: Sequence[Paper], model_id: str = DEFAULT_MODEL) -> Ranker[Any]:
    """A ranker of the named model, fitted on `reference` (papers that do not depend on who is in the run)."""
    if model_id == "tfidf-v1":
        from .tfidf import TfidfRanker  # here, not at the top: it imports scikit-learn

        return TfidfRanker(reference)
    raise ValueError(f"unknown ranker model {model_id!r}; known: {', '.join(MODELS)}")
