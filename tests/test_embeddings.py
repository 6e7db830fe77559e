"""The ONNX embedder on real text, its sha256 check, the TF-IDF fallback, and paper vectors kept in the store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime

import numpy as np
import pytest

from helpers import REPO, legacy_store
from newsletter.errors import ModelUnavailable
from newsletter.models import Paper
from newsletter.rank import fit_ranker, store_ranker_factory
from newsletter.rank.embeddings import MODEL_ID, Embedder, default_model_path
from newsletter.rank.hybrid import HybridRanker
from newsletter.rank.vectors import PaperVectors
from newsletter.store import SCHEMA_VERSION, open_store

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def paper(ident: int, title: str, abstract: str = "") -> Paper:
    return Paper(id=ident, title=title, abstract=abstract, first_seen=T0)


class CountingEmbedder(Embedder):
    """The real model, counting the texts it embeds (to show a paper is embedded once)."""

    def __init__(self, model_id: str = MODEL_ID) -> None:
        super().__init__()
        self.model_id = model_id
        self.embedded: list[str] = []

    def encode(self, texts, progress=None):  # type: ignore[no-untyped-def]
        self.embedded += list(texts)
        return super().encode(texts, progress)


def test_similar_sentences_are_closer_than_unrelated_ones(embedder) -> None:
    vectors = embedder.encode([
        "Graph neural networks predict molecular properties",
        "Message passing networks on molecular graphs forecast chemical properties",
        "Bird song changes in noisy cities",
        "Retrieval-augmented generation for question answering",
        "RAG: answering questions by retrieving documents for a language model",
    ])
    assert vectors.shape == (5, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = vectors @ vectors.T
    assert cosine[0, 1] > 0.6 > 0.2 > cosine[0, 2]
    assert cosine[3, 4] > cosine[3, 0] and cosine[3, 4] > cosine[3, 2]


def test_a_text_gets_the_same_vector_alone_or_among_others(embedder) -> None:
    # Stored vectors must not depend on which papers shared a run.
    alone = embedder.encode(["Sparse attention for long documents"])
    among = embedder.encode(["A", "Sparse attention for long documents", "a much longer text " * 20])
    assert np.array_equal(alone[0], among[1])


def test_a_corrupted_model_file_is_refused_by_its_sha256(tmp_path, embedder) -> None:
    broken = tmp_path / "model.onnx"
    shutil.copy(default_model_path(), broken)
    with broken.open("r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelUnavailable, match=r"model\.onnx: the embedding model is corrupted or not the pinned "
                                               r"version .*pip install --force-reinstall"):
        Embedder(model_path=broken)
    with pytest.raises(ModelUnavailable, match="cannot read the embedding model"):
        Embedder(model_path=tmp_path / "missing.onnx")


def test_without_a_usable_model_ranking_falls_back_to_tfidf_and_says_so_once(tmp_path) -> None:
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not a model")
    script = textwrap.dedent("""
        import logging
        from datetime import UTC, datetime
        from newsletter.models import Paper
        from newsletter.rank import fit_ranker
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
        papers = [Paper(id=1, title="Graph neural networks", abstract="", first_seen=datetime.now(UTC))]
        print(type(fit_ranker(papers)).__name__, type(fit_ranker(papers)).__name__)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "NEWSLETTER_EMBEDDING_MODEL": str(broken)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["TfidfRanker", "TfidfRanker"]
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "ranking with TF-IDF" in warnings[0] and "corrupted" in warnings[0]


def test_a_model_that_cannot_run_is_found_at_the_first_text_and_ranking_falls_back(tmp_path, caplog) -> None:
    # The files pass their sha256 when the model is loaded; the session is made only when a text needs embedding
    # (here the reference paper, held in memory). The file is gone by then (replaced under a running daemon, say):
    # making the session fails, and the ranker is TF-IDF, with a warning that says why.
    model = tmp_path / "model.onnx"
    shutil.copy(default_model_path(), model)
    embedder = Embedder(model_path=model)
    model.unlink()
    caplog.set_level("WARNING", logger="newsletter.rank")
    ranker = fit_ranker([paper(1, "Graph neural networks")], vectors=PaperVectors(embedder, None))
    assert type(ranker).__name__ == "TfidfRanker"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(f"ranking with TF-IDF: {model}: the embedding model cannot "
                                                         "be loaded")


def test_a_thread_count_that_is_not_one_is_refused_when_the_model_is_loaded(monkeypatch) -> None:
    monkeypatch.setenv("NEWSLETTER_EMBED_THREADS", "lots")
    with pytest.raises(ModelUnavailable, match=r"NEWSLETTER_EMBED_THREADS='lots' is not a number of threads; "
                                               r"set a whole number such as 2, or unset it"):
        Embedder()


