"""Adapter that runs newsletter's ranker under ../shared/bench/ranking_bench.py; prints nothing itself.

    PYTHONPATH=$PWD python ../shared/bench/ranking_bench.py --ranker bench.ranking_plugin:rank --no-embeddings

(from the repository root). Texts become Papers with the text as title and no
abstract; keywords become topics and profile texts become liked papers given
as bare titles, as a subscriber file would give them. The ranker is made with
`fit_ranker` and scored through the same `prepare`/`score` the digest uses.

The benchmark looks up module-level `setup` and `rank` functions, so this
module holds exactly one `BenchAdapter`; all state (the fitted ranker, the
paper id given to each text) lives on that object, created anew by `setup`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from newsletter.models import Paper, Subscriber
from newsletter.rank import Ranker, build_profile, fit_ranker

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class BenchAdapter:
    """Turns the benchmark's texts into Papers and profiles and scores them with one fitted ranker."""

    def __init__(self) -> None:
        self.ranker: Ranker[Any] | None = None
        # One id per distinct text: the ranker caches vectors by paper id, and a
        # text always has the same vector, so a candidate seen before is not re-vectorised.
        self._ids: dict[str, int] = {}

    def setup(self, corpus_texts: list[str]) -> None:
        """Fit on the whole corpus and vectorise it in one batch, as a digest run prepares its papers."""
        self._ids = {}
        corpus = self.papers(corpus_texts)
        self.ranker = fit_ranker(corpus)
        self.ranker.prepare([], corpus)

    def rank(self, profile_texts: list[str], keywords: list[str], candidate_texts: list[str]) -> list[float]:
        """One score per candidate, higher is better."""
        candidates = self.papers(candidate_texts)
        # Without setup there is no corpus: fit on the candidates, as the benchmark allows.
        ranker = self.ranker if self.ranker is not None else fit_ranker(candidates)
        subscriber = Subscriber(id="u", email="u@example.org", name="u", topics=tuple(keywords),
                                liked=tuple(profile_texts))
        profile = build_profile(subscriber, [None] * len(profile_texts))  # liked as bare titles
        ranker.prepare([profile], candidates)
        return [float(x) for x in ranker.score(profile, candidates).total]

    def papers(self, texts: Sequence[str]) -> list[Paper]:
        return [Paper(id=self._id_of(t), title=t, abstract="", first_seen=_EPOCH) for t in texts]

    def _id_of(self, text: str) -> int:
        return self._ids.setdefault(text, len(self._ids))


_ADAPTER = BenchAdapter()
setup = _ADAPTER.setup
rank = _ADAPTER.rank
