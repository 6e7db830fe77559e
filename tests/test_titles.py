"""Title matching: the same paper under small variations, different papers kept apart."""

from __future__ import annotations

import random
import re
from datetime import UTC, date, datetime

import pytest
from rapidfuzz import process
from rapidfuzz.distance import OSA

from newsletter.models import Page, ParsedPaper
from newsletter.store import open_store
from newsletter.titles import TitleIndex, allowed_typos, same_numbers, title_key

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


# -- symbol-only titles ----------------------------------------------------------------------------------


@pytest.mark.parametrize("title", ["🚀🚀🚀", "!!!", "—", "⚡ ⚡", "🤖 + 🧠 = ❤️"])
def test_a_symbol_only_title_has_a_key_of_its_own(title):
    assert title_key(title) != ""
    assert title_key(title) == title_key(f"  {title.replace(' ', '  ')} ")  # spacing still ignored


def test_symbol_only_titles_match_only_themselves():
    index = TitleIndex([("🚀🚀🚀", 1), ("!!!", 2)])
    assert index.find("🚀 🚀 🚀") == 1
    assert index.find("🚀🚀") is None and index.find("🚀🚀🚀🚀") is None
    assert index.find("???") is None
    # Long enough to tolerate a typo if it were words, but one changed symbol is another paper.
    long = "★" * 30
    assert TitleIndex([(long, 3)]).find("★" * 29 + "☆") is None


def test_a_blank_key_matches_nothing():
    index = TitleIndex([("", 1), ("   ", 2), ("A Real Title About Graph Networks", 3)])
    assert len(index) == 1
    assert index.find("") is None and index.find_key("") is None


# -- the index against brute force -----------------------------------------------------------------------

VOCAB = ("graph neural model language vision sparse dense attention learning network diffusion agent "
         "robust scaling token reward policy retrieval memory expert").split()
NAMES = ("Llama", "Qwen", "GPT", "Phi")


def brute_force_find(key: str, known: list[str]) -> int | None:
    """The original O(n) lookup: exact key, else the first of the 5 closest within both keys' allowance."""
    if key in known:
        return known.index(key)
    limit = allowed_typos(key)
    if limit == 0:
        return None
    for _, distance, position in process.extract(key, known, scorer=OSA.distance, score_cutoff=limit, limit=5):
        other = known[position]
        if distance <= min(limit, allowed_typos(other)) and same_numbers(key, other):
            return int(position)
    return None


def generated_title(rng: random.Random) -> str:
    # A small vocabulary makes many titles share pieces, so the index must reject plenty of candidates.
    words = [rng.choice(VOCAB) for _ in range(rng.randint(2, 9))]
    if rng.random() < 0.4:
        words.insert(0, f"{rng.choice(NAMES)} {rng.randint(1, 4)}")
    return " ".join(words)


def mutated(title: str, rng: random.Random) -> str:
    """One or two of: swap, deletion, insertion, substitution, a changed number, an extra word."""
    for _ in range(rng.choice((1, 1, 1, 2))):
        i = rng.randrange(max(1, len(title) - 1))
        kind = rng.randrange(6)
        if kind == 0:
            title = title[:i] + title[i + 1 : i + 2] + title[i : i + 1] + title[i + 2 :]
        elif kind == 1:
            title = title[:i] + title[i + 1 :]
        elif kind == 2:
            title = title[:i] + rng.choice("abcxyz ") + title[i:]
        elif kind == 3:
            title = title[:i] + rng.choice("aeiou") + title[i + 1 :]
        elif kind == 4:
            title = re.sub(r"\d", lambda _: str(rng.randint(1, 4)), title, count=1)
        else:
            title = f"{title} {rng.choice(VOCAB)}"
    return title


def test_index_decides_exactly_as_brute_force_on_generated_titles():
    rng = random.Random(20260320)
    titles: list[str] = []
    for _ in range(4000):
        titles.append(mutated(rng.choice(titles), rng) if titles and rng.random() < 0.5 else generated_title(rng))
    index, known, ids = TitleIndex(), [], []
    typo_matches = 0
    for ident, title in enumerate(titles):
        key = title_key(title)
        expected = brute_force_find(key, known)
        expected_id = None if expected is None else ids[expected]
        assert index.find(title) == expected_id, title
        if expected is None:
            index.add(title, ident)
            known.append(key)
            ids.append(ident)
        elif known[expected] != key:
            typo_matches += 1
    # The generated set exercises both outcomes heavily, not just exact hits and misses.
    assert typo_matches > 200
    assert 1000 < len(index) < 3500


def keyed_index(pairs: list[tuple[str, int]]) -> TitleIndex:
    index = TitleIndex()
    for key, ident in pairs:
        index.add_key(key, ident)
    return index


