"""The hybrid ranker ("hybrid-minilm-v1"): sentence embeddings and TF-IDF, calibrated. Pure but for the vectors.

Scores are built from parts, each standardised against the same profile's
scores on background papers (an even sample of the reference set), so a
part's weight means the same for every subscriber:

- liked papers: cosine to their centroid, and the mean of the two best cosines
  (a profile with two interests should not be averaged into neither);
- topics: cosine to the typed topics as one phrase, expanded with the
  reference papers closest to it (pseudo-relevance feedback: "RAG" pulls in
  papers that spell out retrieval-augmented generation);
- TF-IDF (rank/tfidf.py) for exact words the embeddings blur;
- papers voted "less like this" and `exclude` phrases: cosine to the closest
  one, subtracted (a paper that spells an exclude phrase is out altogether,
  rank/select.py; one that only comes close goes down).

Vectors are centred on the reference set's mean: MiniLM's vectors share a
large common direction, and cosines without it separate topics better. For
liked papers they are also whitened (with a floor on the variances), which
helps paper-to-paper similarity and hurts short topic phrases (bench/RANKING.md
has the numbers). The
total is the weighted sum, standardised again against the background and
mapped to (0, 1) by a logistic curve: 0.5 is a typical recent paper, 0.98
about two standard deviations above it, for every subscriber alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

import numpy as np

from ..models import Paper, Reason
from .base import Ranker, Ranking, Scores
from .explain import reasons_for
from .profile import Profile
from .segments import Segments
from .select import Exclusions, rank_with
from .tfidf import TfidfBatch, TfidfRanker, TfidfScores
from .topics import query_text
from .vectors import PaperVectors
from .words import tokenize

MODEL_ID = "hybrid-minilm-v1"
BACKGROUND_PAPERS = 300  # enough for a stable mean and spread, cheap to score per subscriber
WHITEN_FLOOR = 0.2  # variances below this share of the largest are raised to it, so noise is not amplified
FEEDBACK_PAPERS = 10  # reference papers that expand a topic query
WEIGHTS = {"liked_centroid": 1.0, "liked_best": 0.5, "topics": 1.0, "lexical": 0.3, "lexical_best": 0.2,
           "disliked": -0.5, "excluded": -0.5}
# TF-IDF on a ten-word title is mostly noise next to the embeddings, on an abstract it adds exact terms:
# its weight grows with the reference papers' median length, reaching WEIGHTS["lexical"] at this many words.
LEXICAL_FULL_WORDS = 100
LOGISTIC_SLOPE = 1.7  # logistic(1.7 z) is within 0.01 of the normal CDF
# A score of 0.5 is a paper this many standard deviations above a typical recent paper; the default
# min_score 0.05 then asks for about 1.3 (better than about nine in ten recent papers).
SCORE_CENTRE = 2.0
# Relative scores alone would send someone the least irrelevant papers of a day with nothing for them,
# so a paper is only sent with this MiniLM cosine to one topic or liked paper (on the sample pages,
# relevant papers score 0.38 and up, unrelated ones 0.34 and down). It does not change the order.
EVIDENCE_FLOOR = 0.35
LIKED_SIMILAR = 0.5  # MiniLM cosine from which "similar to <liked paper>" is claimed


@dataclass(frozen=True, slots=True)
class HybridScores(Scores):
    """Scores plus what `explain` reads: the TF-IDF scores and each paper's raw cosine to each liked paper."""

    eligible: np.ndarray  # per paper: close enough to one profile entry to be sent at all
    lexical: TfidfScores
    liked_cosine: np.ndarray  # papers x liked entries, MiniLM cosine (not whitened: it is what "similar" means)
    vectors: np.ndarray  # papers x 384, MiniLM (unit length)

    def pairwise(self, rows: Sequence[int]) -> np.ndarray | None:
        """MiniLM cosine between the papers at `rows`."""
        # rank_many asks for all the rows it took, in order: those are the vectors as they are, no copy needed.
        every = isinstance(rows, range) and rows == range(len(self.vectors))
        picked = self.vectors if every else self.vectors[list(rows)]
        return np.asarray(picked @ picked.T)


