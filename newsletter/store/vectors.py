"""Paper and phrase vectors by model: what the embeddings ranker computes once and reads on every run.

A vector is stored as raw little-endian float32 bytes with the id of the model
that made it, so a model change leaves the old rows unused (and `drop_other_models`
deletes them) instead of mixing two models' vectors in one ranking. This module
deals in bytes; numpy stays in rank/.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import delete, func, insert, select

from .papers import CHUNK, _chunks
from .schema import Database, paper_vectors, papers, phrase_vectors


class VectorStore:
    """Read and write paper vectors keyed by (paper id, model id)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, model_id: str, paper_ids: Sequence[int]) -> dict[int, bytes]:
        """The stored vectors of those papers that have one for `model_id`."""
        found: dict[int, bytes] = {}
        with self._db.read() as conn:
            for chunk in _chunks(list(paper_ids), CHUNK):
                rows = conn.execute(
                    select(paper_vectors.c.paper_id, paper_vectors.c.vector)
                    .where(paper_vectors.c.model_id == model_id, paper_vectors.c.paper_id.in_(chunk)))
                found.update((int(paper_id), bytes(vector)) for paper_id, vector in rows)
        return found

    def put(self, model_id: str, vectors: Mapping[int, bytes]) -> None:
        """Store vectors for papers that have none yet for `model_id` (a second writer's rows are kept)."""
        if not vectors:
            return
        with self._db.write() as conn:
            have: set[int] = set()
            for chunk in _chunks(list(vectors), CHUNK):
                have.update(conn.execute(
                    select(paper_vectors.c.paper_id)
                    .where(paper_vectors.c.model_id == model_id, paper_vectors.c.paper_id.in_(chunk))).scalars())
            rows = [{"paper_id": pid, "model_id": model_id, "vector": vec}
                    for pid, vec in vectors.items() if pid not in have]
            if rows:
                conn.execute(insert(paper_vectors), rows)

    def missing(self, model_id: str, paper_ids: Iterable[int] | None = None, *, after_id: int | None = None,
                newest_first: bool = False) -> list[int]:
        """Ids of papers (all stored papers, those given, or those after `after_id`) with no vector for
        `model_id`, in id order (`newest_first`: the other way round)."""
        query = (select(papers.c.id)
                 .outerjoin(paper_vectors, (paper_vectors.c.paper_id == papers.c.id)
                            & (paper_vectors.c.model_id == model_id))
                 .where(paper_vectors.c.paper_id.is_(None))
                 .order_by(papers.c.id.desc() if newest_first else papers.c.id))
        if after_id is not None:
            query = query.where(papers.c.id > after_id)
        with self._db.read() as conn:
            ids = [int(i) for i in conn.execute(query).scalars()]
        if paper_ids is None:
            return ids
        wanted = set(paper_ids)
        return [i for i in ids if i in wanted]

    def count(self, model_id: str) -> int:
        with self._db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(paper_vectors)
                                    .where(paper_vectors.c.model_id == model_id)).scalar_one())

    def drop_other_models(self, model_id: str) -> int:
        """Delete every paper vector not made by `model_id` (and such phrase vectors); how many paper rows went."""
        with self._db.write() as conn:
            conn.execute(delete(phrase_vectors).where(phrase_vectors.c.model_id != model_id))
            return int(conn.execute(delete(paper_vectors).where(paper_vectors.c.model_id != model_id)).rowcount)

    def get_phrases(self, model_id: str, phrases: Sequence[str]) -> dict[str, bytes]:
        """The stored vectors of those phrases that have one for `model_id`."""
        found: dict[str, bytes] = {}
        with self._db.read() as conn:
            for start in range(0, len(phrases), CHUNK):
                rows = conn.execute(
                    select(phrase_vectors.c.phrase, phrase_vectors.c.vector)
                    .where(phrase_vectors.c.model_id == model_id,
                           phrase_vectors.c.phrase.in_(phrases[start : start + CHUNK])))
                found.update((phrase, bytes(vector)) for phrase, vector in rows)
        return found

    def put_phrases(self, model_id: str, vectors: Mapping[str, bytes]) -> None:
        """Store vectors for phrases that have none yet for `model_id` (a second writer's rows are kept)."""
        if not vectors:
            return
        with self._db.write() as conn:
            wanted = list(vectors)
            have: set[str] = set()
            for start in range(0, len(wanted), CHUNK):
                have.update(conn.execute(
                    select(phrase_vectors.c.phrase)
                    .where(phrase_vectors.c.model_id == model_id,
                           phrase_vectors.c.phrase.in_(wanted[start : start + CHUNK]))).scalars())
            rows = [{"model_id": model_id, "phrase": phrase, "vector": vector}
                    for phrase, vector in vectors.items() if phrase not in have]
            if rows:
                conn.execute(insert(phrase_vectors), rows)
