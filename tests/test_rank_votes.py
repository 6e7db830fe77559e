"""Votes as profile inputs: "more like this" acts as a liked paper, "less like this" pushes neighbours down.

The votes themselves are stored by the preference work (the ledger); the
ranker only reads them through build_profile, tested here with votes in memory.
"""

from __future__ import annotations

from datetime import UTC, datetime

from newsletter.models import Paper, Subscriber
from newsletter.rank import build_profile, fit_ranker

T0 = datetime(2026, 11, 20, tzinfo=UTC)
PAPERS = [
    Paper(id=1, title="Speculative decoding with draft heads", abstract="Faster inference for language models.",
          first_seen=T0),
    Paper(id=2, title="Self-speculative decoding by layer skipping", abstract="Draft tokens from early layers.",
          first_seen=T0),
    Paper(id=3, title="Quantizing language models to four bits", abstract="Weight quantization for inference.",
          first_seen=T0),
    Paper(id=4, title="Three-bit weight quantization of mixture-of-experts models", abstract="Outlier-aware rounding.",
          first_seen=T0),
    Paper(id=5, title="Bird song in noisy cities", abstract="Urban noise changes song.", first_seen=T0),
]
CAROL = Subscriber(id="carol", email="c@example.org", name="C", topics=("efficient LLM inference",))


def test_votes_extend_the_profile_and_voted_papers_are_never_sent_back() -> None:
    profile = build_profile(CAROL, [], voted_up=[PAPERS[0], PAPERS[0]], voted_down=[PAPERS[2]])
    assert profile.liked_titles == (PAPERS[0].title,) and profile.liked_papers == (PAPERS[0],)
    assert profile.disliked == (PAPERS[2],) and profile.seen_ids == {1, 3}
    chosen = fit_ranker(PAPERS).rank(profile, PAPERS, max_papers=5, min_score=0.0).chosen
    assert {c.paper.id for c in chosen}.isdisjoint({1, 3})


def test_a_vote_up_lifts_similar_papers_and_a_vote_down_pushes_them_down() -> None:
    ranker = fit_ranker(PAPERS)
    plain = ranker.score(build_profile(CAROL, []), PAPERS).total
    liked = ranker.score(build_profile(CAROL, [], voted_up=[PAPERS[0]]), PAPERS).total
    disliked = ranker.score(build_profile(CAROL, [], voted_down=[PAPERS[2]]), PAPERS).total
    # Paper 2 (speculative decoding, like the paper voted up) gains on paper 4 (quantization)...
    assert liked[1] - liked[3] > plain[1] - plain[3]
    # ...and paper 4 (quantization, like the paper voted down) loses ground to paper 2.
    assert disliked[3] - disliked[1] < plain[3] - plain[1]


def test_a_vote_up_on_a_paper_already_liked_by_title_counts_once() -> None:
    subscriber = Subscriber(id="d", email="d@example.org", name="D", liked=("Speculative decoding with draft heads",))
    profile = build_profile(subscriber, [PAPERS[0]], voted_up=[PAPERS[0]])
    assert profile.liked_titles == (PAPERS[0].title,) and profile.liked_ids == {1}


def test_the_liked_paper_a_pick_resembles_is_named_and_an_unrelated_one_is_not() -> None:
    subscriber = Subscriber(id="e", email="e@example.org", name="E", liked=("Speculative decoding with draft heads",))
    profile = build_profile(subscriber, [PAPERS[0]])
    reasons = {c.paper.id: c.reason for c in fit_ranker(PAPERS).rank(profile, PAPERS, max_papers=5,
                                                                          min_score=0.0).chosen}
    assert reasons[2].liked == (PAPERS[0].title,)  # self-speculative decoding
    assert all(reason.liked == () for paper_id, reason in reasons.items() if paper_id in {4, 5})
