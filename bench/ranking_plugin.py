"""Adapter that runs newsletter's ranker under ../shared/bench/ranking_bench.py; prints nothing itself.

    PYTHONPATH=$PWD python ../shared/bench/ranking_bench.py --ranker bench.ranking_plugin:rank --no-embeddings

NEWSLETTER_BENCH_MODEL picks the model (default: the digest's default, the
hybrid); NEWSLETTER_BENCH_VECTORS=bench/.vectors.npz keeps the embedded corpus
between runs.

(from the repository root). Texts become Papers with the text as title and no
abstract; keywords become topics and profile texts become liked papers given
as bare titles, as a subscriber file would give them. The ranker is made with
`fit_ranker` and scored through the same `prepare`/`score_many` the digest uses
(rank/batch.py's `rank_many`, with one profile).

The benchmark looks up module-level `setup` and `rank` functions, so this
module holds exactly one `BenchAdapter`; all state (the fitted ranker, the
paper id given to each text) lives on that object, created anew by `setup`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from newsletter.models import Paper, Subscriber
from newsletter.rank import DEFAULT_MODEL, Ranker, build_profile, fit_ranker, paper_vectors
from newsletter.rank.vectors import PaperVectors

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# The ranker to measure (NEWSLETTER_BENCH_MODEL=tfidf-v1 for the fallback), and, if set, a file that
# keeps the corpus's vectors between runs: embedding 17,000 titles takes a minute, ranking them seconds.
MODEL = os.environ.get("NEWSLETTER_BENCH_MODEL", DEFAULT_MODEL)
CACHE = Path(os.environ["NEWSLETTER_BENCH_VECTORS"]) if os.environ.get("NEWSLETTER_BENCH_VECTORS") else None


class BenchAdapter:
    """Turns the benchmark's texts into Papers and profiles and scores them with one fitted ranker."""

    def __init__(self) -> None:
        self.ranker: Ranker[Any] | None = None
        self.vectors: PaperVectors | None = None
        # One id per distinct text: the ranker caches vectors by paper id, and a
        # text always has the same vector, so a candidate seen before is not re-vectorised.
        self._ids: dict[str, int] = {}

    def setup(self, corpus_texts: list[str]) -> None:
        """Fit on the whole corpus and vectorise it in one batch, as a digest run prepares its papers."""
        self._ids = {}
        corpus = self.papers(corpus_texts)
        self.vectors = paper_vectors(None) if MODEL == DEFAULT_MODEL else None
        if self.vectors is not None and CACHE is not None:
            _load_cache(self.vectors, CACHE)
        self.ranker = fit_ranker(corpus, MODEL, vectors=self.vectors)
        self.ranker.prepare([], corpus)
        if self.vectors is not None and CACHE is not None:
            _save_cache(self.vectors, CACHE, corpus_texts)

    def rank(self, profile_texts: list[str], keywords: list[str], candidate_texts: list[str]) -> list[float]:
        """One score per candidate, higher is better."""
        candidates = self.papers(candidate_texts)
        # Without setup there is no corpus: fit on the candidates, as the benchmark allows.
        ranker = self.ranker if self.ranker is not None else fit_ranker(candidates, MODEL, vectors=self.vectors)
        subscriber = Subscriber(id="u", email="u@example.org", name="u", topics=tuple(keywords),
                                liked=tuple(profile_texts))
        profile = build_profile(subscriber, [None] * len(profile_texts))  # liked as bare titles
        ranker.prepare([profile], candidates)
        # The digest's path: rank_many scores through score_many (rank/batch.py); Ranker.score where it cannot.
        batch = ranker.score_many([profile], candidates) if hasattr(ranker, "score_many") else None
        totals = batch.total[:, 0] if batch is not None else ranker.score(profile, candidates).total
        return [float(x) for x in totals]

    def papers(self, texts: Sequence[str]) -> list[Paper]:
        return [Paper(id=self._id_of(t), title=t, abstract="", first_seen=_EPOCH) for t in texts]

    def _id_of(self, text: str) -> int:
        return self._ids.setdefault(text, len(self._ids))


def _load_cache(vectors: PaperVectors, cache: Path) -> None:
    if cache.exists():
        with np.load(cache, allow_pickle=False) as saved:
            if str(saved["model"]) == vectors.model_id:
                vectors.remember(list(saved["texts"]), saved["vectors"])


def _save_cache(vectors: PaperVectors, cache: Path, texts: Sequence[str]) -> None:
    known = {str(t) for t in np.load(cache, allow_pickle=False)["texts"]} if cache.exists() else set()
    if set(texts) <= known:
        return
    merged = list(dict.fromkeys([*known, *texts]))
    np.savez(cache, model=vectors.model_id, texts=np.array(merged), vectors=vectors.texts(merged))


_ADAPTER = BenchAdapter()
setup = _ADAPTER.setup
rank = _ADAPTER.rank
