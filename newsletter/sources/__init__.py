"""Takes page files (from the inbox or given paths) into the store, one transaction per page.

Inbox pages are moved to `processed` once stored, or to `quarantine` with a
`.error` file beside them when they cannot be parsed. Pages named explicitly
from elsewhere are left in place (a bad one is still copied to quarantine, so
there is a record of it).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from ..errors import PageFormatError
from ..store import Store
from .listing import parse_page

# Files a downloader or editor may still be writing; they are picked up next time.
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".swp", ".error")

PageStatus = Literal["ingested", "already ingested", "quarantined"]


@dataclass(frozen=True, slots=True)
class PageReport:
    path: Path
    status: PageStatus
    new_papers: int = 0
    duplicates: int = 0
    error: str = ""


@dataclass(frozen=True, slots=True)
class IngestReport:
    pages: tuple[PageReport, ...]

    def count(self, status: PageStatus) -> int:
        return sum(1 for page in self.pages if page.status == status)

    @property
    def new_papers(self) -> int:
        return sum(page.new_papers for page in self.pages)

    @property
    def duplicates(self) -> int:
        return sum(page.duplicates for page in self.pages)

    @property
    def quarantined(self) -> tuple[PageReport, ...]:
        return tuple(page for page in self.pages if page.status == "quarantined")


@dataclass(frozen=True, slots=True)
class Folders:
    inbox: Path
    processed: Path
    quarantine: Path


def ingest(store: Store, folders: Folders, now: datetime, paths: Sequence[Path] = ()) -> IngestReport:
    """Ingest the given files and folders, or every page waiting in the inbox."""
    files = list(page_files(paths or [folders.inbox]))
    return IngestReport(tuple(ingest_file(store, folders, path, now) for path in files))


def page_files(paths: Iterable[Path]) -> Iterable[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.is_file() and is_page_file(p))
        elif path.exists():
            yield path
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")


def is_page_file(path: Path) -> bool:
    return not path.name.startswith(".") and not path.name.endswith(PARTIAL_SUFFIXES)


def ingest_file(store: Store, folders: Folders, path: Path, now: datetime) -> PageReport:
    from_inbox = path.resolve().parent == folders.inbox.resolve()
    try:
        page = parse_page(path, path.read_bytes(), now.date())
    except PageFormatError as exc:
        quarantine(path, folders.quarantine, str(exc), move=from_inbox)
        return PageReport(path, "quarantined", error=str(exc))
    outcome = store.add_page(page, now)
    if from_inbox:
        move_into(path, folders.processed)
    status: PageStatus = "already ingested" if outcome.already_ingested else "ingested"
    return PageReport(path, status, outcome.new_papers, outcome.duplicates)


def quarantine(path: Path, folder: Path, message: str, *, move: bool) -> Path:
    target = move_into(path, folder) if move else copy_into(path, folder)
    target.with_name(target.name + ".error").write_text(message + "\n", encoding="utf-8")
    return target


def move_into(path: Path, folder: Path) -> Path:
    target = free_name(folder, path.name)
    shutil.move(str(path), target)
    return target


def copy_into(path: Path, folder: Path) -> Path:
    target = free_name(folder, path.name)
    shutil.copyfile(path, target)
    return target


def free_name(folder: Path, name: str) -> Path:
    """`folder/name`, or `folder/stem.N.suffix` when that is taken: never overwrite a kept page."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    counter = 1
    while target.exists() or target.with_name(target.name + ".error").exists():
        target = folder / f"{stem}.{counter}{suffix}"
        counter += 1
    return target
