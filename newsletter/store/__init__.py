"""The only package that touches the database; each consumer gets the part it needs.

    store = open_store("sqlite:///var/newsletter.sqlite3")   # or a plain path
    store.papers   ingest writes pages and papers, planning reads them   (papers.py)
    store.ledger   digests, deliveries and their state machine           (ledger.py)
    store.votes    "more / less like this" per subscriber and paper        (votes.py)
    store.keys     the link-signing key                                   (keys.py)
    store.sources  each URL source's validators, last outcome and next try (sources.py)
    store.runs     the run log `status` shows                              (runs.py)
    store.vectors  paper vectors by model id, computed once per paper     (vectors.py)
    store.locks    named locks between processes (one digest run, one ingest at a time)  (locks.py)
    SharedPacer(store.db, per_second)   the send pace every worker on the database shares  (pace.py)
"""

from __future__ import annotations

from pathlib import Path

from ..errors import StoreError
from .keys import KeyStore
from .ledger import Bounce, ClosedWindow, DeliveryRecord, DigestSummary, Enqueue, Ledger, QueuedMessage, SentDigest
from .locks import FileLock, RunLock
from .papers import PaperStore
from .runs import RunLog, RunRecord
from .schema import SCHEMA_VERSION, Database
from .sources import SourceState, SourceStates
from .vectors import VectorStore
from .votes import VoteStore

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


def open_store(url: str | Path) -> Store:
    """Open (creating and migrating as needed) the database at `url`: `sqlite:///path` or a plain path."""
    path = sqlite_path(url)
    return Store(Database(path), FileLock(path))


def sqlite_path(url: str | Path) -> Path:
    """The file a store URL names; anything but SQLite is refused with what is supported."""
    text = str(url)
    if text.startswith("sqlite:///"):
        text = text.removeprefix("sqlite:///")
        if not text:
            raise StoreError("store: 'sqlite:///' names no file; use sqlite:///path/to/newsletter.sqlite3")
        # sqlite:////abs/path keeps its leading slash; sqlite:///rel/path is relative.
        return Path(text)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise StoreError(f"store: {scheme!r} databases are not supported yet; use a file path or "
                         "sqlite:///path/to/newsletter.sqlite3")
    return Path(text)
