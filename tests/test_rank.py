"""Rank: TF-IDF scores against topics and liked papers, exclusions, reasons, determinism."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from newsletter.models import Paper, Subscriber
from newsletter.rank import build_profile, tokenize
from newsletter.rank.tfidf import TfidfRanker

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def paper(ident: int, title: str, abstract: str) -> Paper:
    return Paper(id=ident, title=title, abstract=abstract, first_seen=T0)


PAPERS = [
    paper(1, "Message passing neural networks for molecules",
          "We predict molecular properties with graph neural networks over atoms and bonds."),
    paper(2, "Offline reinforcement learning for robot manipulation",
          "A policy learned from logged robot data grasps and places objects."),
    paper(3, "Quantizing large language models to three bits",
          "Post-training quantization keeps language model accuracy at three bits per weight."),
    paper(4, "Graph transformers for retrosynthesis",
          "Graph neural networks plan chemical reactions backwards from a target molecule."),
    paper(5, "Reinforcement learning for autonomous driving at intersections",
          "A driving policy trained with reinforcement learning handles unprotected turns."),
    paper(6, "Regional climate downscaling", "Flow matching produces fine-grained precipitation fields."),
]


def subscriber(**fields) -> Subscriber:
    return Subscriber(**{"id": "s", "email": "s@example.org", "name": "S", **fields})


def rank(sub: Subscriber, liked=None, max_papers=10, min_score=0.01, papers=PAPERS):
    profile = build_profile(sub, liked if liked is not None else [None] * len(sub.liked))
    return TfidfRanker(papers).rank(profile, papers, max_papers=max_papers, min_score=min_score)


def test_topics_put_matching_papers_first():
    chosen = rank(subscriber(topics=("graph neural networks", "molecules"))).chosen
    assert {c.paper.id for c in chosen[:2]} == {1, 4}
    assert 6 not in {c.paper.id for c in chosen}
    assert chosen == tuple(sorted(chosen, key=lambda c: -c.score))


def test_different_profiles_get_different_papers():
    rl = rank(subscriber(topics=("reinforcement learning", "robot manipulation"))).chosen
    llm = rank(subscriber(topics=("language model quantization",))).chosen
    assert rl[0].paper.id == 2 and llm[0].paper.id == 3


def test_exclude_phrase_pushes_a_paper_out():
    sub = subscriber(topics=("reinforcement learning",), exclude=("autonomous driving",))
    result = rank(sub)
    assert 5 not in {c.paper.id for c in result.chosen}
    assert result.excluded == 1
    assert 5 in {c.paper.id for c in rank(subscriber(topics=("reinforcement learning",))).chosen}


def test_liked_paper_pulls_similar_ones_and_is_not_recommended_itself():
    sub = subscriber(liked=("Message passing neural networks for molecules",))
    chosen = rank(sub, liked=[PAPERS[0]]).chosen
    assert chosen[0].paper.id == 4
    assert 1 not in {c.paper.id for c in chosen}
    assert chosen[0].reason.liked == ("Message passing neural networks for molecules",)


def test_an_unmatched_liked_title_still_counts_as_text():
    chosen = rank(subscriber(liked=("quantization of language models",))).chosen
    assert chosen[0].paper.id == 3


def test_reason_names_the_topic_and_the_terms():
    chosen = rank(subscriber(topics=("robot manipulation", "climate")), max_papers=1).chosen
    reason = chosen[0].reason
    assert reason.topics == ("robot manipulation",)
    assert any("robot" in term for term in reason.terms)
    assert "robot manipulation" in reason.summary()


def test_min_score_leaves_unrelated_papers_out():
    assert rank(subscriber(topics=("medieval poetry",))).chosen == ()
    strict = rank(subscriber(topics=("graph neural networks",)), min_score=0.99).chosen
    assert strict == ()


def test_max_papers_caps_the_digest():
    assert len(rank(subscriber(topics=("learning", "graph", "model")), max_papers=2).chosen) == 2


def test_ranking_is_deterministic_and_breaks_ties_by_id():
    twins = [paper(10, "Same words here", "identical text"), paper(9, "Same words here", "identical text")]
    first = rank(subscriber(topics=("same words",)), papers=twins).chosen
    assert [c.paper.id for c in first] == [9]  # a tie goes to the lower id; its twin is a near-duplicate
    again = rank(subscriber(topics=("same words",)), papers=twins).chosen
    assert first == again


def test_papers_outside_the_reference_set_are_scored_the_same_way():
    ranker = TfidfRanker(PAPERS[:3])
    profile = build_profile(subscriber(topics=("graph neural networks",)), [])
    chosen = ranker.rank(profile, PAPERS, max_papers=3, min_score=0.01).chosen
    assert chosen[0].paper.id in {1, 4}


def test_an_empty_corpus_ranks_nothing():
    profile = build_profile(subscriber(topics=("x",)), [])
    assert TfidfRanker([]).rank(profile, [], max_papers=5, min_score=0).chosen == ()


@pytest.mark.parametrize(
    ("text", "tokens"), [("Graph Networks", ["graph", "network"]), ("class bus", ["class", "bus"])]
)
def test_tokenizer_folds_plurals(text, tokens):
    assert tokenize(text) == tokens


def test_a_topic_half_present_gets_half_credit_and_is_not_claimed():
    papers = [
        paper(1, "Diffusion for molecule generation", "We generate molecules atom by atom; molecule generation works."),
        paper(2, "Retrieval for code generation", "Retrieval helps code generation at scale; generation improves."),
    ]
    ranker = TfidfRanker(papers)
    profile = build_profile(subscriber(topics=("molecule generation",)), [])
    scores = ranker.score(profile, papers).total
    assert scores[1] < scores[0] / 2
    chosen = ranker.rank(profile, papers, max_papers=2, min_score=0.0).chosen
    reasons = {c.paper.id: c.reason.topics for c in chosen}
    assert reasons[1] == ("molecule generation",) and reasons.get(2, ()) == ()
