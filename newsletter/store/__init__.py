"""The only package that touches the database; each consumer gets the part it needs.

    store = open_store("sqlite:///var/newsletter.sqlite3")   # or a plain path, or postgresql+psycopg://...
    store.papers   ingest writes pages and papers, planning reads them   (papers.py)
    store.ledger   digests, deliveries and their state machine           (ledger.py)
    store.votes    "more / less like this" per subscriber and paper        (votes.py)
    store.keys     the link-signing key                                   (keys.py)
    store.sources  each URL source's validators, last outcome and next try (sources.py)
    store.runs     the run log `status` shows                              (runs.py)
    store.vectors  paper vectors by model id, computed once per paper     (vectors.py)
    store.locks    named locks between processes (one digest run, one ingest at a time): flock files on
                   SQLite, advisory locks on PostgreSQL                                  (locks.py)
    SharedPacer(store.db, per_second)   the send pace every worker on the database shares  (pace.py)
"""

from __future__ import annotations

from pathlib import Path

from .backends import sqlite_path
from .keys import KeyStore
from .ledger import Bounce, ClosedWindow, DeliveryRecord, DigestSummary, Enqueue, Ledger, QueuedMessage, SentDigest
from .locks import RunLock
from .migrate import head, schema_version_of
from .papers import PaperStore
from .runs import RunLog, RunRecord
from .schema import Database
from .sources import SourceState, SourceStates
from .vectors import VectorStore
from .votes import VoteStore

SCHEMA_VERSION = schema_version_of(head())

__all__ = ["SCHEMA_VERSION", "Bounce", "ClosedWindow", "DeliveryRecord", "DigestSummary", "Enqueue", "QueuedMessage",
           "RunRecord",
           "SentDigest", "SourceState", "Store",
           "open_store", "sqlite_path"]


class Store:
    """An open database: papers, ledger, votes, source states, keys and locks, closed together."""

    def __init__(self, db: Database, locks: RunLock) -> None:
        self.db = db
        self.papers = PaperStore(db)
        self.ledger = Ledger(db)
        self.keys = KeyStore(db)
        self.votes = VoteStore(db)
        self.sources = SourceStates(db)
        self.runs = RunLog(db)
        self.vectors = VectorStore(db)
        self.locks = locks

    def schema_version(self) -> int:
        return self.db.schema_version()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(url: str | Path, *, migrate: bool = True) -> Store:
    """Open the database at `url`: `sqlite:///path` or a plain path (created and upgraded as needed), or
    `postgresql+psycopg://user@host/db` (upgraded by `newsletter db upgrade`). `migrate=False` opens
    it as it is (for `db upgrade` itself)."""
    db = Database(url, migrate=migrate)
    return Store(db, db.backend.run_lock(db.engine))
