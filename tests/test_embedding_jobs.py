"""Paper vectors are made once per paper: right after an ingest commits, and after a model change in the
background of the next run (which ranks with TF-IDF meanwhile). Real SQLite stores, the real model."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from helpers import REPO, SAMPLE_PAGES, at
from newsletter import pipeline
from newsletter.config import Config, config_from_mapping
from newsletter.embedding_jobs import Reembedding, embed_new
from newsletter.rank import store_ranker_factory
from newsletter.rank.embeddings import MODEL_ID
from newsletter.store import open_store

T_INGEST = at("2026-11-20", 6)
T_DIGEST = at("2026-11-20", 8)


@pytest.fixture(autouse=True)
def signing_key(monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "test-signing-key")


def make_project(tmp_path: Path) -> Config:
    """The shipped subscribers, the sample pages in the inbox, emails to the outbox folder."""
    shutil.copytree(REPO / "subscribers", tmp_path / "subscribers", ignore=shutil.ignore_patterns("*.md"))
    inbox = tmp_path / "var" / "inbox"
    inbox.mkdir(parents=True)
    for page in SAMPLE_PAGES.glob("*.txt"):
        shutil.copy(page, inbox)
    return config_from_mapping({"base_url": "https://digest.example.org", "digest": {"lookback_days": 7}}, tmp_path)


def test_an_ingest_embeds_its_new_papers_once_it_has_committed(tmp_path, embedder) -> None:
    config = make_project(tmp_path)
    report = pipeline.ingest_pages(config, T_INGEST)
    assert report.new_papers == 21
    with open_store(config.store_path) as store:
        assert store.vectors.count(MODEL_ID) == 21 and store.vectors.missing(MODEL_ID) == []
        # Nothing new: nothing to embed, and the vectors already there are not made again.
        assert embed_new(store, after_id=0) == 0
        before = store.vectors.get(MODEL_ID, [1])[1]
    assert np.frombuffer(before, "<f4") @ embedder.encode([_text_of(config, 1)])[0] == pytest.approx(1.0, abs=1e-5)


def _text_of(config: Config, paper_id: int) -> str:
    from newsletter.rank.vectors import embedding_text

    with open_store(config.store_path) as store:
        return embedding_text(store.papers.get([paper_id])[0])


def test_an_ingest_never_fails_when_the_model_cannot_load_and_the_digest_uses_tfidf(tmp_path) -> None:
    config = make_project(tmp_path)
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not a model")
    script = textwrap.dedent(f"""
        import logging
        from datetime import UTC, datetime
        from pathlib import Path
        from newsletter import pipeline
        from newsletter.config import config_from_mapping
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
        config = config_from_mapping({{"base_url": "https://digest.example.org", "digest": {{"lookback_days": 7}}}},
                                     Path({str(tmp_path)!r}))
        report = pipeline.ingest_pages(config, datetime(2026, 11, 20, 6, tzinfo=UTC))
        digests = pipeline.run_digests(config, datetime(2026, 11, 20, 8, tzinfo=UTC))
        print(report.new_papers, len(report.problems), digests.count("sent"))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "NEWSLETTER_EMBEDDING_MODEL": str(broken),
           "NEWSLETTER_SECRET_KEY": "k"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True,
                          cwd=tmp_path)
    assert done.stdout.split() == ["21", "0", "3"]
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "ranking with TF-IDF" in warnings[0] and "corrupted" in warnings[0]
    with open_store(config.store_path) as store:
        assert store.papers.count() == 21 and store.vectors.count(MODEL_ID) == 0


def test_a_failing_store_write_loses_no_paper_and_raises_nothing(tmp_path, embedder, caplog) -> None:
    config = make_project(tmp_path)
    report = pipeline.ingest_pages(config, T_INGEST)
    with open_store(config.store_path) as store:
        store.vectors.drop_other_models("none")  # forget the vectors, then make their table unwritable
        with store.db.write() as conn:  # a real failure: the table is gone
            conn.exec_driver_sql("ALTER TABLE paper_vectors RENAME TO paper_vectors_away")
        with caplog.at_level(logging.WARNING):
            assert embed_new(store, after_id=0) == 0
        assert "could not embed the new papers" in caplog.text
        assert store.papers.count() == report.new_papers