def test_an_index_from_keys_decides_as_one_from_titles():
    titles = [("TÜLU 3: Pushing Frontiers in Open Language Model Post-Training", 1),
              ("Qwen2.5 Technical Report", 2), ("🚀🚀🚀", 3)]
    by_keys = keyed_index([(title_key(t), i) for t, i in titles])
    by_titles = TitleIndex(titles)
    for query in ("Tulu 3: Pushing Frontiers in Open Langauge Model Post-Training", "Qwen2.5-Math Technical Report",
                  "🚀 🚀🚀", "Something else entirely, long enough to fuzz"):
        assert by_keys.find(query) == by_titles.find(query)
    by_keys.add_key(title_key("Graph Retention Networks for Large Scale Tasks"), 4)
    assert by_keys.find_key(title_key("Graph Retention Network for Large Scale Tasks")) == 4
    with pytest.raises(ValueError, match="needs titles"):
        by_keys.find_loose("a survey of nothing in particular")


def test_an_entry_added_later_is_found_by_the_next_lookup():
    index = TitleIndex()
    index.add("Sparse Mixture of Experts for Long Context Language Models", 9)
    assert index.find("Sparse Mixture of Experts for Long Contxet Language Models") == 9
    assert index.find("Sparse Mixture of Experts for Long Context Language Models 2") is None


def test_a_swap_anywhere_is_found_even_across_the_index_cuts():
    # A swap straddling a cut changes two pieces; every position is tried, boundaries included.
    for title in ("Sparse Graph Transformers at Scale", "Retrieval Augmented Generation for Long Context Models Today"):
        key = title_key(title)
        index = keyed_index([(key, 1)])
        for i in range(len(key) - 1):
            swapped = key[:i] + key[i + 1] + key[i] + key[i + 2 :]
            if swapped != key:
                assert index.find_key(swapped) == 1, (i, swapped)
        if allowed_typos(key) == 2:
            for i in range(0, len(key) - 1, 3):
                for j in range(i + 2, len(key)):
                    twice = key[:i] + key[i + 1] + key[i] + key[i + 2 : j] + key[j + 1 :]
                    assert index.find_key(twice) == 1, (i, j, twice)


def test_the_store_decides_as_brute_force_page_by_page(tmp_path):
    """The store matches against its `title_pieces` tables, not this in-memory index: same rules, checked
    on 2,000 generated titles in four pages (two merged into title_pieces, two in the recent table). Each
    entry first looks for a stored paper, then for an earlier new paper of its own page, as ingest does."""
    rng = random.Random(20261201)
    titles: list[str] = []
    for _ in range(2000):
        titles.append(mutated(rng.choice(titles), rng) if titles and rng.random() < 0.5 else generated_title(rng))
    expected_group: list[int] = []  # per title: the index of the first title of its paper
    stored_keys: list[str] = []
    stored_first: list[int] = []
    with open_store(tmp_path / "s.sqlite3") as store:
        for page_number, start in enumerate(range(0, len(titles), 500)):
            chunk = titles[start : start + 500]
            page_keys: list[str] = []
            page_first: list[int] = []
            for offset, title in enumerate(chunk):
                key = title_key(title)
                found = brute_force_find(key, stored_keys)
                if found is not None:
                    expected_group.append(stored_first[found])
                    continue
                earlier = brute_force_find(key, page_keys)
                if earlier is not None:
                    expected_group.append(page_first[earlier])
                    continue
                page_keys.append(key)
                page_first.append(start + offset)
                expected_group.append(start + offset)
            stored_keys += page_keys
            stored_first += page_first
            page = Page(name=f"p{page_number}.txt", sha256=f"{page_number:064d}", date=date(2026, 12, 1),
                        papers=tuple(ParsedPaper(title=title, abstract="An abstract.", line=2 * n + 1, position=n + 1)
                                     for n, title in enumerate(chunk)))
            store.papers.add_page(page, datetime(2026, 12, 1, 6, tzinfo=UTC))
            if page_number == 1:  # the first two pages' probes move to title_pieces, the next two stay recent
                assert store.papers.merge_recent_pieces() > 1000
        paper_of_title: dict[int, int] = {}  # title index -> stored paper id
        for paper in store.papers.get():
            for sighting in paper.sightings:
                page_number = int(sighting.page_name[1:-4])
                paper_of_title[page_number * 500 + sighting.position - 1] = paper.id
        assert store.papers.count() == len(stored_keys)
    first_title_of_paper: dict[int, int] = {}
    for index in range(len(titles)):
        first_title_of_paper.setdefault(paper_of_title[index], index)
    actual_group = [first_title_of_paper[paper_of_title[index]] for index in range(len(titles))]
    assert actual_group == expected_group
    # Typo matches across pages and within a page both happened, so both paths were exercised.
    assert sum(1 for i, group in enumerate(expected_group) if group != i and group // 500 != i // 500) > 100
    assert sum(1 for i, group in enumerate(expected_group) if group != i and group // 500 == i // 500) > 100
