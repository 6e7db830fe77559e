"""Explaining a digest's papers all at once (explain_many) says exactly what explaining them one by one said.

The vectorised paths (one sort of every chosen paper's terms, one comparison of
every threshold) are checked against the plain rule written out here paper by
paper, on the real pages, for the TF-IDF ranker and the hybrid one, with
profiles that have topics, liked papers and "more like this" votes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from helpers import real_day
from newsletter.models import Paper, Reason, Subscriber
from newsletter.rank import Profile, build_profile
from newsletter.rank.explain import REASON_MIN_COVERAGE, REASON_MIN_SIMILARITY, reason_for, reasons_for
from newsletter.rank.hybrid import LIKED_SIMILAR, HybridRanker
from newsletter.rank.tfidf import REASON_TERMS, TfidfRanker, TfidfScores

TOPICS = [("graph neural networks",), ("RAG", "code LLMs"), ("reinforcement learning for robotics", "diffusion models"),
          ("speech recognition",)]


@pytest.fixture(scope="module")
def day(tmp_path_factory, embedder):
    with real_day(tmp_path_factory.mktemp("real")) as (papers, ranker):
        assert isinstance(ranker, HybridRanker)
        yield papers, ranker


def profiles(papers: Sequence[Paper]) -> list[Profile]:
    out = []
    for k, topics in enumerate(TOPICS):
        liked = [papers[(k * 37 + j * 11) % len(papers)] for j in range(k % 3)]
        subscriber = Subscriber(id=f"s{k}", email=f"s{k}@example.org", name="S", topics=topics,
                                liked=tuple(p.title for p in liked))
        out.append(build_profile(subscriber, liked, voted_up=[papers[(k * 13) % len(papers)]] if k % 2 else []))
    return out


def terms_one_by_one(ranker: TfidfRanker, scores: TfidfScores, row: int) -> tuple[str, ...]:
    """The rule: the paper's terms by their product with the centroid, largest first, ties by term."""
    products = scores.docs[scores.doc_row(row)].toarray().ravel() * scores.centroid
    carrying = sorted(np.flatnonzero(products).tolist(), key=lambda term: (-products[term], term))
    return tuple(str(ranker.terms[term]) for term in carrying[:REASON_TERMS])


def reason_one_by_one(profile: Profile, similarities: Sequence[float], coverage: Sequence[float],
                      terms: tuple[str, ...]) -> Reason:
    topic_count = len(profile.topics)
    topics = tuple(topic for topic, similarity, share in zip(profile.topics, similarities, coverage, strict=False)
                   if similarity >= REASON_MIN_SIMILARITY and share >= REASON_MIN_COVERAGE)
    close = [title for title, similarity in zip(profile.liked_titles, similarities[topic_count:], strict=True)
             if similarity >= REASON_MIN_SIMILARITY]
    return Reason(topics=topics, liked=tuple(t for t in close if t not in profile.voted_titles),
                  terms=terms, voted=tuple(t for t in close if t in profile.voted_titles))


def best_rows(total: np.ndarray, count: int = 40) -> list[int]:
    return np.argsort(-total, kind="stable")[:count].tolist()


def test_tfidf_explains_many_papers_as_it_explains_each(day) -> None:
    papers, hybrid = day
    ranker: TfidfRanker = hybrid.lexical
    reasons: list[Reason] = []
    for profile in profiles(papers):
        scores = ranker.score(profile, papers)
        rows = best_rows(scores.total)
        expected = [reason_one_by_one(profile, scores.per_entry[r].tolist(), scores.coverage[r].tolist(),
                                      terms_one_by_one(ranker, scores, r)) for r in rows]
        assert ranker.explain_many(profile, scores, rows) == expected
        assert [ranker.explain(profile, scores, r) for r in rows] == expected
        reasons += expected
    # Not vacuous: the papers compared name topics, liked papers, votes and three terms each.
    assert any(r.topics for r in reasons) and any(r.liked for r in reasons) and any(r.voted for r in reasons)
    assert any(len(r.terms) == REASON_TERMS for r in reasons)


def test_scores_taken_from_a_batch_find_each_rows_terms(day) -> None:
    """Scores taken from a TfidfBatch point into the batch's documents (doc_rows), in any order of rows."""
    papers, hybrid = day
    ranker: TfidfRanker = hybrid.lexical
    batch = ranker.score_many(profiles(papers), papers)
    found = []
    for column in range(len(TOPICS)):
        rows = best_rows(batch.total[:, column], 25)[::-1]
        taken = batch.take(column, rows)
        found += ranker.carrying_terms_many(taken, range(len(rows)))
        assert found[-len(rows):] == [terms_one_by_one(ranker, taken, k) for k in range(len(rows))]
    assert ranker.carrying_terms_many(taken, []) == []
    assert any(len(terms) == REASON_TERMS for terms in found)


def test_hybrid_explains_many_papers_as_it_explains_each(day) -> None:
    papers, ranker = day
    named_liked = 0
    for profile in profiles(papers):
        scores = ranker.score(profile, papers)
        rows = best_rows(scores.total)
        expected = []
        for r in rows:
            entries = scores.per_entry[r].tolist()
            topic_count = len(profile.topics)
            similar = entries[:topic_count] + [1.0 if s >= LIKED_SIMILAR else 0.0 for s in entries[topic_count:]]
            expected.append(reason_one_by_one(profile, similar, scores.lexical.coverage[r].tolist(),
                                              terms_one_by_one(ranker.lexical, scores.lexical, r)))
        assert ranker.explain_many(profile, scores, rows) == expected
        named_liked += sum(bool(r.liked or r.voted) for r in expected)
    assert named_liked  # liked papers are named somewhere, so the LIKED_SIMILAR cut was exercised


def test_reasons_for_is_reason_for_row_by_row_and_refuses_rows_that_do_not_fit() -> None:
    profile = build_profile(Subscriber(id="s", email="s@example.org", name="S", topics=("a b", "c"),
                                       liked=("Liked",)), [None])
    similarities = np.array([[0.2, 0.04, 0.05], [0.05, 0.2, 0.049], [0.0, 0.0, 0.9]], dtype=np.float32)
    coverage = np.array([[1.0, 1.0], [0.5, 1.0], [1.0, 1.0]])
    terms = [("x",), (), ("y", "z")]
    together = reasons_for(profile, similarities, coverage, terms)
    assert together == [reason_for(profile, s, c, t) for s, c, t in zip(similarities, coverage, terms, strict=True)]
    assert together == [Reason(topics=("a b",), liked=("Liked",), terms=("x",)), Reason(topics=("c",), terms=()),
                        Reason(liked=("Liked",), terms=("y", "z"))]
    with pytest.raises(ValueError, match="do not fit 3 papers of a profile with 2 topics and 1 liked papers"):
        reasons_for(profile, similarities[:, :2], coverage, terms)
