"""Shared test helpers: where the real pages are, and small builders for domain objects."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

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


def at(day: str, hour: int = 8) -> datetime:
    """`at("2026-03-20")` -> that day at `hour`:00 UTC."""
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)
