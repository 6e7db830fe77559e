"""Scores candidate papers against a subscriber's profile (topics + liked papers) with TF-IDF.

A Ranker is fitted once per run on the papers in play, then ranks every
subscriber against it, so the per-subscriber cost is a sparse matrix product.
Each chosen paper carries a Reason: the topics and liked papers it is close
to, and the terms that carried its score.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.preprocessing import normalize

from .models import Paper, Reason, ScoredPaper, Subscriber

TOKEN = re.compile(r"[a-z0-9]+(?:[-.][a-z0-9]+)*")
# An entry (topic or liked paper) is named in the reason when it is this close to the paper...
REASON_MIN_SIMILARITY = 0.05
# ...and, for a topic, when the paper holds most of its words (2 of 3, but not 1 of 2).
REASON_MIN_COVERAGE = 0.66
REASON_TERMS = 3


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens with a light plural fold ("networks" -> "network")."""
    return [fold_plural(token) for token in TOKEN.findall(text.lower())]


def fold_plural(token: str) -> str:
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def paper_text(paper: Paper) -> str:
    # The title twice: it is the densest statement of what a paper is about.
    return f"{paper.title}. {paper.title}. {paper.abstract}"


class _RowCache:
    """TF-IDF rows by key, vectorised in batches on first use; rows are sliced from one matrix."""

    def __init__(self, vectorizer: TfidfVectorizer, width: int) -> None:
        self._vectorizer = vectorizer
        self._row_of: dict[object, int] = {}
        self._matrix = sparse.csr_matrix((0, width))

    def rows(self, keys: Sequence[object], texts: Sequence[str]) -> sparse.csr_matrix:
        missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in self._row_of}
        if missing:
            added = self._vectorizer.transform(list(missing.values()))
            for key in missing:
                self._row_of[key] = len(self._row_of)
            self._matrix = sparse.vstack([self._matrix, added], format="csr")
        return self._matrix[[self._row_of[k] for k in keys]]


@dataclass(frozen=True, slots=True)
class Ranking:
    chosen: tuple[ScoredPaper, ...]
    candidate_count: int  # papers considered, after removing excluded and liked ones
    excluded: int  # papers pushed out by an `exclude` phrase


@dataclass(frozen=True, slots=True)
class Scores:
    total: np.ndarray  # one score per paper
    per_entry: np.ndarray  # papers x profile entries (topics, then liked papers)
    coverage: np.ndarray  # papers x topics: share of each topic's words in the paper
    docs: sparse.csr_matrix
    centroid: sparse.csr_matrix


@dataclass(frozen=True, slots=True)
class Profile:
    """A subscriber's profile as text: topic phrases and liked papers (resolved or as bare titles)."""

    topics: tuple[str, ...]
    liked_titles: tuple[str, ...]
    liked_texts: tuple[str, ...]
    liked_ids: frozenset[int]
    exclude: tuple[str, ...]


def build_profile(subscriber: Subscriber, liked: Sequence[Paper | None]) -> Profile:
    """`liked[i]` is the stored paper subscriber.liked[i] names, or None when none matched."""
    texts = tuple(paper_text(p) if p is not None else title for p, title in zip(liked, subscriber.liked, strict=True))
    return Profile(
        topics=subscriber.topics,
        liked_titles=tuple(p.title if p is not None else t for p, t in zip(liked, subscriber.liked, strict=True)),
        liked_texts=texts,
        liked_ids=frozenset(p.id for p in liked if p is not None),
        exclude=subscriber.exclude,
    )