def test_a_model_change_reembeds_in_the_background_of_the_next_run_with_progress(tmp_path, embedder, monkeypatch,
                                                                                 caplog) -> None:
    config = make_project(tmp_path)
    pipeline.ingest_pages(config, T_INGEST)
    with open_store(config.store_path) as store:
        # The vectors there are the previous model's: move them to another id, as a model change leaves them.
        with store.db.write() as conn:
            conn.exec_driver_sql("UPDATE paper_vectors SET model_id = 'minilm-old'")
        assert store.vectors.count(MODEL_ID) == 0
    monkeypatch.setattr("newsletter.rank.FOREGROUND_EMBEDDING", 5)  # 21 papers count as a big store here
    monkeypatch.setattr("newsletter.embedding_jobs.BATCH", 4)
    monkeypatch.setattr("newsletter.embedding_jobs.PROGRESS_EVERY", 8)
    with caplog.at_level(logging.INFO):
        report = pipeline.run_digests(config, T_DIGEST)
    assert report.count("sent") == 3  # not held up: ranked with TF-IDF
    assert "21 of 21 recent papers have no vector for minilm-l6-int8-v1 yet: ranking with TF-IDF" in caplog.text
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("re-embedding ")]
    assert progress == ["re-embedding 21 papers for model minilm-l6-int8-v1 in the background",
                        "re-embedding 8/21 papers for model minilm-l6-int8-v1",
                        "re-embedding 16/21 papers for model minilm-l6-int8-v1",
                        "re-embedding 21/21 papers for model minilm-l6-int8-v1"]
    with open_store(config.store_path) as store:
        assert store.vectors.count(MODEL_ID) == 21  # the CLI run waited for it after sending
        assert type(store_ranker_factory(store.vectors, foreground_limit=5)(store.papers.get())).__name__ \
            == "HybridRanker"


def test_a_stopped_reembedding_keeps_what_it_did_and_the_next_one_goes_on(tmp_path, embedder, monkeypatch,
                                                                          caplog) -> None:
    config = make_project(tmp_path)
    pipeline.ingest_pages(config, T_INGEST)
    monkeypatch.setattr("newsletter.embedding_jobs.BATCH", 4)
    with open_store(config.store_path) as store:
        store.vectors.drop_other_models("none")
        job = Reembedding(store)
        job.stop()  # stopped before it began: nothing done, nothing broken
        job._stop.set()  # noqa: SLF001 - stop it after its first batch: the flag is read between batches
        with caplog.at_level(logging.INFO):
            job._run()  # noqa: SLF001 - in this thread, so the stop point is certain
        assert store.vectors.count(MODEL_ID) == 0 and "paused at 0/21" in caplog.text
        newest = store.vectors.missing(MODEL_ID, newest_first=True)
        assert newest == sorted(newest, reverse=True) and len(newest) == 21
        again = Reembedding(store)
        again.start()
        again.wait()
        assert store.vectors.missing(MODEL_ID) == [] and (again.done, again.total) == (21, 21)
        # A second process finds the lock held and leaves the work to the first.
        with store.locks.hold("embed"), caplog.at_level(logging.INFO):
            third = Reembedding(store)
            third._run()  # noqa: SLF001
        assert "another process is re-embedding" in caplog.text


def test_the_daemon_embeds_what_it_ingests(tmp_path, embedder) -> None:
    from newsletter.schedule import Daemon

    config = make_project(tmp_path)
    with pipeline.open_context(config) as ctx:
        Daemon(ctx, config, clock=lambda: T_INGEST + timedelta(minutes=1)).poll()
        assert ctx.store.papers.count() == 21 and ctx.store.vectors.count(MODEL_ID) == 21
