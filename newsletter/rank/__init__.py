"""Ranking papers for a subscriber: the Ranker protocol, profiles, and `fit_ranker` to make one.

Reads and writes nothing itself (the hybrid ranker reads and stores paper
vectors through the PaperVectors it is given). The stages are: fit on
reference papers, prepare a run's papers and profiles, score, choose
(rank/select.py, shared by every ranker) and explain (rank/explain.py). The
rankers are imported only when one is made, so importing this package loads
neither scikit-learn nor onnxruntime.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from ..errors import ModelUnavailable
from ..models import Paper
from .base import Ranker, Ranking, Scores
from .profile import Profile, build_profile, paper_text
from .words import fold_plural, tokenize

if TYPE_CHECKING:
    from .embeddings import Embedder, Progress
    from .vectors import PaperVectors, VectorRows

__all__ = [
    "DEFAULT_MODEL", "FALLBACK_MODEL", "MODELS", "Profile", "Ranker", "Ranking", "Scores",
    "build_profile", "fit_ranker", "fold_plural", "load_embedder", "paper_text", "paper_vectors",
    "store_ranker_factory", "tokenize",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "hybrid-minilm-v1"
FALLBACK_MODEL = "tfidf-v1"  # what runs when the embedding model cannot be loaded
MODELS = (DEFAULT_MODEL, FALLBACK_MODEL)


def fit_ranker(reference: Sequence[Paper], model_id: str = DEFAULT_MODEL, *,
               vectors: PaperVectors | None = None) -> Ranker[Any]:
    """A ranker of the named model, fitted on `reference` (papers that do not depend on who is in the run).

    The hybrid model needs paper vectors: `vectors` (the pipeline passes ones
    kept in the store), or vectors held in memory for this process. When the
    embedding model cannot be loaded, the TF-IDF ranker is returned instead
    (`load_embedder` has said why, once).
    """
    if model_id == FALLBACK_MODEL:
        from .tfidf import TfidfRanker  # here, not at the top: it imports scikit-learn

        return TfidfRanker(reference)
    if model_id == DEFAULT_MODEL:
        vectors = vectors or paper_vectors(None)
        if vectors is None:
            return fit_ranker(reference, FALLBACK_MODEL)
        from .hybrid import HybridRanker

        try:
            return HybridRanker(reference, vectors)
        except ModelUnavailable as exc:  # the model's session is made on the first text to embed, maybe here
            log.warning("ranking with TF-IDF: %s", exc)
            return fit_ranker(reference, FALLBACK_MODEL)
    raise ValueError(f"unknown ranker model {model_id!r}; known: {', '.join(MODELS)}")


# A run embeds at most this many of its reference papers itself (about a day's papers; ingest embeds
# new papers, so normally none); with more lacking vectors (a model change, a store from before
# vectors) it ranks with TF-IDF and they are embedded in the background (newsletter/embedding_jobs.py).
FOREGROUND_EMBEDDING = 500


def store_ranker_factory(rows: VectorRows, *, background: Callable[[], None] | None = None,
                         foreground_limit: int | None = None) -> Callable[[Sequence[Paper]], Ranker[Any]]:
    """`fit_ranker` for the pipeline: the default model, with paper vectors kept in `rows` (store.vectors).

    The embedding model is loaded on the first ranker made, not before: commands
    that never rank do not pay for it. When more than `foreground_limit` (FOREGROUND_EMBEDDING) reference
    papers have no vector of the current model, the ranker is TF-IDF and
    `background()` is called to embed them while the run goes on.
    """
    def make(reference: Sequence[Paper]) -> Ranker[Any]:
        vectors = paper_vectors(rows, progress=_log_progress)
        if vectors is None:
            return fit_ranker(reference, FALLBACK_MODEL)
        lacking = rows.missing(vectors.model_id, [p.id for p in reference])
        if len(lacking) > (FOREGROUND_EMBEDDING if foreground_limit is None else foreground_limit):
            log.info("%s of %s recent papers have no vector for %s yet: ranking with TF-IDF while they are "
                     "embedded in the background", f"{len(lacking):,}", f"{len(reference):,}", vectors.model_id)
            if background is not None:
                background()
            return fit_ranker(reference, FALLBACK_MODEL)
        return fit_ranker(reference, vectors=vectors)

    return make


_LOADING = threading.Lock()  # the daemon's threads may ask at once: load (and warn) once all the same


def load_embedder() -> Embedder | None:
    """The embedding model, loaded and checked once per process; None (said once, as a warning) if it cannot be."""
    with _LOADING:
        return _load_embedder()


@cache
def _load_embedder() -> Embedder | None:
    try:
        from .embeddings import Embedder

        return Embedder()
    except ModelUnavailable as exc:
        log.warning("ranking with TF-IDF: %s", exc)
        return None


def paper_vectors(rows: VectorRows | None, progress: Progress | None = None) -> PaperVectors | None:
    """Paper vectors kept in `rows` (the store's `vectors`) or, with None, in memory; None without a model.

    `progress(done, total)` hears about long embedding passes (a first run, or a model change
    that makes every stored vector stale).
    """
    embedder = load_embedder()
    if embedder is None:
        return None
    from .vectors import PaperVectors

    return PaperVectors(embedder, rows, progress=progress)


def _log_progress(done: int, total: int) -> None:
    log.info("embedded %d of %d papers", done, total)