class Ranker:
    """TF-IDF over title and abstract.

    The IDF is fitted on a reference set of papers that does not depend on who is
    in the run (the pipeline uses the most recent ones), so a preview of one
    subscriber scores exactly like the full run. Papers outside the reference set
    are vectorised on first use and cached.
    """

    def __init__(self, reference: Sequence[Paper]) -> None:
        self.vectorizer = TfidfVectorizer(
            tokenizer=tokenize, token_pattern=None, lowercase=False, ngram_range=(1, 2),
            stop_words=sorted(fold_plural(w) for w in ENGLISH_STOP_WORDS), sublinear_tf=True,
        )
        try:
            self.vectorizer.fit([paper_text(p) for p in reference])
        except ValueError:  # an empty vocabulary: no papers yet, or papers without words
            self.vectorizer.fit(["placeholder"])
        self.terms = self.vectorizer.get_feature_names_out()
        self._stop_words = frozenset(self.vectorizer.get_stop_words() or ())
        self._papers = _RowCache(self.vectorizer, len(self.terms))
        self._entries = _RowCache(self.vectorizer, len(self.terms))  # topic phrases and liked texts
        self._tokens: dict[int, str] = {}

    def vectors(self, papers: Sequence[Paper]) -> sparse.csr_matrix:
        """One L2-normalised TF-IDF row per paper, in order."""
        return self._papers.rows([p.id for p in papers], [paper_text(p) for p in papers])

    def prepare(self, profiles: Sequence[Profile], papers: Sequence[Paper]) -> None:
        """Vectorise every profile entry and paper of a run in two batches (one call beats thousands)."""
        entries = list(dict.fromkeys(text for p in profiles for text in p.topics + p.liked_texts))
        if entries:
            self._entries.rows(entries, entries)
        if papers:
            self.vectors(papers)

    def rank(self, profile: Profile, candidates: Sequence[Paper], *, max_papers: int, min_score: float) -> Ranking:
        """Top `max_papers` candidates scoring at least `min_score`, best first, ties by paper id."""
        pool = [p for p in candidates if p.id not in profile.liked_ids]
        # " word word " so a phrase only matches whole words, after the same plural folding
        patterns = [f" {' '.join(words)} " for words in map(tokenize, profile.exclude) if words]
        kept = [p for p in pool if not self._excluded(p, patterns)]
        if not kept or not (profile.topics or profile.liked_texts):
            return Ranking((), len(kept), len(pool) - len(kept))
        scored = self.score(profile, kept)
        order = sorted(range(len(kept)), key=lambda i: (-scored.total[i], kept[i].id))
        chosen = tuple(
            ScoredPaper(kept[i], round(float(scored.total[i]), 6), self._reason(profile, scored, i))
            for i in order[:max_papers]
            if scored.total[i] >= min_score and scored.total[i] > 0
        )
        return Ranking(chosen, len(kept), len(pool) - len(kept))

    def score(self, profile: Profile, papers: Sequence[Paper]) -> Scores:
        """Similarity of every paper to each profile entry and to the profile as a whole."""
        docs = self.vectors(papers)
        entries = profile.topics + profile.liked_texts
        if not entries:  # nothing to compare with: every paper scores zero
            nothing = np.zeros((len(papers), 0))
            return Scores(np.zeros(len(papers)), nothing, nothing, docs, sparse.csr_matrix((1, docs.shape[1])))
        entry_vectors = normalize(self._entries.rows(entries, entries))
        mean = sparse.csr_matrix(entry_vectors.mean(axis=0))
        per_entry = (docs @ entry_vectors.T).toarray()  # papers x entries, cosine
        coverage = self._coverage(docs, profile.topics)
        per_entry[:, : len(profile.topics)] *= coverage
        # Cosine to the profile centroid is the mean entry cosine over the centroid's
        # norm; taking the mean of the coverage-adjusted cosines keeps that score
        # (the best of the variants on ../shared/bench, see README) with phrase coverage.
        norm = float(np.sqrt(mean.multiply(mean).sum())) or 1.0
        total = per_entry.mean(axis=1) / norm
        return Scores(total=total, per_entry=per_entry, coverage=coverage, docs=docs, centroid=normalize(mean))

    def _coverage(self, docs: sparse.csr_matrix, topics: Sequence[str]) -> np.ndarray:
        """Share of each topic's content words present in each paper (papers x topics).

        A topic is a phrase: "molecule generation" half-present (only "generation")
        is a much weaker signal than TF-IDF alone suggests, so it gets half credit.
        """
        vocabulary = self.vectorizer.vocabulary_
        rows: list[int] = []
        columns: list[int] = []
        sizes = np.ones(len(topics))
        for column, topic in enumerate(topics):
            words = {w for w in tokenize(topic) if w not in self._stop_words}
            sizes[column] = max(len(words), 1)
            ids = [vocabulary[w] for w in words if w in vocabulary]
            rows += ids
            columns += [column] * len(ids)
        indicator = sparse.csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(docs.shape[1], len(topics)))
        present = docs.copy()
        present.data = np.ones_like(present.data)
        return (present @ indicator).toarray() / sizes

    def _excluded(self, paper: Paper, patterns: Sequence[str]) -> bool:
        if not patterns:
            return False
        if paper.id not in self._tokens:
            self._tokens[paper.id] = f" {' '.join(tokenize(paper.title + ' ' + paper.abstract))} "
        return any(pattern in self._tokens[paper.id] for pattern in patterns)

    def _reason(self, profile: Profile, scored: Scores, row: int) -> Reason:
        similarities = scored.per_entry[row]
        topic_count = len(profile.topics)
        topic_rows = zip(profile.topics, similarities[:topic_count], scored.coverage[row], strict=True)
        topics = tuple(
            topic
            for topic, similarity, share in topic_rows
            if similarity >= REASON_MIN_SIMILARITY and share >= REASON_MIN_COVERAGE
        )
        liked = tuple(
            title
            for title, similarity in zip(profile.liked_titles, similarities[topic_count:], strict=True)
            if similarity >= REASON_MIN_SIMILARITY
        )
        return Reason(topics=topics, liked=liked, terms=self._carrying_terms(scored.docs[row], scored.centroid))

    def _carrying_terms(self, doc: sparse.csr_matrix, centroid: sparse.csr_matrix) -> tuple[str, ...]:
        contribution = doc.multiply(centroid).tocsr()
        order = sorted(zip(contribution.data, contribution.indices, strict=True), key=lambda pair: (-pair[0], pair[1]))
        picked: list[str] = []
        for _, index in order:
            term = str(self.terms[index])
            # "neural network" already says "network"; skip a word inside a chosen phrase.
            if any(term in chosen.split() or chosen in term.split() for chosen in picked):
                continue
            picked.append(term)
            if len(picked) == REASON_TERMS:
                break
        return tuple(picked)
