"""TF-IDF's batch shortcuts give, to the bit, what the plain computation gave.

Each profile's centroid norm is read from the sparse Gram matrix (not a dense
one), and a topic's coverage of the run's papers is worked out once per run
(not once per block): kept for one list of papers and one fit only.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from scipy import sparse
from sklearn.preprocessing import normalize

from newsletter.models import Paper, Subscriber
from newsletter.rank import build_profile
from newsletter.rank.segments import Segments
from newsletter.rank.tfidf import TfidfRanker, _mean_norms

T0 = datetime(2026, 11, 20, tzinfo=UTC)
PAPERS = [Paper(id=k, title=title, abstract=abstract, first_seen=T0) for k, (title, abstract) in enumerate([
    ("Graph neural networks for molecules", "Message passing over atoms and bonds."),
    ("Retrieval-augmented generation for code", "Retrieval helps large language models write code."),
    ("Large language models reason about graphs", "Graph reasoning with LLMs."),
    ("Reinforcement learning for robot grasping", "A policy learns to grasp."),
    ("Molecule generation with diffusion", "Diffusion models generate molecules."),
    ("Bird song in cities", "Urban noise changes song."),
])]


@pytest.mark.parametrize("seed", range(3))
def test_mean_norms_are_the_dense_gram_blocks_summed(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Sparse rows with shared columns (so most pairs have a product and some have none), some rows empty.
    dense = np.where(rng.random((60, 25)) < 0.15, rng.random((60, 25)), 0.0)
    dense[[3, 17]] = 0.0
    entries = normalize(sparse.csr_matrix(dense))
    columns = [list(rng.integers(0, 60, size=int(rng.integers(0, 12)))) for _ in range(80)] + [[], [3], [3, 17]]
    gram = (entries @ entries.T).toarray()
    expected = [np.sqrt(max(float(gram[np.ix_(cols, cols)].sum()), 0.0)) / len(cols) if cols else 0.0
                for cols in columns]
    found = _mean_norms(entries, columns)
    assert found.tolist() == expected
    assert (found > 0).sum() > 60 and found[-1] == found[-2] == found[-3] == 0.0


def test_mean_norms_without_any_products() -> None:
    empty = sparse.csr_matrix((4, 5))
    assert _mean_norms(empty, [[0, 1], [], [2]]).tolist() == [0.0, 0.0, 0.0]
    assert _mean_norms(empty, []).tolist() == []


def profiles_with(*topic_lists: tuple[str, ...]):
    return [build_profile(Subscriber(id=f"s{k}", email="s@example.org", name="S", topics=topics), [])
            for k, topics in enumerate(topic_lists)]


def fresh_coverage(ranker: TfidfRanker, papers, topics) -> np.ndarray:
    return ranker._coverage(ranker.vectors(papers), topics)


def test_topic_coverage_kept_between_blocks_is_what_each_block_would_compute() -> None:
    ranker = TfidfRanker(PAPERS)
    first = ranker.score_many(profiles_with(("graph neural networks", "RAG"), ("molecule generation",)), PAPERS)
    assert first.coverage.tolist() == fresh_coverage(ranker, PAPERS, ["graph neural networks", "RAG",
                                                                      "molecule generation"]).tolist()
    # A second block: one topic kept from the first, one new, in another order.
    second = ranker.score_many(profiles_with(("LLMs", "graph neural networks")), PAPERS)
    expected = fresh_coverage(ranker, PAPERS, ["LLMs", "graph neural networks"])
    assert np.array_equal(second.coverage, expected) and expected[:, 0].any() and expected[:, 1].any()


def test_topic_coverage_is_not_kept_across_papers_or_fits() -> None:
    ranker = TfidfRanker(PAPERS)
    topics = profiles_with(("molecule generation", "bird song"))
    ranker.score_many(topics, PAPERS)
    fewer = PAPERS[3:]  # another list of papers: the kept columns (six rows) are not theirs
    assert np.array_equal(ranker.score_many(topics, fewer).coverage,
                          fresh_coverage(ranker, fewer, ["molecule generation", "bird song"]))
    ranker.score_many(topics, PAPERS)
    ranker.fit(PAPERS[:2])  # a new vocabulary: "bird" and "song" are no longer words of it
    refitted = ranker.score_many(topics, PAPERS)
    assert np.array_equal(refitted.coverage, fresh_coverage(ranker, PAPERS, ["molecule generation", "bird song"]))
    assert refitted.coverage[5, 1] == 0.0  # was 1.0 before the refit: nothing stale survived it


def test_per_entry_scores_scale_topics_in_place_as_the_full_product_did() -> None:
    ranker = TfidfRanker(PAPERS)
    profiles = profiles_with(("graph neural networks", "RAG"), (), ("molecule generation",))
    profiles.append(build_profile(Subscriber(id="l", email="s@example.org", name="S", topics=("LLMs",),
                                             liked=("Bird song in cities",)), [PAPERS[5]]))
    batch = ranker.score_many(profiles, PAPERS)
    # The first computation: every entry gathered, times every entry's factor gathered (1 for a liked text).
    texts = [ranker._entry_texts(p) for p in profiles]
    unique = list(dict.fromkeys(t for group in texts for t in group))
    topics = list(dict.fromkeys(t for p in profiles for t in p.topics))
    slots = Segments([[unique.index(t) for t in group] for group in texts])
    products = (ranker.vectors(PAPERS) @ normalize(ranker._entries.rows(unique, unique)).T).toarray()
    scale = np.hstack([np.ones((len(PAPERS), 1)), fresh_coverage(ranker, PAPERS, topics)])
    factors = Segments([[1 + topics.index(t) for t in p.topics] + [0] * len(p.liked_texts) for p in profiles])
    expected = slots.gather(products) * factors.gather(scale)
    assert batch.per_entry.strides == expected.strides and np.array_equal(batch.per_entry, expected)
    assert (batch.coverage < 1).any() and (batch.per_entry > 0).any()  # some topic only partly present