def test_the_model_is_loaded_on_the_first_text_to_embed_not_before(tmp_path) -> None:
    papers = [paper(1, "Graph neural networks for molecules"), paper(2, "Bird song in cities")]
    with open_store(tmp_path / "db.sqlite3") as store:
        first = PaperVectors(Embedder(), store.vectors).of(papers)
        fresh = Embedder()
        again = PaperVectors(fresh, store.vectors).of(papers)  # every vector is stored: nothing to embed
        assert np.array_equal(again, first) and fresh._loaded is None
        assert fresh.encode(["Bird song in cities"]).shape == (1, 384) and fresh._loaded is not None


def test_a_paper_is_embedded_once_and_its_vector_kept_in_the_store(tmp_path) -> None:
    papers = [paper(1, "Graph neural networks for molecules", "Message passing over atoms."),
              paper(2, "Bird song in cities")]
    counting = CountingEmbedder()
    with open_store(tmp_path / "db.sqlite3") as store:
        assert store.schema_version() == SCHEMA_VERSION
        first = PaperVectors(counting, store.vectors).of(papers)
        assert counting.embedded == ["Graph neural networks for molecules. Message passing over atoms.",
                                     "Bird song in cities"]
        assert store.vectors.count(MODEL_ID) == 2
    counting.embedded.clear()
    with open_store(tmp_path / "db.sqlite3") as store:  # another run, another process: read, not embedded
        again = PaperVectors(counting, store.vectors).of(papers[::-1])
        assert counting.embedded == [] and np.array_equal(again[::-1], first)


def test_a_model_change_embeds_again_under_the_new_id(tmp_path) -> None:
    papers = [paper(1, "Graph neural networks for molecules"), paper(2, "Bird song in cities")]
    with open_store(tmp_path / "db.sqlite3") as store:
        PaperVectors(CountingEmbedder(), store.vectors).of(papers)
        newer = CountingEmbedder("minilm-l6-int8-v2")
        progress: list[tuple[int, int]] = []
        PaperVectors(newer, store.vectors, progress=lambda done, total: progress.append((done, total))).of(
            [paper(i, f"Paper number {i}") for i in range(3, 300)] + papers)
        assert len(newer.embedded) == 299 and progress[-1] == (299, 299)
        assert store.vectors.count("minilm-l6-int8-v2") == 299 and store.vectors.count(MODEL_ID) == 2
        assert store.vectors.drop_other_models("minilm-l6-int8-v2") == 2 and store.vectors.count(MODEL_ID) == 0


def test_the_pipeline_ranker_reads_vectors_from_the_store(tmp_path) -> None:
    papers = [paper(1, "Graph neural networks for molecules"), paper(2, "Bird song in cities")]
    with open_store(tmp_path / "db.sqlite3") as store:
        ranker = store_ranker_factory(store.vectors)(papers)
        assert isinstance(ranker, HybridRanker) and ranker.model_id == "hybrid-minilm-v1"
        assert store.vectors.count(MODEL_ID) == 2
        assert type(fit_ranker(papers, "tfidf-v1")).__name__ == "TfidfRanker"


def test_a_database_from_before_vectors_gains_the_table(tmp_path) -> None:
    path = tmp_path / "db.sqlite3"
    legacy_store(path, 4)  # what the release before vectors left: schema 4, no paper_vectors
    with open_store(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        store.vectors.put(MODEL_ID, {7: np.ones(384, dtype="<f4").tobytes()})
        assert np.array_equal(np.frombuffer(store.vectors.get(MODEL_ID, [7])[7], "<f4"), np.ones(384))


def test_a_phrase_is_embedded_once_per_model_and_kept_in_the_store(tmp_path) -> None:
    """Typed topics and bare liked titles: a second run, in another process, reads them instead of
    embedding every subscriber's phrases again."""
    phrases = ["graph neural networks", "retrieval-augmented generation", "graph neural networks"]
    counting = CountingEmbedder()
    with open_store(tmp_path / "db.sqlite3") as store:
        first = PaperVectors(counting, store.vectors).texts(phrases)
        assert counting.embedded == ["graph neural networks", "retrieval-augmented generation"]
        PaperVectors(counting, store.vectors).of([paper(1, "Bird song in cities")])
        # A paper's text is kept as the paper's vector, not as a phrase.
        assert store.vectors.get_phrases(MODEL_ID, ["Bird song in cities"]) == {}
    counting.embedded.clear()
    with open_store(tmp_path / "db.sqlite3") as store:
        again = PaperVectors(counting, store.vectors).texts(phrases[::-1])
        assert counting.embedded == [] and np.array_equal(again[::-1], first)
        newer = CountingEmbedder("minilm-l6-int8-v2")
        PaperVectors(newer, store.vectors).texts(phrases)
        assert newer.embedded == ["graph neural networks", "retrieval-augmented generation"]  # another model's
        store.vectors.drop_other_models("minilm-l6-int8-v2")
        assert store.vectors.get_phrases(MODEL_ID, phrases) == {}
        assert len(store.vectors.get_phrases("minilm-l6-int8-v2", phrases)) == 2
