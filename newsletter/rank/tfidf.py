"""TF-IDF ranker ("tfidf-v1"): scores papers' titles and abstracts against a profile. Pure; no I/O.

Fitted once per run on a reference set of papers, it then ranks every
subscriber against the same IDF, so the per-subscriber cost is a sparse matrix
product. scikit-learn and scipy are imported here only, so `import
newsletter.rank` stays cheap for commands that never rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.preprocessing import normalize

from ..models import Paper, Reason
from .base import Ranker, Ranking, Scores
from .explain import reasons_for
from .profile import Profile, paper_text
from .segments import Segments
from .select import Exclusions, rank_with
from .topics import query_text, spellings
from .words import fold_plural, tokenize

MODEL_ID = "tfidf-v1"
REASON_TERMS = 3


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
class TfidfScores(Scores):
    """Scores plus what TF-IDF's `explain` reads: topic coverage, the papers' rows and the profile centroid."""

    coverage: np.ndarray  # papers x topics: share of each topic's words in the paper
    docs: sparse.csr_matrix  # TF-IDF rows; score row i is docs row doc_rows[i] (row i without doc_rows)
    # The profile's unit centroid, dense (one lookup per term of a paper explained), at the terms a reason may
    # show only (0 elsewhere, see TfidfRanker._readable): the filter is paid once per profile, not per paper.
    centroid: np.ndarray
    doc_rows: np.ndarray | None = None

    def doc_row(self, row: int) -> int:
        return row if self.doc_rows is None else int(self.doc_rows[row])

    def pairwise(self, rows: Sequence[int]) -> np.ndarray | None:
        """TF-IDF cosine between the papers at `rows` (their rows are unit length)."""
        picked = self.docs[[self.doc_row(r) for r in rows]]
        return np.asarray((picked @ picked.T).toarray())


def _vectorizer() -> TfidfVectorizer:
    return TfidfVectorizer(
        tokenizer=tokenize, token_pattern=None, lowercase=False, ngram_range=(1, 2),
        stop_words=sorted(fold_plural(w) for w in ENGLISH_STOP_WORDS), sublinear_tf=True,
    )


class TfidfRanker:
    """TF-IDF over title and abstract.

    The IDF is fitted on a reference set of papers that does not depend on who is
    in the run (the pipeline uses the most recent ones), so a preview of one
    subscriber scores exactly like the full run. Papers outside the reference set
    are vectorised on first use and cached by paper id.
    """

    model_id = MODEL_ID

    def __init__(self, reference: Sequence[Paper] = ()) -> None:
        self.exclusions = Exclusions()  # words, not vectors: survives a refit
        self.fit(reference)

    def fit(self, reference: Sequence[Paper]) -> None:
        """Fit the IDF on `reference`; cached vectors from an earlier fit are dropped."""
        self.vectorizer = _vectorizer()
        try:
            self.vectorizer.fit([paper_text(p) for p in reference])
        except ValueError:  # an empty vocabulary: no papers yet, or papers without words
            self.vectorizer.fit(["placeholder"])
        self.terms = self.vectorizer.get_feature_names_out()
        self.words = frozenset(str(t) for t in self.terms if " " not in t)  # for correcting typed topics
        self._stop_words = frozenset(self.vectorizer.get_stop_words() or ())
        # Terms a reason may show: single words of three letters or more with a letter in them.
        self._readable = np.array([" " not in t and len(t) >= 3 and any(c.isalpha() for c in t) for t in self.terms],
                                  dtype=bool)
        self._term_names = [str(t) for t in self.terms]  # plain strings: a reason names a few per chosen paper
        self._papers = _RowCache(self.vectorizer, len(self.terms))
        self._entries = _RowCache(self.vectorizer, len(self.terms))  # topic phrases and liked texts
        self._coverage_memo = _Coverage((), {}, np.zeros((0, 0)))  # topics' coverage of a run's papers

    def vectors(self, papers: Sequence[Paper]) -> sparse.csr_matrix:
        """One L2-normalised TF-IDF row per paper, in order."""
        return self._papers.rows([p.id for p in papers], [paper_text(p) for p in papers])

    def prepare(self, profiles: Sequence[Profile], papers: Sequence[Paper]) -> None:
        """Vectorise every profile entry and paper of a run in two batches (one call beats thousands)."""
        entries = list(dict.fromkeys(text for p in profiles for text in self._entry_texts(p)))
        if entries:
            self._entries.rows(entries, entries)
        if papers:
            self.vectors(papers)

    def rank(self, profile: Profile, candidates: Sequence[Paper], *, max_papers: int, min_score: float,
             diversity: float = 0.0) -> Ranking:
        """Top `max_papers` candidates scoring at least `min_score`, best first, ties by paper id."""
        return rank_with(self, self.exclusions, profile, candidates, max_papers=max_papers, min_score=min_score,
                         diversity=diversity)

    def score(self, profile: Profile, papers: Sequence[Paper]) -> TfidfScores:
        """Similarity of every paper to each profile entry and to the profile as a whole."""
        docs = self.vectors(papers)
        entries = self._entry_texts(profile)
        if not entries:  # nothing to compare with: every paper scores zero
            nothing = np.zeros((len(papers), 0))
            return TfidfScores(np.zeros(len(papers)), nothing, nothing, docs, np.zeros(docs.shape[1]))
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
        return TfidfScores(total=total, per_entry=per_entry, coverage=coverage, docs=docs,
                           centroid=np.where(self._readable, normalize(mean).toarray().ravel(), 0.0))

    def explain(self, profile: Profile, scores: TfidfScores, row: int) -> Reason:
        """The topics and liked papers the paper is close to, and the terms that carried its score."""
        return self.explain_many(profile, scores, [row])[0]

    def explain_many(self, profile: Profile, scores: TfidfScores, rows: Sequence[int]) -> list[Reason]:
        """`explain` of each of `rows`, the comparisons and the term sort done once for all of them."""
        at = np.asarray(rows, dtype=np.int64)
        return reasons_for(profile, scores.per_entry[at], scores.coverage[at], self.carrying_terms_many(scores, at))

    def score_many(self, profiles: Sequence[Profile], papers: Sequence[Paper]) -> TfidfBatch:
        """`score` for many profiles at once: one sparse product for all their entries (papers x profiles)."""
        docs = self.vectors(papers)
        entry_texts = [self._entry_texts(p) for p in profiles]
        unique = list(dict.fromkeys(t for texts in entry_texts for t in texts))
        column = {text: k for k, text in enumerate(unique)}
        entries = normalize(self._entries.rows(unique, unique)) if unique else sparse.csr_matrix((0, docs.shape[1]))
        topics = list(dict.fromkeys(t for p in profiles for t in p.topics))
        topic_column = {topic: k for k, topic in enumerate(topics)}
        slots = Segments([[column[t] for t in texts] for texts in entry_texts])
        coverage = self._run_coverage(papers, docs, topics)
        per_entry = slots.gather((docs @ entries.T).toarray())
        # Topic entries (each profile's first ones) are scaled by their topic's share of words, as `score` does;
        # in place, and only there: a liked text's factor is 1, and x * 1.0 is x.
        topic_slots = Segments([[topic_column[t] for t in p.topics] for p in profiles])
        if topic_slots.width:
            factors = np.where(topic_slots.mask, topic_slots.gather(coverage), 1.0)
            per_entry[:, :, : topic_slots.width] *= factors
        # Each profile's centroid, unit length, all in one product: explaining a paper then needs no scipy call.
        centroids = _only_columns(normalize(_averaging(slots, entries.shape[0]) @ entries), self._readable)
        norms = _mean_norms(entries, slots.columns)
        total = slots.mean(per_entry) / np.where(norms > 0, norms, 1.0)
        return TfidfBatch(total, per_entry, coverage, [[topic_column[t] for t in p.topics] for p in profiles], docs,
                          centroids, slots)

    def _entry_texts(self, profile: Profile) -> list[str]:
        """Profile.entries, each topic with all its spellings ("RAG; retrieval-augmented generation")."""
        return [query_text(t, self.words) for t in profile.topics] + list(profile.liked_texts)

    def _coverage(self, docs: sparse.csr_matrix, topics: Sequence[str]) -> np.ndarray:
        """Share of each topic's content words present in each paper (papers x topics), best spelling.

        A topic is a phrase: "molecule generation" half-present (only "generation")
        is a much weaker signal than TF-IDF alone suggests, so it gets half credit.
        "RAG" is fully present in a paper that spells out retrieval-augmented generation.
        """
        if not topics:
            return np.zeros((docs.shape[0], 0))
        spelt = [spellings(t, self.words) for t in topics]
        flat = [variant for variants in spelt for variant in variants]
        # Every topic has at least one spelling (itself), so each column's run of variants is never empty.
        starts = np.cumsum([0] + [len(variants) for variants in spelt[:-1]])
        return np.maximum.reduceat(self._word_shares(docs, flat), starts, axis=1)

    def _run_coverage(self, papers: Sequence[Paper], docs: sparse.csr_matrix, topics: Sequence[str]) -> np.ndarray:
        """`_coverage` of the run's papers, each topic worked out once per run, not once per block of profiles.

        A topic's column does not depend on the other topics asked with it (word counts, divided the same
        way), so columns kept from an earlier block are the ones this block would compute. They are kept
        for one list of papers (a run's) and dropped with a refit.
        """
        key = tuple(p.id for p in papers)
        memo = self._coverage_memo
        if memo.papers != key:
            memo = _Coverage(key, {}, np.zeros((docs.shape[0], 0)))
        missing = list(dict.fromkeys(t for t in topics if t not in memo.column))
        if missing:  # a new memo, not a changed one: a thread reading the old one meanwhile sees it whole
            column = {**memo.column, **{t: len(memo.column) + k for k, t in enumerate(missing)}}
            memo = _Coverage(key, column, np.hstack([memo.matrix, self._coverage(docs, missing)]))
        self._coverage_memo = memo
        return memo.matrix[:, [memo.column[t] for t in topics]]

    def _word_shares(self, docs: sparse.csr_matrix, topics: Sequence[str]) -> np.ndarray:
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

    def carrying_terms(self, scores: TfidfScores, row: int) -> tuple[str, ...]:
        """The words that carried the paper's score: its largest TF-IDF products with the profile centroid."""
        return self.carrying_terms_many(scores, [row])[0]

    def carrying_terms_many(self, scores: TfidfScores, rows: Sequence[int] | np.ndarray) -> list[tuple[str, ...]]:
        """`carrying_terms` of each of `rows`, found for all of them with one sort (a digest explains ten)."""
        # Read the rows' slices of the CSR arrays directly: slicing rows out of scipy costs more than all of this.
        docs = scores.docs
        at = np.asarray(rows, dtype=np.int64)
        if scores.doc_rows is not None:
            at = scores.doc_rows[at]
        starts, lengths = docs.indptr[at], docs.indptr[at + 1] - docs.indptr[at]
        owner = np.repeat(np.arange(len(at)), lengths)  # which of `rows` each stored entry belongs to
        positions = np.arange(len(owner)) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        indices = docs.indices[positions]
        # Words a reader recognises only: the centroid is 0 at the others (a two-word term is often debris,
        # "graph neural", "code llm"; a number or a two-letter stub says nothing: see _readable).
        contribution = docs.data[positions] * scores.centroid[indices]
        carrying = contribution != 0
        owner, indices, contribution = owner[carrying], indices[carrying], contribution[carrying]
        # Per paper, largest first, ties by term. Readable terms are single distinct words, so none holds another:
        # each paper's first REASON_TERMS are its reason's.
        order = np.lexsort((indices, -contribution, owner))
        owner, indices = owner[order], indices[order]
        first = np.searchsorted(owner, owner)  # where each entry's paper starts in the sorted entries
        best = np.arange(len(owner)) - first < REASON_TERMS
        names = [self._term_names[index] for index in indices[best].tolist()]
        out, start = [], 0
        for count in np.bincount(owner[best], minlength=len(at)).tolist():
            out.append(tuple(names[start:start + count]))
            start += count
        return out


@dataclass(frozen=True, slots=True)
class _Coverage:
    """Topics' coverage of one list of papers (their ids): papers x topics, a topic's column by name."""

    papers: tuple[int, ...]
    column: dict[str, int]
    matrix: np.ndarray


@dataclass(frozen=True, slots=True)
class TfidfBatch:
    """`TfidfRanker.score_many`'s result: totals for every paper and profile, Scores for a profile on demand."""

    total: np.ndarray  # papers x profiles
    per_entry: np.ndarray  # papers x profiles x entries (padded; coverage applied to topic columns)
    coverage: np.ndarray  # papers x distinct topics of the batch
    topic_columns: list[list[int]]  # per profile, its topics' columns of `coverage`
    docs: sparse.csr_matrix
    centroids: sparse.csr_matrix  # profiles x terms, unit rows
    slots: Segments  # per profile, its entries' rows of the batch's distinct entry texts

    eligible = None  # TF-IDF has no evidence floor

    def entry_scores(self, profile: int) -> np.ndarray:
        """papers x the profile's entries (Profile.entries order)."""
        return self.per_entry[:, profile, : len(self.slots.columns[profile])]

    def take(self, profile: int, rows: Sequence[int] | np.ndarray) -> TfidfScores:
        """The profile's TfidfScores for the papers at `rows`, as `score` would give them."""
        at = np.asarray(rows, dtype=np.int64)
        centroid = np.zeros(self.centroids.shape[1])
        start, end = self.centroids.indptr[profile], self.centroids.indptr[profile + 1]
        centroid[self.centroids.indices[start:end]] = self.centroids.data[start:end]
        return TfidfScores(total=self.total[at, profile], per_entry=self.entry_scores(profile)[at],
                           coverage=self.coverage[at[:, None], self.topic_columns[profile]],
                           docs=self.docs, centroid=centroid, doc_rows=at)


def _averaging(slots: Segments, width: int) -> sparse.csr_matrix:
    """profiles x columns, 1/n at each of a profile's n columns: `averaging @ rows` is each profile's mean row."""
    weights = [1.0 / len(cols) for cols in slots.columns for _ in cols]
    columns = [k for cols in slots.columns for k in cols]
    starts = np.concatenate([[0], np.cumsum(slots.counts)])
    return sparse.csr_matrix((weights, columns, starts), shape=(len(slots.columns), width))


def _mean_norms(entries: sparse.csr_matrix, columns: Sequence[Sequence[int]]) -> np.ndarray:
    """Per profile, the norm of the mean of its entries' rows (0 without any), from the entries' dot products.

    Each profile's block of the Gram matrix is summed as a row of its own, by numpy's sum over a contiguous
    row, exactly as summing the block alone adds it up. Only the blocks' products are read out of the sparse
    Gram matrix: as a dense array it is thousands of entries squared (tens of megabytes a block of profiles).
    """
    gram = (entries @ entries.T).tocsr()
    gram.sort_indices()  # rows in order, columns sorted within each: the keys below come out sorted
    keys = np.repeat(np.arange(gram.shape[0], dtype=np.int64), np.diff(gram.indptr)) * gram.shape[1] + gram.indices
    values = gram.data
    out = np.zeros(len(columns))
    by_size: dict[int, list[int]] = {}
    for profile, cols in enumerate(columns):
        if cols:
            by_size.setdefault(len(cols), []).append(profile)
    for size, profiles in by_size.items():
        at = np.array([columns[p] for p in profiles], dtype=np.int64)  # profiles x size
        wanted = (at[:, :, None] * gram.shape[1] + at[:, None, :]).reshape(len(profiles), size * size)
        found = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
        block = (np.where(keys[found] == wanted, values[found], 0.0) if len(keys)
                 else np.zeros(wanted.shape))
        out[profiles] = np.sqrt(np.maximum(block.sum(axis=1), 0.0)) / size
    return out


def _only_columns(matrix: sparse.csr_matrix, keep: np.ndarray) -> sparse.csr_matrix:
    """`matrix` with the entries outside the `keep` columns dropped (the others as they were)."""
    out = matrix.tocsr(copy=True)
    out.data[~keep[out.indices]] = 0.0
    out.eliminate_zeros()
    return out


def _conforms(ranker: TfidfRanker) -> Ranker[TfidfScores]:
    # Never called: mypy checks here that TfidfRanker satisfies the Ranker protocol structurally.
    return ranker
