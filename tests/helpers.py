"""Shared test helpers: where the real pages are, and small builders for domain objects."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine

from newsletter.models import Paper
from newsletter.rank import Ranker, store_ranker_factory
from newsletter.sources import Folders, ingest
from newsletter.store import open_store
from newsletter.store.migrate import alembic_config

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
FIXTURE_PAGES = DATA / "pages"
SAMPLE_PAGES = REPO / "samples" / "pages"
# CI clones the repo with ../shared beside it; NEWSLETTER_SHARED points elsewhere if needed.
SHARED = Path(os.environ.get("NEWSLETTER_SHARED", REPO.parent / "shared"))
SHARED_PAGES = SHARED / "pages"


def shared_pages() -> list[Path]:
    pages = sorted(SHARED_PAGES.glob("*.txt"))
    assert pages, f"the real pages are missing: expected {SHARED_PAGES}/*.txt (set NEWSLETTER_SHARED)"
    return pages


@contextmanager
def real_day(folder: Path) -> Iterator[tuple[list[Paper], Ranker]]:
    """The real pages ingested into a fresh store in `folder` on 2026-03-20, and the store's ranker fitted
    on them (the product's default: the hybrid one, with its vectors stored)."""
    with open_store(folder / "store.sqlite3") as store:
        ingest(store.papers, Folders(folder / "in", folder / "done", folder / "q"), at("2026-03-20"), shared_pages())
        papers = store.papers.get()
        yield papers, store_ranker_factory(store.vectors)(papers)


def at(day: str, hour: int = 8) -> datetime:
    """`at("2026-03-20")` -> that day at `hour`:00 UTC."""
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def legacy_store(path: Path, version: int) -> None:
    """A SQLite file as a release before Alembic left it at schema `version`: the tables of revisions
    1..version (they are those releases' migrations written out) and the version in `meta`, no alembic_version."""
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), f"{version:04d}")
        conn.exec_driver_sql("DROP TABLE alembic_version")
        conn.exec_driver_sql("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(version),))
    engine.dispose()
