"""Keeps vectors current: new papers right after an ingest, subscribers' phrases when the daemon sees their
files, and every paper after a model change in the background of a run.

Reads papers and writes their vectors (store.vectors), each batch in its own
short transaction, so an ingest's own transactions never wait for the model and
what is embedded is kept even if the process stops half-way. Nothing here ever
raises into an ingest or a run: a model that cannot be loaded is said once
(rank.load_embedder) and ranking carries on with TF-IDF; any other failure is
logged and the papers are embedded later.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from .errors import RunLocked
from .models import Subscriber
from .planning import RankerFactory, prepare_ranking
from .rank import load_embedder
from .rank.vectors import EMBEDDING, embedding_text
from .store import Store

log = logging.getLogger(__name__)

BATCH = 50  # papers per transaction (a few seconds of embedding abstracts): stopping waits for at most one
PROGRESS_EVERY = 200  # papers between progress lines of a long re-embedding


def embed_new(store: Store, after_id: int) -> int:
    """Embed the papers stored after `after_id` (an ingest's new papers) that have no vector yet; how many.

    Called once the ingest has committed and let go of its lock. Never raises.
    """
    try:
        embedder = load_embedder()
        if embedder is None:
            return 0
        ids = store.vectors.missing(embedder.model_id, after_id=after_id)
        if ids:  # abstracts take about 70 ms each on 2 cores: say why the command has not returned yet
            log.info("embedding %s new papers with %s", f"{len(ids):,}", embedder.model_id)
        for start in range(0, len(ids), BATCH):
            _embed(store, ids[start:start + BATCH])
        return len(ids)
    except Exception as exc:  # the papers are in; their vectors can come later
        log.warning("could not embed the new papers (%s: %s); the next digest run embeds them",
                    type(exc).__name__, exc)
        return 0


def embed_profiles(store: Store, make_ranker: RankerFactory, subscribers: Sequence[Subscriber],
                   now: datetime) -> None:
    """Embed the topic phrases (and liked papers) of `subscribers` that have no vector yet. Never raises.

    The daemon calls this when it finds new or edited subscriber files, so the morning's run does not
    spend its first seconds (about 4 ms a phrase on 2 cores; 13 s for 1,000 new subscribers) embedding.
    """
    try:
        if load_embedder() is None:
            return
        prepare_ranking(store, make_ranker, subscribers, now)
    except Exception as exc:  # the next run embeds what is missing
        log.warning("could not embed the subscribers' topics (%s: %s); the next digest run embeds them",
                    type(exc).__name__, exc)


def _embed(store: Store, ids: Sequence[int]) -> None:
    """Embed and store the papers `ids` names that still have no vector (a digest run may have made some)."""
    embedder = load_embedder()
    assert embedder is not None
    with EMBEDDING:
        have = store.vectors.get(embedder.model_id, ids)
        papers = store.papers.get([i for i in ids if i not in have])
        if not papers:
            return
        vectors = embedder.encode([embedding_text(p) for p in papers])
        store.vectors.put(embedder.model_id, {p.id: v.astype("<f4").tobytes()
                                              for p, v in zip(papers, vectors, strict=True)})


class Reembedding:
    """Embeds every paper that lacks a vector of the current model, newest first, in a background thread.

    Started by the ranker factory when too many of a run's papers lack vectors (a
    model change): that run ranks with TF-IDF and is not held up; later runs rank
    with the new vectors. One process at a time per database does it (the "embed"
    lock); what is done is kept, and the next run goes on from there.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.done = 0
        self.total = 0

    def start(self) -> None:
        """Start re-embedding in the background, unless it is running already."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="newsletter-reembedding", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the batch in hand (its vectors are kept) and wait for the thread."""
        self._stop.set()
        self.wait()

    def wait(self) -> None:
        """Wait until every paper is embedded (or the re-embedding stopped or failed)."""
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            with self._store.locks.hold("embed"):
                self._embed_all()
        except RunLocked:
            log.info("another process is re-embedding papers; this one leaves it to it")
        except Exception as exc:  # the run ranks with TF-IDF meanwhile; the next run tries again
            log.warning("re-embedding stopped (%s: %s); the next run goes on from %s of %s papers",
                        type(exc).__name__, exc, f"{self.done:,}", f"{self.total:,}")

    def _embed_all(self) -> None:
        embedder = load_embedder()
        if embedder is None:
            return
        ids = self._store.vectors.missing(embedder.model_id, newest_first=True)
        self.total, self.done = len(ids), 0
        log.info("re-embedding %s papers for model %s in the background", f"{self.total:,}", embedder.model_id)
        for start in range(0, len(ids), BATCH):
            if self._stop.is_set():
                log.info("re-embedding paused at %s/%s papers for model %s; the next run goes on",
                         f"{self.done:,}", f"{self.total:,}", embedder.model_id)
                return
            batch = ids[start:start + BATCH]
            _embed(self._store, batch)
            self.done += len(batch)
            if self.done % PROGRESS_EVERY < len(batch) or self.done == self.total:
                log.info("re-embedding %s/%s papers for model %s", f"{self.done:,}", f"{self.total:,}",
                         embedder.model_id)


@contextmanager
def reembedding(store: Store, *, finish: bool = False) -> Iterator[Reembedding]:
    """A Reembedding for a run; at the end it is stopped (after its batch in hand), or with `finish` waited for."""
    job = Reembedding(store)
    try:
        yield job
    finally:
        if finish:
            job.wait()
        else:
            job.stop()
