"""Adapter that runs newsletter's Ranker under ../shared/bench/ranking_bench.py.

    python ../shared/bench/ranking_bench.py --ranker bench.ranking_plugin:rank --no-embeddings

(from the repository root, with the package installed). Candidate and profile
texts become Papers with the text as title; keywords become topics and profile
papers become liked papers, as a subscriber file would give them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from newsletter.models import Paper, Subscriber
from newsletter.rank import Profile, Ranker

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_state: dict[str, Ranker] = {}
_next_id = [20_000_000]  # fresh ids per call: the ranker caches vectors by paper id


def _papers(texts: list[str], first_id: int) -> list[Paper]:
    return [Paper(id=first_id + i, title=t, abstract="", first_seen=_EPOCH) for i, t in enumerate(texts)]


def setup(corpus_texts: list[str]) -> None:
    _state["ranker"] = Ranker(_papers(corpus_texts, 0))


def rank(profile_texts: list[str], keywords: list[str], candidate_texts: list[str]) -> list[float]:
    ranker = _state.get("ranker") or Ranker(_papers(candidate_texts, 10_000_000))
    subscriber = Subscriber(id="u", email="u@example.org", name="u", topics=tuple(keywords),
                            liked=tuple(profile_texts))
    profile = Profile(topics=subscriber.topics, liked_titles=subscriber.liked, liked_texts=subscriber.liked,
                      liked_ids=frozenset(), exclude=())
    candidates = _papers(candidate_texts, _next_id[0])
    _next_id[0] += len(candidate_texts)
    return [float(x) for x in ranker.score(profile, candidates).total]
