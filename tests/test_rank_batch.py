"""rank_many (every subscriber at once, as matrix products) picks what Ranker.rank picks one subscriber at a time.

On the real pages, with profiles of every shape the digest meets: typed topics
(acronyms, typos), liked papers stored and as bare titles, votes both ways,
exclude phrases, their own candidate subsets and limits; for the hybrid ranker
and the TF-IDF fallback. Picks, order, reasons and scores must agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from helpers import real_day
from newsletter.models import Paper, Subscriber
from newsletter.rank import Profile, build_profile, fit_ranker
from newsletter.rank.batch import RankRequest, rank_many

TOPICS = [("reinforcement learning for robotics",), ("graph neural networks",), ("code LLMs", "program synthesis"),
          ("RAG",), ("diffusion models", "image generation"), ("LLM reasoning", "mathematical reasoning"),
          ("speech recognition",), ("reinforcment learning",), ("medieval poetry",), ()]


@pytest.fixture(scope="module")
def day(tmp_path_factory, embedder):
    with real_day(tmp_path_factory.mktemp("real")) as (papers, ranker):
        yield papers, ranker


def requests_for(papers: Sequence[Paper]) -> list[RankRequest]:
    """Forty subscribers: each shape of profile, each with its own window of candidates and its own limit."""
    out = []
    for k in range(40):
        topics = TOPICS[k % len(TOPICS)]
        liked = [papers[(k * 37 + j * 11) % len(papers)] for j in range(k % 4)]
        bare = ("Scaling laws for neural language models",) if k % 5 == 0 else ()
        if not topics and not liked and not bare:
            liked = [papers[k]]
        subscriber = Subscriber(id=f"s{k}", email=f"s{k}@example.org", name="S", topics=topics,
                                liked=tuple(p.title for p in liked) + bare,
                                exclude=("language model",) if k % 6 == 1 else ())
        profile = build_profile(subscriber, [*liked, *([None] * len(bare))],
                                voted_up=[papers[(k * 13) % len(papers)]] if k % 3 == 0 else [],
                                voted_down=[papers[(k * 29) % len(papers)]] if k % 4 == 2 else [])
        candidates = [p for p in papers if p.id % 7 != k % 7]  # what this subscriber has not been sent
        out.append(RankRequest(profile, candidates, max_papers=5 + k % 8))
    return out


def assert_same(ranker, papers: Sequence[Paper], requests: Sequence[RankRequest], *, min_score: float,
                diversity: float) -> int:
    together = rank_many(ranker, papers, requests, min_score=min_score, diversity=diversity)
    assert len(together) == len(requests)
    picked = 0
    for request, batch in zip(requests, together, strict=True):
        alone = ranker.rank(request.profile, request.candidates, max_papers=request.max_papers,
                            min_score=min_score, diversity=diversity)
        assert [s.paper.id for s in batch.chosen] == [s.paper.id for s in alone.chosen], request.profile.topics
        assert [s.reason for s in batch.chosen] == [s.reason for s in alone.chosen]
        assert [s.score for s in batch.chosen] == pytest.approx([s.score for s in alone.chosen], abs=2e-6)
        assert (batch.candidate_count, batch.excluded) == (alone.candidate_count, alone.excluded)
        picked += len(batch.chosen)
    return picked


@pytest.mark.parametrize("diversity", [0.0, 0.2])
def test_the_hybrid_batch_picks_what_each_subscriber_alone_gets(day, diversity) -> None:
    papers, ranker = day
    assert type(ranker).__name__ == "HybridRanker"
    picked = assert_same(ranker, papers, requests_for(papers), min_score=0.05, diversity=diversity)
    assert picked > 150  # the comparison is about real digests, not empty ones


def test_the_tfidf_batch_picks_what_each_subscriber_alone_gets(day) -> None:
    papers, _ = day
    ranker = fit_ranker(papers, "tfidf-v1")
    picked = assert_same(ranker, papers, requests_for(papers), min_score=0.05, diversity=0.2)
    assert picked > 150


def test_blocks_and_a_ranker_without_background_change_nothing(day, monkeypatch) -> None:
    papers, ranker = day
    monkeypatch.setattr("newsletter.rank.batch.BLOCK", 7)  # several blocks, the last one short
    assert_same(ranker, papers, requests_for(papers), min_score=0.05, diversity=0.2)
    # One reference paper: no background to standardise against, so each subscriber is ranked alone.
    tiny = fit_ranker(papers[:1], vectors=ranker.vectors)
    assert tiny.score_many([requests_for(papers)[1].profile], papers) is None
    assert_same(tiny, papers, requests_for(papers)[:6], min_score=0.05, diversity=0.2)


def test_a_profile_without_entries_or_candidates_gets_an_empty_ranking(day) -> None:
    papers, ranker = day
    empty = Profile(topics=(), liked_titles=(), liked_texts=(), liked_ids=frozenset(), exclude=())
    topic = build_profile(Subscriber(id="t", email="t@example.org", name="T", topics=("RAG",)), [])
    rankings = rank_many(ranker, papers, [RankRequest(empty, papers, 10), RankRequest(topic, [], 10),
                                          RankRequest(topic, papers, 10)], min_score=0.05)
    assert [len(r.chosen) for r in rankings[:2]] == [0, 0] and rankings[0].candidate_count == len(papers)
    assert rankings[2].chosen and rankings[2] == ranker.rank(topic, papers, max_papers=10, min_score=0.05)


def test_shared_candidate_lists_blocks_over_other_papers_and_outsiders_change_nothing(day) -> None:
    papers, ranker = day
    # Planning hands subscribers of one window the same list object; rank_many works out its rows once.
    shared = [p for p in papers if p.id % 5]
    requests = [RankRequest(r.profile, shared, r.max_papers) for r in requests_for(papers)]
    assert_same(ranker, papers, requests, min_score=0.05, diversity=0.2)
    # The ranker's exclude index outlives a call: a later call over other papers must still match their words.
    first, second = papers[: len(papers) // 2], papers[len(papers) // 2:]
    language = [r for r in requests_for(papers) if r.profile.exclude]
    for part in (first, second):
        part_requests = [RankRequest(r.profile, part, r.max_papers) for r in language]
        assert_same(ranker, part, part_requests, min_score=0.05, diversity=0.2)
        assert all(r.excluded > 0 for r in rank_many(ranker, part, part_requests, min_score=0.05))
    # A candidate outside the batch's papers (papers[0]): that subscriber is ranked alone, the other together.
    mixed = [RankRequest(language[0].profile, papers, 10), RankRequest(language[1].profile, papers[1:], 10)]
    assert_same(ranker, papers[1:], mixed, min_score=0.05, diversity=0.2)
