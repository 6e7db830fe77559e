"""Title matching: the same paper under small variations, different papers kept apart."""

from __future__ import annotations

import pytest

from newsletter.titles import TitleIndex, title_key

BASE = "TÜLU 3: Pushing Frontiers in Open Language Model Post-Training"


@pytest.mark.parametrize(
    "variant",
    [
        "Tulu 3: Pushing Frontiers in Open Language Model Post-Training",  # diacritics
        "tülu 3: pushing frontiers in open language model post-training",  # case
        "TÜLU 3 -- Pushing Frontiers in Open Language Model Post Training.",  # punctuation, trailing period
        "TÜLU 3: Pushing Frontiers in Open Language Model Posttraining",  # hyphenation
        "TÜLU 3:  Pushing   Frontiers in Open Language Model Post-Training ",  # spacing
        "TÜLU 3: Pushing Frontiers in Open Langauge Model Post-Training",  # swapped letters
        "TÜLU 3: Pushing Frontier in Open Language Model Post-Training",  # a dropped letter
    ],
)
def test_variants_of_a_title_are_the_same_paper(variant):
    assert TitleIndex([(BASE, 7)]).find(variant) == 7


@pytest.mark.parametrize(
    ("stored", "other"),
    [
        ("Qwen2.5 Technical Report", "Qwen2.5-Math Technical Report"),  # an extra word
        ("Llama 2: Open Foundation and Fine-Tuned Chat Models", "Llama 3: Open Foundation and Fine-Tuned Chat Models"),
        ("GPT-4 Technical Report", "GPT-4o Technical Report"),
        ("Scaling Laws for Retrieval-Augmented Generation", "Scaling Laws for Retrieval-Augmented Code Generation"),
        ("Graph Attention", "Graph Retention"),  # short titles tolerate no typo
        (BASE, "Pushing Frontiers in Open Language Model Pre-Training"),
    ],
)
def test_titles_that_share_words_are_different_papers(stored, other):
    assert TitleIndex([(stored, 1)]).find(other) is None


def test_key_ignores_case_accents_and_punctuation():
    assert title_key("Über-Tokens: Merging Runs!") == title_key("uber tokens merging runs")


def test_loose_match_accepts_a_reordered_title_but_not_a_prefix():
    index = TitleIndex([("A Survey on Mixture of Experts", 1), ("Sparse Model Soups: A Recipe for Pruning", 2)])
    assert index.find_loose("a survey on experts mixture of") == 1
    assert index.find_loose("Model Soups") is None
