"""Topics as people type them (acronyms, plurals, typos) and exclude phrases, on small real texts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from newsletter.models import Paper, Subscriber
from newsletter.rank import build_profile, fit_ranker
from newsletter.rank.select import Exclusions
from newsletter.rank.topics import correct, query_text, spellings

T0 = datetime(2026, 11, 20, tzinfo=UTC)

PAPERS = [
    Paper(id=1, title="Scaling laws for retrieval-augmented generation", first_seen=T0,
          abstract="We retrieve passages from a large corpus and condition the generator on them."),
    Paper(id=2, title="Quantizing large language models to three bits", first_seen=T0,
          abstract="Weight-only quantization keeps the perplexity of a large language model."),
    Paper(id=3, title="Offline reinforcement learning with skill priors", first_seen=T0,
          abstract="Reinforcement learning from logged data with return-conditioned skills."),
    Paper(id=4, title="Few-step image synthesis with consistency training", first_seen=T0,
          abstract="A diffusion model generates images in four steps."),
    Paper(id=5, title="Image classification under label noise", first_seen=T0,
          abstract="Robust losses for classifying images with noisy labels."),
    Paper(id=6, title="Bird song in noisy cities", first_seen=T0, abstract="Urban noise changes song."),
]


def subscriber(**fields) -> Subscriber:
    return Subscriber(**{"id": "s", "email": "s@example.org", "name": "S", **fields})


def test_acronyms_and_expansions_name_one_topic() -> None:
    assert "retrieval-augmented generation" in spellings("RAG")
    assert "retrieval augmented generation" in spellings("RAG")
    assert "rag" in spellings("Retrieval-Augmented Generation")
    assert "large language model" in spellings("LLMs")  # the plural folds first
    assert "llm" in spellings("large language models")
    assert spellings("medieval poetry") == ("medieval poetry",)


def test_small_typos_are_corrected_against_the_papers_words_only() -> None:
    words = {"reinforcement", "learning", "quantization", "robotics"}
    assert correct("reinforcment", words) == "reinforcement"
    assert correct("quantisation", words) == "quantization"
    assert correct("robot", words) == "robot"  # a real short word, not a typo of "robotics"
    assert correct("poetry", words) == "poetry"  # nothing close: left alone
    assert "reinforcement learning" in spellings("reinforcment learning", words)


@pytest.mark.parametrize("model", ["tfidf-v1", "hybrid-minilm-v1"])
@pytest.mark.parametrize(("topic", "expected"), [
    ("RAG", 1), ("LLMs", 2), ("LLM quantisation", 2), ("reinforcment learning", 3), ("RL", 3),
])
def test_a_topic_as_typed_finds_the_paper_that_spells_it_out(model, topic, expected) -> None:
    ranker = fit_ranker(PAPERS, model)
    profile = build_profile(subscriber(topics=(topic,)), [])
    ranking = ranker.rank(profile, PAPERS, max_papers=3, min_score=0.0)
    assert ranking.chosen[0].paper.id == expected
    assert ranking.chosen[0].reason.topics == (topic,)  # the email may claim it: the paper shows its words


def test_an_exclude_phrase_matches_its_spellings_but_not_a_shared_common_word() -> None:
    exclusions = Exclusions()
    kept, excluded = exclusions.split(PAPERS, ["LLM"])
    assert excluded == 1 and 2 not in {p.id for p in kept}  # "large language model" spelt out
    kept, excluded = exclusions.split(PAPERS, ["image synthesis"])
    assert excluded == 1 and {p.id for p in kept} == {1, 2, 3, 5, 6}  # the classification paper stays


def test_an_exclude_phrase_pushes_close_papers_down_in_the_hybrid() -> None:
    ranker = fit_ranker(PAPERS)
    base = build_profile(subscriber(topics=("images",)), [])
    excluding = build_profile(subscriber(topics=("images",), exclude=("generative image models",)), [])
    before = ranker.score(base, PAPERS).total
    after = ranker.score(excluding, PAPERS).total
    # Paper 4 (a generative model of images, without the phrase) loses ground to paper 5 (classification).
    assert before[3] - before[4] > after[3] - after[4]


class NeverCompared(frozenset):
    """A vocabulary that fails the test if anything compares it with another (a 20,000-word comparison
    per lookup cost a 1,000-subscriber run 4 s when each run's ranker brought an equal vocabulary)."""

    __hash__ = frozenset.__hash__

    def __eq__(self, other: object) -> bool:
        raise AssertionError("a vocabulary was compared element by element")


def test_each_run_s_vocabulary_is_looked_up_by_identity_not_compared_with_the_last_one() -> None:
    words = ["reinforcement", "learning", "graph", "neural", "network"]
    yesterday, today = NeverCompared(words), NeverCompared(words)
    for vocabulary in (yesterday, today, yesterday, today):
        assert spellings("reinforcment learning", vocabulary)[1] == "reinforcement learning"
        assert spellings("GNN", vocabulary) == ("GNN", "graph neural network")


def test_query_texts_are_remembered_per_vocabulary_not_across_vocabularies() -> None:
    typo = "reinforcment learning"
    spelt, bare = frozenset(["reinforcement", "learning"]), frozenset(["learning"])
    corrected = "reinforcment learning; reinforcement learning; rl"
    for vocabulary, expected in ((spelt, corrected), (bare, typo), (spelt, corrected), ((), typo), (bare, typo)):
        assert query_text(typo, vocabulary) == expected
        assert query_text(typo, vocabulary) == "; ".join(spellings(typo, vocabulary))


def test_a_typo_equally_close_to_two_words_is_corrected_the_same_in_every_process():
    # "modelx" is one edit from "models" and from "modely": the choice must not follow a set's hash order,
    # which differs between interpreters (a producer process would otherwise rank unlike the run's own).
    words = ["models", "modely", "graphs"]
    assert correct("modelx", words) == correct("modelx", list(reversed(words))) == "models"


def test_phrases_without_a_vocabulary_do_not_push_out_a_ranker_s_vocabulary() -> None:
    # Exclude phrases (no vocabulary) are asked in turn with each subscriber's topics (the ranker's words):
    # neither may evict the other's memo or be answered from it.
    from newsletter.rank import topics

    words = frozenset(["reinforcement", "learning"])
    for _ in range(3):
        assert query_text("reinforcment learning", words) == "reinforcment learning; reinforcement learning; rl"
        assert query_text("reinforcment learning") == "reinforcment learning"
        assert topics._last[0] is words  # the ranker's memo stays the one at hand
    assert "reinforcment learning" in topics._NO_WORDS_MEMO.texts
