"""Paper and phrase vectors for the embeddings ranker: memory first, then the store, then the model.

Reads and writes the store's paper vectors (store/vectors.py) when given one:
a paper is embedded once, ever, and its vector is kept with the model id, so
ranking 10,000 subscribers costs one embedding per new paper, not one per
subscriber or per run. Phrases (topics, liked titles that match no stored
paper) are embedded on first use and kept in memory for the process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ..models import Paper
from .embeddings import DIMENSION, Embedder, Progress

log = logging.getLogger(__name__)

# One pass of embedding stored papers at a time per process: the daemon's ingest and its digest job
# may want the same new papers at once, and the second should read what the first stored rather
# than embed them again (newsletter/embedding_jobs.py takes it too).
EMBEDDING = threading.Lock()


class VectorRows(Protocol):
    """The part of the store this module uses (store.vectors)."""

    def get(self, model_id: str, paper_ids: Sequence[int]) -> dict[int, bytes]: ...

    def put(self, model_id: str, vectors: dict[int, bytes]) -> None: ...

    def missing(self, model_id: str, paper_ids: Sequence[int] | None = None) -> list[int]: ...

    def get_phrases(self, model_id: str, phrases: Sequence[str]) -> dict[str, bytes]: ...

    def put_phrases(self, model_id: str, vectors: dict[str, bytes]) -> None: ...


def embedding_text(paper: Paper) -> str:
    """What a paper's vector is made from: its title, then its abstract when it has one."""
    return f"{paper.title}. {paper.abstract}" if paper.abstract else paper.title


class PaperVectors:
    """Unit-length vectors of papers (by id) and of phrases (by text), each computed once."""

    def __init__(self, embedder: Embedder, rows: VectorRows | None = None, *,
                 progress: Progress | None = None) -> None:
        self.embedder = embedder
        self.model_id = embedder.model_id
        self._rows = rows
        self._progress = progress
        self._by_id: dict[int, np.ndarray] = {}
        self._by_text: dict[str, np.ndarray] = {}

    def of(self, papers: Sequence[Paper]) -> np.ndarray:
        """One row per paper, in order; missing vectors are computed in one pass and stored."""
        wanted = [p for p in {p.id: p for p in papers}.values() if p.id not in self._by_id]
        if wanted:
            with EMBEDDING:
                self._fill(wanted)
        return _stack([self._by_id[p.id] for p in papers])

    def _fill(self, wanted: list[Paper]) -> None:
        """Read the stored vectors of `wanted`, embed and store the rest."""
        if self._rows is not None:
            for paper_id, blob in self._rows.get(self.model_id, [p.id for p in wanted]).items():
                self._by_id[paper_id] = np.frombuffer(blob, dtype="<f4")
            wanted = [p for p in wanted if p.id not in self._by_id]
        if wanted:
            # A text embedded before (a bare liked title, the benchmark's cache) is not embedded again.
            missing = [t for t in dict.fromkeys(embedding_text(p) for p in wanted) if t not in self._by_text]
            self._embed(missing)  # kept as paper vectors below, not as phrases
            new = {p.id: self._by_text[embedding_text(p)] for p in wanted}
            self._by_id.update(new)
            if self._rows is not None:
                self._rows.put(self.model_id, {i: v.astype("<f4").tobytes() for i, v in new.items()})

    def texts(self, texts: Sequence[str]) -> np.ndarray:
        """One row per phrase, in order: from this process's memory, else the store, else embedded (and stored)."""
        wanted = [t for t in dict.fromkeys(texts) if t not in self._by_text]
        if wanted and self._rows is not None:
            for text, blob in self._rows.get_phrases(self.model_id, wanted).items():
                self._by_text[text] = np.frombuffer(blob, dtype="<f4")
            wanted = [t for t in wanted if t not in self._by_text]
        if wanted:
            self._embed(wanted)
            if self._rows is not None:
                self._rows.put_phrases(self.model_id, {t: self._by_text[t].astype("<f4").tobytes() for t in wanted})
        return _stack([self._by_text[t] for t in texts])

    def _embed(self, texts: list[str]) -> None:
        if texts:
            for text, vector in zip(texts, self._encode(texts, len(texts) > 256), strict=True):
                self._by_text[text] = vector

    def remember(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Seed the phrase memory (the benchmark reuses vectors it computed in an earlier run)."""
        self._by_text.update(zip(texts, vectors, strict=True))

    def _encode(self, texts: list[str], announce: bool) -> np.ndarray:
        if announce:  # a model change or a first run: say why this run is slow, and how far it is
            log.info("embedding %d texts with %s", len(texts), self.model_id)
        return self.embedder.encode(texts, self._progress if announce else None)


def _stack(rows: list[np.ndarray]) -> np.ndarray:
    # np.array copies the rows in one C loop; vstack made each a 2-D view first (a block's 1,500 phrases: ms each).
    return np.array(rows, dtype=np.float32) if rows else np.zeros((0, DIMENSION), dtype=np.float32)