class HybridRanker:
    """MiniLM embeddings plus TF-IDF over title and abstract, calibrated against background papers."""

    model_id = MODEL_ID

    def __init__(self, reference: Sequence[Paper], vectors: PaperVectors) -> None:
        self.vectors = vectors
        self.exclusions = Exclusions()  # rank_many (rank/batch.py) shares it: each paper's words are read once
        self.fit(reference)

    def fit(self, reference: Sequence[Paper]) -> None:
        """TF-IDF statistics, the vector mean and whitening, and the background sample, from `reference`."""
        self.lexical = TfidfRanker(reference)
        words = float(np.median([len(tokenize(p.title + " " + p.abstract)) for p in reference])) if reference else 0.0
        share = min(1.0, words / LEXICAL_FULL_WORDS)
        self._weights = {**WEIGHTS, "lexical": WEIGHTS["lexical"] * share,
                         "lexical_best": WEIGHTS["lexical_best"] * share}
        raw = self.vectors.of(reference)
        self._mean = raw.mean(axis=0) if len(raw) > 1 else np.zeros(raw.shape[1], dtype=np.float32)
        self._whiten = _whitening(raw - self._mean) if len(raw) > 2 else np.eye(raw.shape[1], dtype=np.float32)
        self._reference = _unit(raw - self._mean)
        self._rows = _Rows()  # per paper, for this fit: raw, whitened and centred vectors
        step = max(1, len(reference) // BACKGROUND_PAPERS)
        self._background = list(reference[::step][:BACKGROUND_PAPERS])

    def prepare(self, profiles: Sequence[Profile], papers: Sequence[Paper]) -> None:
        """Vectors for every paper and profile entry of a run, computed (and stored) in one pass each."""
        self.lexical.prepare(profiles, papers)
        self.vectors.of(list(papers) + [p for pr in profiles for p in pr.liked_papers if p is not None]
                        + [p for pr in profiles for p in pr.disliked])
        phrases = [t for pr in profiles for t in _phrases(pr, self.lexical.words)]
        if phrases:
            self.vectors.texts(phrases)

    def rank(self, profile: Profile, candidates: Sequence[Paper], *, max_papers: int, min_score: float,
             diversity: float = 0.0) -> Ranking:
        """Top `max_papers` candidates scoring at least `min_score`, best first, ties by paper id."""
        return rank_with(self, self.exclusions, profile, candidates, max_papers=max_papers, min_score=min_score,
                         diversity=diversity)

    def score(self, profile: Profile, papers: Sequence[Paper]) -> HybridScores:
        """Calibrated similarity of every paper to the profile, and to each entry."""
        count = len(papers)
        everything = list(papers) + self._background
        raw, docs, centred = self._vectors(everything)
        lexical = self.lexical.score(profile, everything)
        parts: dict[str, np.ndarray] = {"lexical": lexical.total}
        liked_raw = self._liked_vectors(profile)
        liked_cosine = raw @ liked_raw.T if len(liked_raw) else np.zeros((len(everything), 0))
        evidence = liked_cosine.max(axis=1) if len(liked_raw) else np.zeros(len(everything))
        if len(liked_raw):
            liked = self._transform(liked_raw)
            similarity = docs @ liked.T
            parts["liked_centroid"] = docs @ liked.mean(axis=0)
            parts["liked_best"] = np.sort(similarity, axis=1)[:, -2:].mean(axis=1)
            parts["lexical_best"] = lexical.per_entry[:, len(profile.topics):].max(axis=1)
        if profile.topics:
            parts["topics"] = centred @ self._topic_query(profile.topics)
            spelt = [query_text(t, self.lexical.words) for t in profile.topics]
            evidence = np.maximum(evidence, (raw @ self.vectors.texts(spelt).T).max(axis=1))
        if profile.exclude:  # papers spelling an exclude phrase are out (select.py); their neighbours go down
            parts["excluded"] = (raw @ self.vectors.texts([query_text(t) for t in profile.exclude]).T).max(axis=1)
        if profile.disliked:
            parts["disliked"] = (docs @ self._transform(self.vectors.of(profile.disliked)).T).max(axis=1)
        combined = sum(self._weights[name] * _standardise(values, count) for name, values in parts.items())
        total = _logistic(LOGISTIC_SLOPE * (_standardise(np.asarray(combined), count) - SCORE_CENTRE))
        per_entry = np.hstack([lexical.per_entry[:count, : len(profile.topics)], liked_cosine[:count]])
        return HybridScores(total=total[:count], per_entry=per_entry, eligible=evidence[:count] >= EVIDENCE_FLOOR,
                            lexical=_rows(lexical, count), liked_cosine=liked_cosine[:count], vectors=raw[:count])

    def score_many(self, profiles: Sequence[Profile], papers: Sequence[Paper]) -> HybridBatch | None:
        """`score` for many profiles at once, as matrix products (papers x profiles); None without a background.

        Scores do not depend on which other papers are scored (each part is standardised against the
        background papers), so scoring the run's papers once for everyone gives each subscriber the
        scores `score` gives their own candidates. With fewer than two background papers `score`
        standardises against the candidates themselves, which only it can do.
        """
        if len(self._background) < 2:
            return None
        count = len(papers)
        everything = list(papers) + self._background
        raw, docs, centred = self._vectors(everything)
        lexical = self.lexical.score_many(profiles, everything)
        weights = self._weights
        parts: list[tuple[float, np.ndarray, np.ndarray]] = [
            (weights["lexical"], lexical.total, np.ones(len(profiles), dtype=bool))]
        liked = Segments(_spans([len(p.liked_titles) for p in profiles]))
        liked_raw = self._liked_matrix(profiles)
        liked_cosine = raw @ liked_raw.T
        evidence = _max_over_spans(liked_cosine, liked)
        similarity = liked.gather(docs @ self._transform(liked_raw).T)
        parts += [(weights["liked_centroid"], liked.mean(similarity), liked.present),
                  (weights["liked_best"], liked.best_two_mean(similarity), liked.present)]
        parts.append((weights["lexical_best"], _best_liked_entry(lexical.per_entry, profiles), liked.present))
        with_topics = np.array([bool(p.topics) for p in profiles])
        if with_topics.any():
            parts.append((weights["topics"], centred @ self._topic_queries([p.topics for p in profiles]).T,
                          with_topics))
            spelt, topic_columns = _columns([[query_text(t, self.lexical.words) for t in p.topics] for p in profiles])
            topic = Segments(topic_columns)
            closest_topic = topic.max(topic.gather(raw @ self.vectors.texts(spelt).T))
            evidence = np.maximum(evidence, np.where(with_topics, closest_topic, evidence))
        excluded, exclude_columns = _columns([[query_text(t) for t in p.exclude] for p in profiles])
        if excluded:
            exclude = Segments(exclude_columns)
            parts.append((weights["excluded"], exclude.max(exclude.gather(raw @ self.vectors.texts(excluded).T)),
                          exclude.present))
        disliked = Segments(_spans([len(p.disliked) for p in profiles]))
        if disliked.present.any():
            rows = self._transform(self.vectors.of([d for p in profiles for d in p.disliked]))
            parts.append((weights["disliked"], disliked.max(disliked.gather(docs @ rows.T)), disliked.present))
        total = _logistic_in_place(_standardise_columns(_weighted_sum(parts, count), count)[:count])
        return HybridBatch(total=total, eligible=evidence[:count] >= EVIDENCE_FLOOR, lexical=lexical,
                           liked_cosine=liked_cosine[:count], liked=liked, vectors=raw[:count], topics=[
                               len(p.topics) for p in profiles])

    def _liked_matrix(self, profiles: Sequence[Profile]) -> np.ndarray:
        """Every profile's liked vectors, one after another (`_liked_vectors` for many profiles, in two batches)."""
        pairs = [(p, title) for pr in profiles
                 for p, title in zip(pr.liked_papers or (None,) * len(pr.liked_titles), pr.liked_titles, strict=True)]
        if not pairs:
            return np.zeros((0, self._mean.shape[0]), dtype=np.float32)
        stored = self.vectors.of([p for p, _ in pairs if p is not None])
        bare = self.vectors.texts([title for p, title in pairs if p is None])
        out = np.zeros((len(pairs), self._mean.shape[0]), dtype=np.float32)
        is_paper = np.array([p is not None for p, _ in pairs])
        out[is_paper] = stored
        out[~is_paper] = bare
        return out

    def explain(self, profile: Profile, scores: HybridScores, row: int) -> Reason:
        """The topics and liked papers the paper is close to, and the terms that carried its score."""
        return self.explain_many(profile, scores, [row])[0]

    def explain_many(self, profile: Profile, scores: HybridScores, rows: Sequence[int]) -> list[Reason]:
        """`explain` of each of `rows`, compared and sorted once for all of them (a digest explains ten)."""
        at = np.asarray(rows, dtype=np.int64)
        similarities = np.array(scores.per_entry[at], dtype=np.float64)  # a copy: the liked columns change below
        topic_count = len(profile.topics)
        # A liked paper is named only when the paper reads as similar to it, not merely less unrelated.
        similarities[:, topic_count:] = similarities[:, topic_count:] >= LIKED_SIMILAR
        return reasons_for(profile, similarities, scores.lexical.coverage[at],
                           self.lexical.carrying_terms_many(scores.lexical, at))

    def _vectors(self, papers: Sequence[Paper]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw, whitened and centred rows of `papers`, each computed once per fit (not per subscriber)."""
        missing = [p for p in {p.id: p for p in papers}.values() if p.id not in self._rows.index]
        if missing:
            raw = self.vectors.of(missing)
            self._rows.add([p.id for p in missing], raw, self._transform(raw), _unit(raw - self._mean))
        return self._rows.get([p.id for p in papers])

    def _transform(self, raw: np.ndarray) -> np.ndarray:
        return _unit((raw - self._mean) @ self._whiten)

    def _liked_vectors(self, profile: Profile) -> np.ndarray:
        papers = profile.liked_papers or (None,) * len(profile.liked_titles)
        rows = [self.vectors.of([p])[0] if p is not None else self.vectors.texts([title])[0]
                for p, title in zip(papers, profile.liked_titles, strict=True)]
        return np.vstack(rows) if rows else np.zeros((0, self._mean.shape[0]), dtype=np.float32)

    def _topic_queries(self, topic_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """`_topic_query` of each list (zeros for an empty one), with one product and one sort for all."""
        texts, columns = _columns([[_topic_text(topics, self.lexical.words)] if topics else []
                                   for topics in topic_lists])
        out = np.zeros((len(topic_lists), self._mean.shape[0]), dtype=np.float32)
        if not texts:
            return out
        queries = _unit(self.vectors.texts(texts) - self._mean)
        if len(self._reference) > FEEDBACK_PAPERS:  # the same ten as `_topic_query`'s sort, found by a partition
            nearest = np.argpartition(-(queries @ self._reference.T), FEEDBACK_PAPERS - 1, axis=1)[:, :FEEDBACK_PAPERS]
            queries = queries + self._reference[nearest].mean(axis=1)
        for row, cols in enumerate(columns):
            if cols:
                out[row] = queries[cols[0]]
        return out

    def _topic_query(self, topics: Sequence[str]) -> np.ndarray:
        query = _unit(self.vectors.texts([_topic_text(topics, self.lexical.words)]) - self._mean)[0]
        if len(self._reference) > FEEDBACK_PAPERS:
            nearest = np.argsort(-(self._reference @ query), kind="stable")[:FEEDBACK_PAPERS]
            query = query + self._reference[nearest].mean(axis=0)
        return query


@dataclass(frozen=True, slots=True)
class HybridBatch:
    """`HybridRanker.score_many`'s result: totals for every paper and profile, HybridScores on demand."""

    total: np.ndarray  # papers x profiles
    eligible: np.ndarray  # papers x profiles
    lexical: TfidfBatch
    liked_cosine: np.ndarray  # papers x every profile's liked entries (see `liked`)
    liked: Segments  # made by _spans: each profile's columns are consecutive
    vectors: np.ndarray  # papers x 384
    topics: list[int]  # per profile, how many topics it has

    def take(self, profile: int, rows: Sequence[int]) -> HybridScores:
        """The profile's HybridScores for the papers at `rows`, as `score` would give them."""
        at = np.asarray(rows, dtype=np.int64)  # an array, not a list: fancy indexing converts a list each time
        liked = self.liked.columns[profile]
        # A profile's liked columns are consecutive (_spans): a slice of the gathered rows, not a second gather.
        liked_cosine = self.liked_cosine[at, liked[0]:liked[-1] + 1] if liked else self.liked_cosine[at, :0]
        lexical = self.lexical.take(profile, at)
        per_entry = np.concatenate((lexical.per_entry[:, : self.topics[profile]], liked_cosine), axis=1)
        return HybridScores(total=self.total[at, profile], per_entry=per_entry,
                            eligible=self.eligible[at, profile], lexical=lexical, liked_cosine=liked_cosine,
                            vectors=self.vectors[at])


class _Rows:
    """Three matrices of paper rows grown in batches, gathered by paper id."""

    def __init__(self) -> None:
        self.index: dict[int, int] = {}
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._matrices: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def add(self, ids: Sequence[int], *matrices: np.ndarray) -> None:
        for paper_id in ids:
            self.index[paper_id] = len(self.index)
        self._parts.append((matrices[0], matrices[1], matrices[2]))
        self._matrices = None

    def get(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._matrices is None:
            self._matrices = tuple(np.vstack([part[k] for part in self._parts]) for k in range(3))  # type: ignore[assignment]
        assert self._matrices is not None
        rows = [self.index[i] for i in ids]
        return self._matrices[0][rows], self._matrices[1][rows], self._matrices[2][rows]


def _topic_text(topics: Sequence[str], words: frozenset[str]) -> str:
    return ", ".join(query_text(t, words) for t in topics)


def _phrases(profile: Profile, words: frozenset[str]) -> list[str]:
    """Every phrase `score` embeds for the profile: the topics as one query and one by one, bare liked titles."""
    bare = [t for p, t in zip(profile.liked_papers or (None,) * len(profile.liked_titles), profile.liked_titles,
                              strict=True) if p is None]
    topics = [_topic_text(profile.topics, words)] + [query_text(t, words) for t in profile.topics]
    return (topics if profile.topics else []) + bare + [query_text(t) for t in profile.exclude]


def _whitening(centred: np.ndarray) -> np.ndarray:
    variances, axes = np.linalg.eigh(np.cov(centred, rowvar=False))
    variances = np.maximum(variances, 0.0)
    return (axes / np.sqrt(variances + WHITEN_FLOOR * variances.max())).astype(np.float32)


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def _standardise(values: np.ndarray, count: int) -> np.ndarray:
    """`values` in standard deviations from their background part (rows from `count` on)."""
    background = values[count:]
    if len(background) < 2:
        background = values[:count]
    spread = float(background.std())
    return (values - float(background.mean())) / (spread if spread > 1e-9 else 1.0)


def _standardise_columns(values: np.ndarray, count: int) -> np.ndarray:
    """`_standardise` of each column of `values` (papers x profiles) against its background rows; a new array."""
    background = values[count:]
    spread = background.std(axis=0)
    out = values - background.mean(axis=0)
    out /= np.where(spread > 1e-9, spread, 1.0)  # in place: the same quotients, without another array
    return out


def _weighted_sum(parts: Sequence[tuple[float, np.ndarray, np.ndarray]], count: int) -> np.ndarray:
    """The sum of each part standardised (0 for profiles without it) times its weight, papers x profiles.

    `sum(weight * part ...)`, in values and in layout (the first part's), added in place: a block's
    papers x profiles arrays are megabytes each, and a new one per step costs more than the arithmetic.
    """
    combined: np.ndarray | None = None
    for weight, values, present in parts:
        term = _only_present(present, _standardise_columns(values, count))  # a new array: scaled in place
        term *= weight  # weight * term: the same products, in the term's own precision
        if combined is None:
            combined = term + 0  # as sum() starts: 0 + the first part
        else:
            combined += term
    assert combined is not None, "the lexical part is always there"
    return combined


def _max_over_spans(matrix: np.ndarray, spans: Segments) -> np.ndarray:
    """`spans.max(spans.gather(matrix))` in values (not in memory layout: only compared afterwards) when each
    profile's columns are consecutive (_spans): one reduceat over the runs, without the gathered copy."""
    out = np.zeros((matrix.shape[0], len(spans.columns)), dtype=matrix.dtype)
    if spans.present.any():  # the runs of the profiles with columns follow one another to the matrix's end
        out[:, spans.present] = np.maximum.reduceat(matrix, [cols[0] for cols in spans.columns if cols], axis=1)
    return out


def _only_present(present: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`values` (papers x profiles), 0 in the columns of profiles without the part; the array itself when
    every profile has it (the usual block), instead of a copy that changes nothing."""
    return values if present.all() else np.where(present, values, 0.0)


def _best_liked_entry(per_entry: np.ndarray, profiles: Sequence[Profile]) -> np.ndarray:
    """papers x profiles: the largest of each profile's liked columns of a TfidfBatch's per_entry (0 without)."""
    if per_entry.shape[2] == 0:
        return np.zeros(per_entry.shape[:2])
    topics = np.array([len(p.topics) for p in profiles])
    ends = topics + np.array([len(p.liked_titles) for p in profiles])
    # Position by position, the largest so far: no masked copy of the whole papers x profiles x entries array.
    # (per_entry[:, :, k] has the papers innermost in memory, and so has `best`, as the masked max gave it.)
    best = np.full(per_entry.shape[:2], -np.inf, dtype=per_entry.dtype, order="F")
    for k in range(per_entry.shape[2]):
        liked = (k >= topics) & (k < ends)
        if liked.any():
            np.maximum(best, np.where(liked, per_entry[:, :, k], -np.inf), out=best)
    return np.where(np.isfinite(best), best, 0.0)


def _spans(sizes: Sequence[int]) -> list[list[int]]:
    """Consecutive column ranges of the given sizes: [2, 0, 1] -> [[0, 1], [], [2]]."""
    return [list(range(end - size, end)) for size, end in zip(sizes, accumulate(sizes), strict=True)]


def _columns(texts: Sequence[Sequence[str]]) -> tuple[list[str], list[list[int]]]:
    """Distinct texts, and per profile the column of each of its texts among them."""
    unique = list(dict.fromkeys(t for group in texts for t in group))
    column = {t: k for k, t in enumerate(unique)}
    return unique, [[column[t] for t in group] for group in texts]


def _logistic(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(z / 2.0))


def _logistic_in_place(standardised: np.ndarray) -> np.ndarray:
    """`_logistic(LOGISTIC_SLOPE * (standardised - SCORE_CENTRE))`, step by step in the array it is given."""
    z = standardised
    z -= SCORE_CENTRE
    z *= LOGISTIC_SLOPE
    z /= 2.0
    np.tanh(z, out=z)
    z += 1.0
    z *= 0.5
    return z


def _rows(scores: TfidfScores, count: int) -> TfidfScores:
    return TfidfScores(total=scores.total[:count], per_entry=scores.per_entry[:count],
                       coverage=scores.coverage[:count], docs=scores.docs, centroid=scores.centroid,
                       doc_rows=scores.doc_rows[:count] if scores.doc_rows is not None else None)


def _conforms(ranker: HybridRanker) -> Ranker[HybridScores]:
    # Never called: mypy checks here that HybridRanker satisfies the Ranker protocol structurally.
    return ranker
